"""
Unit tests of L{mcpbridge.sessions.Requests}: a session's requests in
flight and their timeouts, which share one timer.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mcpbridge.jsonrpc import Message
from mcpbridge.sessions import PendingRequest, Requests


def request(id: Any, token: Any = None) -> Message:
    params: dict[str, Any] = {"name": "t"}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    return Message.fromObject({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                               "params": params})


def progress(token: Any) -> Message:
    return Message.fromObject({"jsonrpc": "2.0", "method": "notifications/progress",
                               "params": {"progressToken": token, "progress": 1}})


class RequestsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.timedOut: list[tuple[Any, float]] = []
        self.requests = Requests(self.clock, self.onTimeout)
        self.stream: Any = object()

    def onTimeout(self, pending: PendingRequest, timeout: float) -> None:
        self.timedOut.append((pending.id, timeout))
        self.requests.untrack(pending)

    def track(self, id: Any, timeout: float = 10.0, token: Any = None) -> PendingRequest:
        return self.requests.track(request(id, token), self.stream, timeout)

    def test_oneTimer(self) -> None:
        """
        Requests answered one after another leave one timer, not one each.
        """
        self.requests.untrack(self.track(0))
        timers = list(self.clock.getDelayedCalls())
        self.assertEqual(len(timers), 1)
        for i in range(1, 20):
            self.clock.advance(0.1)
            self.requests.untrack(self.track(i))
        self.assertEqual([id(c) for c in self.clock.getDelayedCalls()], [id(c) for c in timers])
        self.clock.advance(20)
        self.assertEqual(self.timedOut, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_deadline(self) -> None:
        """
        Each request times out at its own deadline, to the instant.
        """
        self.track(1)
        self.clock.advance(5)
        self.track(2)
        self.clock.advance(4.875)
        self.assertEqual(self.timedOut, [])
        self.clock.advance(0.125)
        self.assertEqual(self.timedOut, [(1, 10.0)])
        self.clock.advance(4.875)
        self.assertEqual(self.timedOut, [(1, 10.0)])
        self.clock.advance(0.125)
        self.assertEqual(self.timedOut, [(1, 10.0), (2, 10.0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_answeredFirst(self) -> None:
        """
        A request answered before its deadline does not time out, while
        one still waiting does.
        """
        first = self.track(1)
        self.clock.advance(3)
        self.track(2)
        self.requests.untrack(first)
        self.clock.advance(7)
        self.assertEqual(self.timedOut, [])
        self.clock.advance(3)
        self.assertEqual(self.timedOut, [(2, 10.0)])

    def test_progressRestarts(self) -> None:
        self.track(1, token="p")
        self.clock.advance(8)
        self.assertIsNotNone(self.requests.progressed(progress("p"), 10.0))
        self.clock.advance(9.875)
        self.assertEqual(self.timedOut, [])
        self.clock.advance(0.125)
        self.assertEqual(self.timedOut, [(1, 10.0)])

    def test_shorterTimeout(self) -> None:
        """
        A request with a shorter timeout than those before it (the
        settings were reloaded) times out on time.
        """
        self.track(1, timeout=600)
        self.track(2, timeout=10)
        self.clock.advance(10)
        self.assertEqual(self.timedOut, [(2, 10)])
        self.clock.advance(590)
        self.assertEqual(self.timedOut, [(2, 10), (1, 600)])

    def test_noTimeout(self) -> None:
        self.track(1, timeout=0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeoutEndsOthers(self) -> None:
        """
        When one timing out ends the others (the session ends), those are
        not timed out as well.
        """
        others = [self.track(2), self.track(3)]

        def onTimeout(pending: PendingRequest, timeout: float) -> None:
            self.timedOut.append((pending.id, timeout))
            for p in [pending, *others]:
                self.requests.untrack(p)
            self.requests.stop()
        self.requests.onTimeout = onTimeout
        self.clock.advance(10)
        self.assertEqual(len(self.timedOut), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop(self) -> None:
        self.track(1)
        self.requests.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
