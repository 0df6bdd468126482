"""
The pool of long-lived children that serves stateless requests
(L{mcpbridge.pool}), over fake children and a fake clock.
"""

from __future__ import annotations

import json
import random
import signal
from typing import Any, Optional

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from mcpbridge import jsonrpc
from mcpbridge.child import CommandSpec
from mcpbridge.jsonrpc import Message
from mcpbridge.modern import CLIENT_CAPABILITIES, LOG_LEVEL, PROTOCOL_VERSION, SUBSCRIPTION_ID
from mcpbridge.pool import MODERN, ChildPool, PoolConfig
from mcpbridge.sessions import SessionError
from mcpbridge.streams import Connection

from .fakes import FakeChild, FakeSpawner

DISCOVERED = {"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}},
              "serverInfo": {"name": "fake", "version": "1"}}


def stateless(id: Any, method: str = "tools/call", meta: Optional[dict[str, Any]] = None,
              **params: Any) -> Message:
    """
    A request of the stateless era.
    """
    envelope = {PROTOCOL_VERSION: "2026-07-28", CLIENT_CAPABILITIES: {}}
    envelope.update(meta or {})
    return Message.fromObject({"jsonrpc": "2.0", "id": id, "method": method,
                               "params": dict(params, _meta=envelope)})


class FakeRequest:
    """
    The parts of a twisted.web request a L{Connection} uses.
    """

    def __init__(self) -> None:
        self.code = 200
        self.headers: dict[bytes, bytes] = {}
        self.written: list[bytes] = []
        self.producer: Any = None

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name] = value

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def events(self) -> list[dict[str, Any]]:
        """
        The JSON messages written as SSE events so far.
        """
        out = []
        for chunk in self.written:
            for block in chunk.split(b"\n\n"):
                data = [line[6:] for line in block.split(b"\n") if line.startswith(b"data: ")]
                if data and data != [b""]:
                    out.append(json.loads(b"\n".join(data)))
        return out


class PoolTestCase(SynchronousTestCase):
    def newPool(self, size: int = 2, **config: Any) -> ChildPool:
        """
        C{self.pool}: a modern pool of C{size} over C{self.spawner} and
        C{self.clock} (both new), not started.
        """
        self.clock = MemoryReactorClock()
        self.spawner = FakeSpawner()
        command = CommandSpec(argv=("/bin/sh",), env={"PATH": "/usr/bin:/bin"})
        self.pool = ChildPool(MODERN, command, PoolConfig(size=size, **config), self.clock,
                              self.spawner, self.spawner.killpg)
        return self.pool

    def makePool(self, size: int = 2, greet: bool = True, **config: Any) -> ChildPool:
        """
        A started modern pool of C{size} fake children, every one ready
        (unless not C{greet}: then the first child's C{server/discover} is
        not answered yet).
        """
        self.newPool(size, **config).startService()
        if greet:
            self.greet()
        return self.pool

    def greet(self) -> None:
        """
        Answer every C{server/discover} not answered yet, until no child
        is waiting for one.
        """
        answered = True
        while answered:
            answered = False
            for child in list(self.spawner.children):
                if child.exited:
                    continue
                for msg in child.received():
                    if msg.get("method") == "server/discover" and not self._answered(child, msg):
                        child.answer(msg, DISCOVERED)
                        answered = True

    def _answered(self, child: FakeChild, msg: dict[str, Any]) -> bool:
        done: set[Any] = getattr(child, "answeredIds", set())
        child.answeredIds = done  # type: ignore[attr-defined]
        if msg["id"] in done:
            return True
        done.add(msg["id"])
        return False

    def answerTools(self, tools: Optional[list[dict[str, Any]]] = None) -> None:
        """
        Answer the bridge's own C{tools/list} (it asks before the first
        C{tools/call} with arguments, to check C{Mcp-Param-*} headers).
        """
        for child in self.live():
            for msg in self.calls(child, "tools/list"):
                if not self._answered(child, msg):
                    child.answer(msg, {"tools": tools or []})

    def submit(self, message: Message) -> tuple[Connection, FakeRequest]:
        request = FakeRequest()
        connection = Connection(request, self.clock)  # type: ignore[arg-type]
        self.pool.submit([message], connection, False)
        return connection, request

    def calls(self, child: FakeChild, method: str = "tools/call") -> list[dict[str, Any]]:
        return [m for m in child.received() if m.get("method") == method]

    def live(self) -> list[FakeChild]:
        return [c for c in self.spawner.children if not c.exited]

    def body(self, connection: Connection) -> dict[str, Any]:
        result: Any = self.successResultOf(connection.deferred)
        return json.loads(result)


class StartTests(PoolTestCase):
    def test_probeThenFill(self) -> None:
        """
        One child is started first and asked C{server/discover} with a
        complete stateless envelope; once it answers that it speaks
        2026-07-28, the rest of the pool starts.
        """
        pool = self.makePool(size=3, greet=False)
        spawner = self.spawner
        self.assertEqual(len(spawner.children), 1)
        discover = spawner.last.last()
        self.assertEqual(discover["method"], "server/discover")
        meta = discover["params"]["_meta"]
        self.assertEqual(meta[PROTOCOL_VERSION], "2026-07-28")
        self.assertEqual(meta[CLIENT_CAPABILITIES], {})
        self.assertIsNone(pool.speaks)
        spawner.last.answer(discover, DISCOVERED)
        self.assertTrue(pool.speaks)
        self.assertEqual(len(spawner.children), 3)
        self.assertEqual([m.state for m in pool.members], ["ready", "starting", "starting"])

    def test_requestsWaitForTheProbe(self) -> None:
        """
        A request that arrives before the first child answered waits, and
        is served once it has.
        """
        self.makePool(size=1, greet=False)
        spawner = self.spawner
        connection, _ = self.submit(stateless(1, name="echo"))
        self.assertEqual(self.calls(spawner.last), [])
        self.greet()
        [call] = self.calls(spawner.last)
        spawner.last.answer(call, {"content": []})
        self.assertEqual(self.body(connection)["id"], 1)

    def test_sizeZero(self) -> None:
        """
        C{--pool-size 0} turns the stateless era off: no child, and every
        stateless request is told to use a session-era version.
        """
        self.makePool(size=0)
        self.assertEqual(self.spawner.children, [])
        connection, request = self.submit(stateless(3, name="echo"))
        body = self.body(connection)
        self.assertEqual(request.code, 400)
        self.assertEqual(body["error"]["code"], jsonrpc.UNSUPPORTED_VERSION)
        self.assertEqual(body["error"]["data"]["requested"], "2026-07-28")
        self.assertIn("2025-11-25", body["error"]["data"]["supported"])


class RewritingTests(PoolTestCase):
    def test_twoHundredOverFour(self) -> None:
        """
        200 requests in flight over 4 children, with client ids that repeat
        (every client counts from 1), answered in random order: every
        child sees unique bridge ids, the work is spread evenly, and every
        client gets its own answer under its own id.
        """
        self.makePool(size=4, concurrency=64)
        rng = random.Random(4)
        sent = []
        for n in range(200):
            clientId: Any = n % 7 if n % 2 else f"req-{n % 5}"
            connection, request = self.submit(
                stateless(clientId, name="echo", arguments={"n": n}))
            sent.append((n, clientId, connection, request))
        self.answerTools()
        children = self.live()
        self.assertEqual(len(children), 4)
        seen: list[Any] = []
        pending = []
        for child in children:
            calls = self.calls(child)
            self.assertEqual(len(calls), 50)
            seen += [c["id"] for c in calls]
            pending += [(child, c) for c in calls]
        self.assertEqual(len(set(seen)), 200)
        self.assertTrue(all(isinstance(i, int) and i > 0 for i in seen))
        rng.shuffle(pending)
        for child, call in pending:
            child.answer(call, {"content": [{"type": "text",
                                             "text": str(call["params"]["arguments"]["n"])}]})
        for n, clientId, connection, request in sent:
            body = self.body(connection)
            self.assertEqual(body["id"], clientId)
            self.assertEqual(body["result"]["content"][0]["text"], str(n))
            self.assertEqual(request.code, 200)
        self.assertEqual([m.load for m in self.pool.members], [0, 0, 0, 0])

    def test_leastBusy(self) -> None:
        """
        A request goes to the child with the fewest requests in flight.
        """
        self.makePool(size=2)
        a, b = self.live()
        self.submit(stateless(1, name="x"))
        self.submit(stateless(2, name="x"))
        self.assertEqual((len(self.calls(a)), len(self.calls(b))), (1, 1))
        a.answer(self.calls(a)[0], {})
        self.submit(stateless(3, name="x"))
        self.assertEqual((len(self.calls(a)), len(self.calls(b))), (2, 1))

    def test_progressToken(self) -> None:
        """
        The progress token goes to the child as the bridge's own, comes back
        as the client's, and the answer switches to an event stream.
        """
        self.makePool(size=1)
        connection, request = self.submit(
            stateless(9, name="slow", meta={"progressToken": "tok-1"}))
        [child] = self.live()
        [call] = self.calls(child)
        token = call["params"]["_meta"]["progressToken"]
        self.assertNotEqual(token, "tok-1")
        child.send({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": token, "progress": 1}})
        child.answer(call, {"content": []})
        self.assertEqual(request.headers[b"content-type"], b"text/event-stream")
        self.assertEqual(request.headers[b"x-accel-buffering"], b"no")
        events = request.events()
        self.assertEqual(events[0]["params"]["progressToken"], "tok-1")
        self.assertEqual(events[1]["id"], 9)

    def test_largeAnswerKeepsItsBytes(self) -> None:
        """
        A large answer gets the client's id without being serialised anew.
        """
        self.makePool(size=1)
        connection, _ = self.submit(stateless("big", name="blob"))
        [child] = self.live()
        [call] = self.calls(child)
        payload = "x" * 100_000
        # Spacing no serialiser of the bridge's would write: only the bytes
        # as sent can come back like this.
        raw = b'{"jsonrpc": "2.0", "id": %d, "result": {"text" : "%s"}}\n' % (
            call["id"], payload.encode())
        child.send(raw)
        body: Any = self.successResultOf(connection.deferred)
        self.assertEqual(body, raw.strip().replace(b'"id": %d' % call["id"], b'"id": "big"', 1))
        self.assertEqual(json.loads(body)["result"]["text"], payload)


class FailureTests(PoolTestCase):
    def test_crashMidFlight(self) -> None:
        """
        A pool child that dies fails its requests at once, leaves the other
        child's alone, and is replaced by a new child (greeted again).
        """
        self.makePool(size=2)
        a, b = self.live()
        first, firstReq = self.submit(stateless(1, name="x"))
        second, _ = self.submit(stateless(2, name="x"))
        third, thirdReq = self.submit(stateless(3, name="x"))
        self.assertEqual((len(self.calls(a)), len(self.calls(b))), (2, 1))
        a.exit(sig=signal.SIGSEGV)
        for connection, request in ((first, firstReq), (third, thirdReq)):
            body = self.body(connection)
            self.assertEqual(body["error"]["code"], jsonrpc.CONNECTION_CLOSED)
            self.assertIn("signal", body["error"]["message"])
            self.assertEqual(request.code, 502)
        self.assertNoResult(second.deferred)
        b.answer(self.calls(b)[0], {"ok": True})
        self.assertEqual(self.body(second)["result"], {"ok": True})
        self.clock.advance(0)
        self.assertEqual(len(self.spawner.children), 3)
        self.assertEqual(self.spawner.last.last()["method"], "server/discover")
        self.greet()
        self.assertEqual([m.state for m in self.pool.members], ["ready", "ready"])

    def test_replacementBacksOff(self) -> None:
        """
        A child that keeps failing to start is retried after delays that
        double, up to 30 s, and /health hears of it.
        """
        self.makePool(size=1)
        self.live()[0].exit(code=1)
        delays = []
        for _ in range(8):
            before = len(self.spawner.children)
            waited = 0.0
            while len(self.spawner.children) == before and waited < 60:
                self.clock.advance(0.25)
                waited += 0.25
            delays.append(waited)
            self.spawner.last.exit(code=1)  # dies before answering server/discover
        self.assertEqual(delays[0], 0.25)  # the first replacement is immediate
        self.assertEqual(delays[1:5], [1.0, 2.0, 4.0, 8.0])
        self.assertEqual(delays[-1], 30.0)
        self.assertFalse(self.pool.lastStartOk)
        self.assertIn("exited with code 1", self.pool.lastError or "")

    def test_spawnFailureRetried(self) -> None:
        """
        When the system refuses to start a child, the pool says so and
        tries again later.
        """
        pool = self.newPool(size=1)
        clock, spawner = self.clock, self.spawner
        spawner.failWith = OSError(11, "Resource temporarily unavailable")
        pool.startService()
        self.assertFalse(pool.lastStartOk)
        self.assertIn("EAGAIN", pool.lastError or "")
        spawner.failWith = None
        clock.advance(1)
        self.assertEqual(len(spawner.children), 1)
        spawner.last.answer(spawner.last.last(), DISCOVERED)
        self.assertTrue(pool.lastStartOk)

    def test_waitingFailWhenNoChildStarts(self) -> None:
        """
        Requests waiting for the first child fail with 502 when it dies
        before answering; while the pool waits to retry, new ones get 503
        with Retry-After.
        """
        self.makePool(size=1, greet=False)
        connection, request = self.submit(stateless(1, name="x"))
        self.spawner.last.exit(code=3)
        self.assertEqual(request.code, 502)
        self.assertEqual(self.body(connection)["error"]["code"], jsonrpc.SERVER_UNAVAILABLE)
        with self.assertRaises(SessionError) as caught:
            self.submit(stateless(2, name="x"))
        self.assertEqual(caught.exception.status, 503)
        self.assertEqual(caught.exception.retryAfter, 1)

    def test_timeout(self) -> None:
        """
        A request the child does not answer within the request timeout gets
        -32001, and the child is told to cancel it; progress restarts the
        clock.
        """
        self.makePool(size=1, requestTimeout=10.0)
        connection, request = self.submit(
            stateless(5, name="slow", meta={"progressToken": 1}))
        [child] = self.live()
        [call] = self.calls(child)
        self.clock.advance(8)
        child.send({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": call["params"]["_meta"]["progressToken"],
                               "progress": 1}})
        self.clock.advance(8)
        self.assertTrue(connection.open)
        self.clock.advance(3)
        self.assertFalse(connection.open)
        self.assertEqual(request.events()[-1]["error"]["code"], jsonrpc.REQUEST_TIMEOUT)
        cancel = child.last()
        self.assertEqual(cancel["method"], "notifications/cancelled")
        self.assertEqual(cancel["params"]["requestId"], call["id"])

    def test_bugDoesNotWedgeTheQueue(self) -> None:
        """
        An unexpected exception while serving one request answers it with
        an internal error (500, -32603) and the requests behind it are still
        served.
        """
        self.makePool(size=1)
        refuse = self.pool._refuse

        def broken(call: Any) -> bool:
            if call.clientId == "bad":
                raise RuntimeError("a bug")
            return refuse(call)

        self.pool._refuse = broken  # type: ignore[method-assign]
        bad, badReq = self.submit(stateless("bad", name="x"))
        good, _ = self.submit(stateless("good", name="x"))
        self.assertEqual(badReq.code, 500)
        self.assertEqual(self.body(bad)["error"]["code"], jsonrpc.INTERNAL_ERROR)
        [child] = self.live()
        [call] = self.calls(child)
        child.answer(call, {})
        self.assertEqual(self.body(good)["id"], "good")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_serverRequestRefused(self) -> None:
        """
        A stateless child may not ask the client anything over the stream:
        the bridge answers its request with an error, so it does not hang.
        """
        self.makePool(size=1)
        connection, request = self.submit(stateless(1, name="x"))
        [child] = self.live()
        child.send({"jsonrpc": "2.0", "id": 77, "method": "sampling/createMessage",
                    "params": {}})
        answer = child.last()
        self.assertEqual(answer["id"], 77)
        self.assertEqual(answer["error"]["code"], jsonrpc.METHOD_NOT_FOUND)
        self.assertEqual(request.written, [])


class CancellationTests(PoolTestCase):
    def test_disconnectCancels(self) -> None:
        """
        Closing a request's stream sends notifications/cancelled for the
        bridge's id to the child, and nothing more goes to the client.
        """
        self.makePool(size=1)
        connection, request = self.submit(
            stateless(1, name="slow", meta={"progressToken": "p"}))
        [child] = self.live()
        [call] = self.calls(child)
        child.send({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": call["params"]["_meta"]["progressToken"],
                               "progress": 1}})
        written = len(request.written)
        connection.deferred.addErrback(lambda f: None)
        connection.deferred.cancel()
        cancel = child.last()
        self.assertEqual(cancel, {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                  "params": {"requestId": call["id"],
                                             "reason": "the client closed the request's "
                                                       "stream"}})
        child.send({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": call["params"]["_meta"]["progressToken"],
                               "progress": 2}})
        child.answer(call, {"late": True})
        self.assertEqual(len(request.written), written)
        self.assertEqual(self.pool.members[0].load, 0)

    def test_waitingRequestCancelled(self) -> None:
        """
        A request still waiting for room is dropped when its client leaves:
        it never reaches a child.
        """
        self.makePool(size=1, concurrency=1)
        [child] = self.live()
        self.submit(stateless(1, name="busy"))
        connection, _ = self.submit(stateless(2, name="never"))
        connection.deferred.addErrback(lambda f: None)
        connection.deferred.cancel()
        child.answer(self.calls(child)[0], {})
        self.assertEqual([c["params"]["name"] for c in self.calls(child)], ["busy"])
        self.assertEqual(len(self.pool.waiting), 0)


    def test_cancelledWhileSchemasLoad(self) -> None:
        """
        A tool call that waits for the tool schemas (to check its
        Mcp-Param-* headers) and whose client leaves meanwhile never
        reaches a child.
        """
        self.makePool(size=1)
        [child] = self.live()
        connection, _ = self.submit(stateless(1, name="x", arguments={"a": 1}))
        self.assertEqual(len(self.calls(child, "tools/list")), 1)
        connection.deferred.addErrback(lambda f: None)
        connection.deferred.cancel()
        self.answerTools()
        self.assertEqual(self.calls(child), [])
        self.assertEqual(len(self.pool.waiting), 0)


class CapacityTests(PoolTestCase):
    def test_queueAndLimit(self) -> None:
        """
        A child takes at most C{concurrency} requests; the rest wait in
        order, and past the queue's bound get 503.
        """
        self.makePool(size=1, concurrency=2, queue=2)
        [child] = self.live()
        for n in range(4):
            self.submit(stateless(n, name=f"t{n}"))
        self.assertEqual([c["params"]["name"] for c in self.calls(child)], ["t0", "t1"])
        with self.assertRaises(SessionError) as caught:
            self.submit(stateless(9, name="t9"))
        self.assertEqual(caught.exception.status, 503)
        child.answer(self.calls(child)[1], {})
        self.assertEqual([c["params"]["name"] for c in self.calls(child)], ["t0", "t1", "t2"])

    def test_logRequestsSpread(self) -> None:
        """
        Log messages name no request, so two requests that asked for them
        go to different children, and each child's log messages reach
        only the request that asked there, at its level or above.
        """
        self.makePool(size=2)
        a, b = self.live()
        self.submit(stateless(0, name="quiet"))
        first, firstReq = self.submit(stateless(1, name="x", meta={LOG_LEVEL: "info"}))
        second, secondReq = self.submit(stateless(2, name="y", meta={LOG_LEVEL: "error"}))
        self.assertEqual([c["params"]["name"] for c in self.calls(a)], ["quiet", "y"])
        self.assertEqual([c["params"]["name"] for c in self.calls(b)], ["x"])
        for child, level in ((b, "info"), (a, "info"), (a, "error")):
            child.send({"jsonrpc": "2.0", "method": "notifications/message",
                        "params": {"level": level, "data": f"{level} from {child.pid}"}})
        self.assertEqual([e["params"]["data"] for e in firstReq.events()],
                         [f"info from {b.pid}"])
        self.assertEqual([e["params"]["data"] for e in secondReq.events()],
                         [f"error from {a.pid}"])


class ListenTests(PoolTestCase):
    def listen(self) -> tuple[Connection, FakeRequest]:
        return self.submit(stateless(1234, "subscriptions/listen",
                                     notifications={"toolsListChanged": True}))

    def note(self, child: FakeChild, method: str, subscription: int) -> None:
        child.send({"jsonrpc": "2.0", "method": method,
                    "params": {"_meta": {SUBSCRIPTION_ID: subscription}}})

    def test_everyChildOneAck(self) -> None:
        """
        A subscription opens on every child; the client gets one
        acknowledgement, tagged with its own request id.
        """
        self.makePool(size=2)
        connection, request = self.listen()
        a, b = self.live()
        [la], [lb] = self.calls(a, "subscriptions/listen"), self.calls(b, "subscriptions/listen")
        self.assertNotEqual(la["id"], lb["id"])
        self.note(a, "notifications/subscriptions/acknowledged", la["id"])
        self.note(b, "notifications/subscriptions/acknowledged", lb["id"])
        events = request.events()
        self.assertEqual([e["method"] for e in events],
                         ["notifications/subscriptions/acknowledged"])
        self.assertEqual(events[0]["params"]["_meta"][SUBSCRIPTION_ID], 1234)
        self.assertEqual([m.load for m in self.pool.members], [0, 0])

    def test_repeatsFolded(self) -> None:
        """
        The same change announced by several children within half a second
        reaches the client once; later, again.
        """
        self.makePool(size=2)
        connection, request = self.listen()
        a, b = self.live()
        la, lb = self.calls(a, "subscriptions/listen")[0], self.calls(b, "subscriptions/listen")[0]
        self.note(a, "notifications/subscriptions/acknowledged", la["id"])
        self.note(b, "notifications/tools/list_changed", lb["id"])
        self.note(a, "notifications/tools/list_changed", la["id"])
        self.clock.advance(1)
        self.note(a, "notifications/tools/list_changed", la["id"])
        changes = [e for e in request.events() if e["method"].endswith("list_changed")]
        self.assertEqual(len(changes), 2)
        self.assertTrue(all(e["params"]["_meta"][SUBSCRIPTION_ID] == 1234 for e in changes))

    def test_survivesAChild(self) -> None:
        """
        When a child dies the subscription stays open and is opened on the
        replacement once it is ready.
        """
        self.makePool(size=2)
        connection, request = self.listen()
        a, b = self.live()
        a.exit(code=1)
        self.assertTrue(connection.open)
        self.clock.advance(0)
        self.greet()
        c = self.spawner.last
        [lc] = self.calls(c, "subscriptions/listen")
        self.note(c, "notifications/tools/list_changed", lc["id"])
        self.assertEqual(request.events()[-1]["method"], "notifications/tools/list_changed")

    def test_closeCancelsEveryChild(self) -> None:
        """
        Closing the subscription's stream cancels it on every child.
        """
        self.makePool(size=2)
        connection, request = self.listen()
        a, b = self.live()
        ids = [self.calls(c, "subscriptions/listen")[0]["id"] for c in (a, b)]
        connection.deferred.addErrback(lambda f: None)
        connection.deferred.cancel()
        for child, ident in zip((a, b), ids):
            self.assertEqual(child.last()["method"], "notifications/cancelled")
            self.assertEqual(child.last()["params"]["requestId"], ident)
        self.assertEqual(self.pool.listens, set())

    def test_errorBeforeAck(self) -> None:
        """
        A child that refuses the subscription answers the client (as JSON
        with the mapped status), and the other children's are cancelled.
        """
        self.makePool(size=2)
        connection, request = self.listen()
        a, b = self.live()
        la, lb = self.calls(a, "subscriptions/listen")[0], self.calls(b, "subscriptions/listen")[0]
        a.send({"jsonrpc": "2.0", "id": la["id"],
                "error": {"code": -32602, "message": "bad filter"}})
        self.assertEqual(request.code, 400)
        self.assertEqual(self.body(connection)["id"], 1234)
        self.assertEqual(b.last(), {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                    "params": {"requestId": lb["id"],
                                               "reason": "the subscription ended"}})


class StopTests(PoolTestCase):
    def test_drainAndStop(self) -> None:
        """
        Draining refuses new requests but waits for those in flight, not
        for open subscriptions; stopping ends subscriptions and children.
        """
        self.makePool(size=1)
        [child] = self.live()
        busy, _ = self.submit(stateless(1, name="x"))
        listen, listenReq = self.submit(stateless(2, "subscriptions/listen", notifications={}))
        drained = self.pool.drain()
        with self.assertRaises(SessionError) as caught:
            self.submit(stateless(3, name="y"))
        self.assertEqual(caught.exception.status, 503)
        self.clock.advance(1)
        self.assertNoResult(drained)
        child.answer(self.calls(child)[0], {})
        self.clock.advance(0.1)
        self.successResultOf(drained)
        stopped = self.pool.stopService()
        self.assertFalse(listen.open)
        self.assertTrue(child.transport.stdinClosed)
        self.clock.advance(10)
        self.successResultOf(stopped)
