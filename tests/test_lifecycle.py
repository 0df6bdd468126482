"""
Unit tests of session lifecycle features on fakes: graceful drain on
shutdown, back-pressure from slow clients, warm spare children.
"""

from __future__ import annotations

import json
from typing import Any

import attr

from mcpbridge.sessions import SessionConfig

from .test_web import BridgeTestCase, call, initializeRequest


class DrainTests(BridgeTestCase):
    config = SessionConfig(drainTimeout=5.0)

    def test_inFlightFinishes(self) -> None:
        """
        On shutdown a request in flight still gets its answer, new sessions
        and new requests get 503 with Retry-After, and the children are
        stopped once nothing is in flight.
        """
        sid, child = self.open()
        d = self.post(call(1), sid)
        stopped = self.manager.stopService()
        response, body = self.respond(self.post(initializeRequest()))
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["5"])
        response, body = self.respond(self.post(call(2), sid))
        self.assertEqual(response.code, 503)
        self.assertFalse(child.transport.stdinClosed)
        child.answer(call(1), "finished")
        self.assertEqual(json.loads(self.respond(d)[1])["result"], "finished")
        self.clock.advance(0.1)
        self.assertTrue(child.transport.stdinClosed)
        child.exit(0)
        self.successResultOf(stopped)

    def test_drainTimeout(self) -> None:
        """
        A request that does not finish within the drain timeout gets an
        error, and its child is stopped.
        """
        sid, child = self.open()
        d = self.post(call(1), sid)
        stopped = self.manager.stopService()
        for _ in range(60):
            self.clock.advance(0.1)
        self.assertTrue(child.transport.stdinClosed)
        self.assertIn("shutting down", json.loads(self.respond(d)[1])["error"]["message"])
        child.exit(0)
        self.successResultOf(stopped)


class BackPressureTests(BridgeTestCase):
    def test_slowClientPausesChild(self) -> None:
        """
        When a client's SSE stream is full (twisted.web pauses its producer)
        the child's stdout is no longer read, and reading resumes when the
        client catches up or goes away; stderr is never paused.
        """
        sid, child = self.open()
        d = self.post(call(1, meta={"progressToken": 1}), sid)
        child.send({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": 1, "progress": 1}})
        self.stream(d)
        connection = self.manager.get(sid).pending[1].stream.connection
        connection.pauseProducing()
        self.assertTrue(child.transport.pipes[1].paused)
        self.assertFalse(child.transport.pipes[2].paused)
        connection.resumeProducing()
        self.assertFalse(child.transport.pipes[1].paused)
        connection.pauseProducing()
        connection.stopProducing()
        self.assertFalse(child.transport.pipes[1].paused)


class SpareTests(BridgeTestCase):
    config = SessionConfig(spares=2)

    def test_sparesStarted(self) -> None:
        """
        With spares configured, that many children run before any client.
        """
        self.assertEqual(len(self.spawner.children), 2)
        self.assertEqual(len(self.manager.spares), 2)

    def test_spareUsedAndReplaced(self) -> None:
        """
        initialize goes to a spare already running, and a new spare replaces
        it once sessions stop being created for a moment.
        """
        first = self.spawner.children[0]
        d = self.post(initializeRequest())
        self.assertEqual(first.received()[0]["method"], "initialize")
        first.answerInitialize()
        response, _ = self.respond(d)
        self.assertEqual(response.code, 200)
        self.clock.advance(0.2)
        self.assertEqual(len(self.spawner.children), 2, "refilled during the burst")
        self.clock.advance(0.1)
        self.assertEqual(len(self.spawner.children), 3)
        self.assertEqual(len(self.manager.spares), 2)

    def test_burstTakesEverySpare(self) -> None:
        """
        A burst of new sessions takes the spares one after another without
        starting children in between; once the last is taken, they are
        made up at once.
        """
        for n in range(2):
            self.assertEqual(len(self.spawner.children), 2)
            d = self.post(initializeRequest())
            self.spawner.children[n].answerInitialize()
            self.assertEqual(self.respond(d)[0].code, 200)
            self.clock.advance(0.1)
        self.assertEqual(len(self.spawner.children), 4)
        self.assertEqual(len(self.manager.spares), 2)

    def busySession(self) -> tuple[str, Any]:
        """
        Open a session on the first spare; return its id and child.
        """
        child = self.spawner.children[0]
        d = self.post(initializeRequest())
        child.answerInitialize()
        response, _ = self.respond(d)
        return response.headers.getRawHeaders("mcp-session-id")[0], child

    def callEvery(self, sid: str, child: Any, seconds: float) -> None:
        """
        Keep the session busy: one answered call every 0.1 s for C{seconds}.
        """
        for n in range(int(seconds * 10)):
            d = self.post(call(100 + n), sid)
            child.answer(call(100 + n), "ok")
            self.assertEqual(self.respond(d)[0].code, 200)
            self.clock.advance(0.1)

    def test_refillWaitsForQuiet(self) -> None:
        """
        While requests keep coming, a spare taken is not made up (starting
        a child would slow them); 0.25 s after they pause, it is.
        """
        sid, child = self.busySession()
        self.callEvery(sid, child, 2.0)
        self.assertEqual(len(self.spawner.children), 2)
        self.clock.advance(0.1)
        self.assertEqual(len(self.spawner.children), 2)
        self.clock.advance(0.1)
        self.assertEqual(len(self.spawner.children), 3)
        self.assertEqual(len(self.manager.spares), 2)

    def test_refillAfterMaxWait(self) -> None:
        """
        Under requests that never pause, the spares are made up anyway
        after SPARE_REFILL_MAX_WAIT.
        """
        sid, child = self.busySession()
        self.callEvery(sid, child, 4.9)
        self.assertEqual(len(self.spawner.children), 2)
        self.callEvery(sid, child, 0.5)
        self.assertEqual(len(self.spawner.children), 3)

    def test_maxWaitFromLastTaken(self) -> None:
        """
        The wait for a pause counts from the last spare taken: a new
        session under steady requests starts it again.
        """
        self.manager.config = attr.evolve(self.manager.config, spares=3)
        self.manager._fillSpares()
        self.assertEqual(len(self.spawner.children), 3)
        sid, child = self.busySession()
        self.callEvery(sid, child, 3.0)
        d = self.post(initializeRequest())
        self.spawner.children[1].answerInitialize()
        self.assertEqual(self.respond(d)[0].code, 200)
        self.callEvery(sid, child, 4.9)
        self.assertEqual(len(self.spawner.children), 3)
        self.callEvery(sid, child, 0.5)
        self.assertEqual(len(self.spawner.children), 5)

    def test_deadSpareReplacedWithBackoff(self) -> None:
        """
        A spare that dies before use is replaced after a delay that grows,
        so a broken command cannot make the bridge spin.
        """
        self.spawner.children[0].exit(1)
        self.assertEqual(len(self.manager.spares), 1)
        self.clock.advance(0.9)
        self.assertEqual(len(self.spawner.children), 2)
        self.clock.advance(0.2)
        self.assertEqual(len(self.spawner.children), 3)
        self.spawner.children[2].exit(1)
        self.clock.advance(1.1)
        self.assertEqual(len(self.spawner.children), 3)
        self.clock.advance(1.0)
        self.assertEqual(len(self.spawner.children), 4)

    def test_sparesStopped(self) -> None:
        """
        Shutdown stops the spares too.
        """
        spares = list(self.spawner.children)
        d = self.manager.stopService()
        self.assertTrue(all(c.transport.stdinClosed for c in spares))
        for c in spares:
            c.exit(0)
        self.successResultOf(d)
