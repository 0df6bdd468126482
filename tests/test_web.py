"""
Unit tests of the Streamable HTTP endpoint over in-memory HTTP (StubTreq),
fake children and a fake clock: status codes, sessions, JSON and SSE
answers, routing of server messages, resumption, timeouts.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import attr
from treq.testing import StubTreq
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mcpbridge.guard import OriginGuard
from mcpbridge.pool import MODERN, ChildPool, PoolConfig
from mcpbridge.sessions import SessionConfig
from mcpbridge.web import BridgeApp

from .fakes import FakeChild, StubHTTP, makeManager, parseSSE

URL = "http://127.0.0.1:3000/mcp"
ACCEPT = "application/json, text/event-stream"




def initializeRequest(id: Any = 0, version: str = "2025-11-25") -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {"sampling": {}},
                       "clientInfo": {"name": "t", "version": "1"}}}


def call(id: Any, name: str = "echo", meta: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": {}}
    if meta:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}


class BridgeTestCase(StubHTTP, SynchronousTestCase):
    config = SessionConfig()

    def setUp(self) -> None:
        self.manager, self.spawner, self.clock = makeManager(attr.evolve(self.config))
        self.pool = ChildPool(MODERN, self.manager.command, PoolConfig(size=0), self.clock,
                              self.spawner, self.spawner.killpg)
        self.app = BridgeApp.single(self.manager, OriginGuard(), self.clock, self.pool)
        self.http = StubTreq(self.app.resource())

    def request(self, method: str, body: Any = None, session: Optional[str] = None,
                headers: Optional[dict[str, str]] = None, accept: str = ACCEPT) -> Any:
        h = {"Accept": accept, "Content-Type": "application/json"}
        if session:
            h["Mcp-Session-Id"] = session
        h.update(headers or {})
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        d = self.http.request(method, URL, data=data, headers=h)
        self.http.flush()
        return d

    def post(self, body: Any, session: Optional[str] = None, **kw: Any) -> Any:
        return self.request("POST", body, session, **kw)

    def open(self, version: str = "2025-11-25") -> tuple[str, FakeChild]:
        """
        Initialize a session; return its id and its child.
        """
        d = self.post(initializeRequest(version=version))
        child = self.spawner.last
        child.answerInitialize(version)
        response, body = self.respond(d)
        self.assertEqual(response.code, 200)
        sid = response.headers.getRawHeaders("mcp-session-id")[0]
        return sid, child


class InitializeTests(BridgeTestCase):
    def test_initialize(self) -> None:
        """
        initialize spawns a child, forwards the request unchanged, and
        answers with its result as JSON plus a fresh random session id.
        """
        d = self.post(initializeRequest())
        child = self.spawner.last
        self.assertEqual(child.received(), [initializeRequest()])
        child.answerInitialize()
        response, body = self.respond(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        sid = response.headers.getRawHeaders("mcp-session-id")[0]
        self.assertRegex(sid, r"^[0-9a-f]{32}$")
        self.assertEqual(json.loads(body)["result"]["serverInfo"]["name"], "fake")

    def test_sessionsIsolated(self) -> None:
        """
        Every initialize gets its own child and its own session id.
        """
        a, childA = self.open()
        b, childB = self.open()
        self.assertNotEqual(a, b)
        self.assertIsNot(childA, childB)
        d = self.post(call(1), session=b)
        self.assertEqual(childA.received()[-1]["method"], "initialize")
        self.assertEqual(childB.last()["id"], 1)
        childB.answer(childB.last(), {"content": []})
        self.assertEqual(self.respond(d)[0].code, 200)

    def test_startFailure(self) -> None:
        """
        A child that cannot be spawned gives 502 with a JSON-RPC error that
        says why, and /health turns 503.
        """
        self.spawner.failWith = OSError(2, "No such file")
        response, body = self.respond(self.post(initializeRequest()))
        self.assertEqual(response.code, 502)
        self.assertIn("could not be started", json.loads(body)["error"]["message"])
        self.assertIsNone(response.headers.getRawHeaders("mcp-session-id"))
        health, _ = self.respond(self.http.get("http://127.0.0.1/health"))
        self.assertEqual(health.code, 503)

    def test_exitDuringStartup(self) -> None:
        """
        A child that exits before answering initialize gives 502 naming its
        exit code, and no session.
        """
        d = self.post(initializeRequest())
        self.spawner.last.exit(127)
        response, body = self.respond(d)
        self.assertEqual(response.code, 502)
        self.assertIn("exited with code 127", json.loads(body)["error"]["message"])
        self.assertIsNone(response.headers.getRawHeaders("mcp-session-id"))
        self.assertEqual(self.manager.count, 0)

    def test_startupTimeout(self) -> None:
        """
        A child that never answers initialize gives 504 after the startup
        timeout and is stopped.
        """
        d = self.post(initializeRequest())
        child = self.spawner.last
        self.clock.advance(self.config.startupTimeout + 0.1)
        response, body = self.respond(d)
        self.assertEqual(response.code, 504)
        self.assertIn("did not answer initialize", json.loads(body)["error"]["message"])
        self.assertTrue(child.transport.stdinClosed)

    def test_initializeError(self) -> None:
        """
        A child that answers initialize with an error: the error is passed
        on, without a session id, and the child is stopped.
        """
        d = self.post(initializeRequest())
        child = self.spawner.last
        child.send({"jsonrpc": "2.0", "id": 0, "error": {"code": -32602, "message": "bad"}})
        response, body = self.respond(d)
        self.assertEqual(json.loads(body)["error"]["message"], "bad")
        self.assertIsNone(response.headers.getRawHeaders("mcp-session-id"))
        self.assertTrue(child.transport.stdinClosed)

    def test_maxSessions(self) -> None:
        """
        Past --max-sessions, initialize gets 503 with Retry-After and no child.
        """
        self.manager.config.maxSessions = 1
        self.open()
        response, body = self.respond(self.post(initializeRequest()))
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["5"])
        self.assertEqual(len(self.spawner.children), 1)
        self.assertIn("too many sessions", json.loads(body)["error"]["message"])


class RequestValidationTests(BridgeTestCase):
    def assertStatus(self, d: Any, code: int, rpcCode: Optional[int] = None) -> None:
        response, body = self.respond(d)
        self.assertEqual(response.code, code, body)
        if rpcCode is not None:
            self.assertEqual(json.loads(body)["error"]["code"], rpcCode)

    def test_accept(self) -> None:
        """
        A POST must accept both JSON and SSE (406 otherwise); a GET must
        accept SSE.
        """
        sid, _ = self.open()
        self.assertStatus(self.post(call(1), sid, accept="application/json"), 406)
        self.assertStatus(self.request("GET", None, sid, accept="application/json"), 406)

    def test_contentType(self) -> None:
        """
        A POST body that is not declared JSON is refused with 415.
        """
        sid, _ = self.open()
        self.assertStatus(self.post(call(1), sid, headers={"Content-Type": "text/plain"}), 415)

    def test_parseError(self) -> None:
        """
        A body that is not JSON is 400 with -32700; not JSON-RPC is -32600.
        """
        sid, _ = self.open()
        self.assertStatus(self.post(b"{nope", sid), 400, -32700)
        self.assertStatus(self.post({"id": 1}, sid), 400, -32600)
        self.assertStatus(self.post([], sid), 400, -32600)
        self.assertStatus(self.post({"jsonrpc": "2.0", "id": True, "method": "x"}, sid),
                          400, -32600)

    def test_sessionHeader(self) -> None:
        """
        Without a session id: 400; with an unknown one: 404.
        """
        self.assertStatus(self.post(call(1)), 400)
        self.assertStatus(self.post(call(1), "f" * 32), 404)
        self.assertStatus(self.request("GET", None, "f" * 32), 404)
        self.assertStatus(self.request("DELETE", None, "f" * 32), 404)

    def test_protocolVersion(self) -> None:
        """
        In a live session an unsupported MCP-Protocol-Version is 400 saying
        so (the session decides the era, not the header); a supported one
        passes.
        """
        sid, child = self.open()
        response, body = self.respond(
            self.post(call(1), sid, headers={"MCP-Protocol-Version": "1999-01-01"}))
        self.assertEqual(response.code, 400)
        error = json.loads(body)["error"]
        self.assertEqual(error["code"], -32600)
        self.assertIn("unsupported MCP-Protocol-Version '1999-01-01'", error["message"])
        d = self.post(call(2), sid, headers={"MCP-Protocol-Version": "2025-11-25"})
        child.answer(child.last(), {})
        self.assertStatus(d, 200)

    def test_batchRefused(self) -> None:
        """
        Batches are a 400 after 2025-03-26.
        """
        sid, _ = self.open("2025-06-18")
        self.assertStatus(self.post([call(1), call(2)], sid), 400)

    def test_otherMethods(self) -> None:
        """
        /mcp answers 405 to methods other than POST, GET and DELETE.
        """
        self.assertStatus(self.request("PUT", b"{}"), 405)

    def test_hostAndOrigin(self) -> None:
        """
        A foreign Host is 421 and a foreign Origin 403 (DNS rebinding
        defence); loopback names pass, and nothing is spawned for refusals.
        """
        self.assertStatus(self.post(initializeRequest(), headers={"Host": "evil.example.com"}),
                          421)
        self.assertStatus(self.post(initializeRequest(),
                                    headers={"Origin": "http://evil.example.com"}), 403)
        self.assertEqual(self.spawner.children, [])
        d = self.post(initializeRequest(), headers={"Origin": "http://localhost:5173"})
        self.spawner.last.answerInitialize()
        self.assertStatus(d, 200)


class BatchTests(BridgeTestCase):
    def test_batchJSON(self) -> None:
        """
        In 2025-03-26 a batch of requests is answered with an array of the
        responses; notifications in it are forwarded too.
        """
        sid, child = self.open("2025-03-26")
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        d = self.post([call(1), note, call(2)], sid)
        self.assertEqual([m.get("id") for m in child.received()[1:]], [1, None, 2])
        child.answer(call(2), "two")
        child.answer(call(1), "one")
        response, body = self.respond(d)
        self.assertEqual(sorted(r["result"] for r in json.loads(body)), ["one", "two"])

    def test_batchNotifications(self) -> None:
        """
        A batch of only notifications is 202.
        """
        sid, child = self.open("2025-03-26")
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        response, _ = self.respond(self.post([note, note], sid))
        self.assertEqual(response.code, 202)


class MessageFlowTests(BridgeTestCase):
    def test_notification202(self) -> None:
        """
        A notification is forwarded to the child and answered 202, empty.
        """
        sid, child = self.open()
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        response, body = self.respond(self.post(note, sid))
        self.assertEqual((response.code, body), (202, b""))
        self.assertEqual(child.last(), note)

    def test_jsonWhenResponseFirst(self) -> None:
        """
        A request whose first message back is its response is answered as
        one JSON body with the child's exact bytes.
        """
        sid, child = self.open()
        d = self.post(call(1), sid)
        raw = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"\\u00e9"}]}}'
        child.send(raw + b"\n")
        response, body = self.respond(d)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        self.assertEqual(body, raw)

    def test_sseWhenProgressFirst(self) -> None:
        """
        A request whose child sends progress first switches to SSE: priming
        event, the progress, then the response, and the stream ends.
        """
        sid, child = self.open()
        d = self.post(call(1, meta={"progressToken": "p1"}), sid)
        progress = {"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": "p1", "progress": 1, "total": 2}}
        child.send(progress)
        response, chunks, done = self.stream(d)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/event-stream"])
        self.assertEqual(response.headers.getRawHeaders("x-accel-buffering"), ["no"])
        self.assertEqual(response.headers.getRawHeaders("cache-control"), ["no-cache"])
        child.answer(call(1), {"content": []})
        self.http.flush()
        self.successResultOf(done)
        events = parseSSE(b"".join(chunks))
        self.assertEqual(events[0]["data"], "")
        self.assertEqual(events[0]["retry"], "1000")
        self.assertEqual(events[1]["data"], progress)
        self.assertEqual(events[2]["data"]["id"], 1)
        ids = [e["id"] for e in events]
        self.assertEqual(len(set(ids)), 3)
        self.assertEqual(len({i.split(".")[0] for i in ids}), 1)

    def test_noPrimingBefore20251125(self) -> None:
        """
        Clients of older revisions get no priming event.
        """
        sid, child = self.open("2025-06-18")
        d = self.post(call(1), sid)
        child.send({"jsonrpc": "2.0", "method": "notifications/message",
                    "params": {"level": "info", "data": "x"}})
        child.answer(call(1), {})
        response, body = self.respond(d)
        events = parseSSE(body)
        self.assertEqual([e["data"].get("method") for e in events],
                         ["notifications/message", None])

    def test_outOfOrder(self) -> None:
        """
        Concurrent requests in one session are each answered with their own
        response, whatever order the child answers in.
        """
        sid, child = self.open()
        ds = {i: self.post(call(i), sid) for i in (1, 2, 3)}
        for i in (3, 1, 2):
            child.answer(call(i), f"r{i}")
        for i, d in ds.items():
            self.assertEqual(json.loads(self.respond(d)[1])["result"], f"r{i}")

    def test_duplicateId(self) -> None:
        """
        A second request with an id already in flight gets 409 and a JSON-RPC
        error, and is not forwarded; the first one is unaffected.
        """
        sid, child = self.open()
        first = self.post(call(7), sid)
        response, body = self.respond(self.post(call(7), sid))
        self.assertEqual(response.code, 409)
        self.assertEqual(json.loads(body)["error"]["code"], -32600)
        self.assertEqual(sum(1 for m in child.received() if m.get("id") == 7), 1)
        child.answer(call(7), "ok")
        self.assertEqual(json.loads(self.respond(first)[1])["result"], "ok")

    def test_samplingOnRequestStream(self) -> None:
        """
        A server-to-client request sent during a call goes on that call's
        stream; the client's answer (a POST) is 202 and reaches the child.
        """
        sid, child = self.open()
        d = self.post(call(1), sid)
        sampling = {"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage",
                    "params": {"messages": [], "maxTokens": 5}}
        child.send(sampling)
        response, chunks, done = self.stream(d)
        self.assertEqual(parseSSE(b"".join(chunks))[-1]["data"], sampling)
        answer = {"jsonrpc": "2.0", "id": "s1", "result": {"role": "assistant"}}
        self.assertEqual(self.respond(self.post(answer, sid))[0].code, 202)
        self.assertEqual(child.last(), answer)
        child.answer(call(1), "done")
        self.http.flush()
        self.successResultOf(done)

    def test_clientCancel(self) -> None:
        """
        notifications/cancelled from the client reaches the child and ends
        the cancelled request's stream.
        """
        sid, child = self.open()
        d = self.post(call(1), sid)
        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled",
                  "params": {"requestId": 1}}
        self.assertEqual(self.respond(self.post(cancel, sid))[0].code, 202)
        self.assertEqual(child.last(), cancel)
        response, body = self.respond(d)
        self.assertEqual(response.code, 200)
        child.answer(call(1), "late")  # dropped, no error
        self.assertEqual(self.manager.sessions[sid].pending, {})


class GetStreamTests(BridgeTestCase):
    def openGet(self, sid: str) -> tuple[Any, list[bytes], Any]:
        return self.stream(self.request("GET", None, sid, accept="text/event-stream"))

    def test_listChangedOnGetStream(self) -> None:
        """
        Session-wide notifications go on the GET stream, even while a
        request is in flight; a second GET stream is refused with 409.
        """
        sid, child = self.open()
        response, chunks, done = self.openGet(sid)
        self.assertEqual(response.code, 200)
        d = self.post(call(1), sid)
        changed = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
        child.send(changed)
        self.http.flush()
        self.assertEqual(parseSSE(b"".join(chunks))[-1]["data"], changed)
        second = self.request("GET", None, sid, accept="text/event-stream")
        self.assertEqual(self.respond(second)[0].code, 409)
        child.answer(call(1), "x")
        self.assertEqual(self.respond(d)[0].headers.getRawHeaders("content-type"),
                         ["application/json"])

    def test_backlogDelivered(self) -> None:
        """
        Messages sent while nothing is in flight and no GET stream is open
        are kept, and the next GET stream gets them first.
        """
        sid, child = self.open()
        changed = {"jsonrpc": "2.0", "method": "notifications/resources/list_changed"}
        ping = {"jsonrpc": "2.0", "id": "p", "method": "ping"}
        child.send(changed)
        child.send(ping)
        response, chunks, done = self.openGet(sid)
        data = [e["data"] for e in parseSSE(b"".join(chunks)) if e.get("data")]
        self.assertEqual(data, [changed, ping])

    def test_unlinkedToNewestRequest(self) -> None:
        """
        A log message with no GET stream open goes to the newest request in
        flight, never to two streams.
        """
        sid, child = self.open()
        d1 = self.post(call(1), sid)
        d2 = self.post(call(2), sid)
        log = {"jsonrpc": "2.0", "method": "notifications/message",
               "params": {"level": "info", "data": "x"}}
        child.send(log)
        child.answer(call(1), "a")
        child.answer(call(2), "b")
        r1, b1 = self.respond(d1)
        r2, b2 = self.respond(d2)
        self.assertEqual(json.loads(b1)["result"], "a")
        self.assertEqual([e["data"] for e in parseSSE(b2) if e["data"]][0], log)

    def test_heartbeat(self) -> None:
        """
        A quiet SSE stream gets a keep-alive comment every heartbeat interval.
        """
        sid, child = self.open()
        response, chunks, done = self.openGet(sid)
        before = len(parseSSE(b"".join(chunks)))
        self.clock.advance(self.config.heartbeatInterval + 1)
        self.http.flush()
        events = parseSSE(b"".join(chunks))
        self.assertEqual(len(events), before + 1)
        self.assertEqual(events[-1], {"comment": "keepalive"})


class LifecycleTests(BridgeTestCase):
    config = SessionConfig(requestTimeout=10.0, idleTimeout=60.0)

    def test_delete(self) -> None:
        """
        DELETE ends the session (204): its child's stdin is closed and the
        id is unknown afterwards.
        """
        sid, child = self.open()
        response, _ = self.respond(self.request("DELETE", None, sid))
        self.assertEqual(response.code, 204)
        self.assertTrue(child.transport.stdinClosed)
        self.assertEqual(self.respond(self.post(call(1), sid))[0].code, 404)

    def test_crashMidRequest(self) -> None:
        """
        When the child dies mid-request the request gets a JSON-RPC error
        naming the exit at once, the session is gone (404), and another
        session is untouched.
        """
        other, otherChild = self.open()
        sid, child = self.open()
        d = self.post(call(1), sid)
        child.exit(sig=9)
        response, body = self.respond(d)
        error = json.loads(body)["error"]
        self.assertIn("killed by signal 9", error["message"])
        self.assertEqual(self.respond(self.post(call(2), sid))[0].code, 404)
        d = self.post(call(3), other)
        otherChild.answer(call(3), "fine")
        self.assertEqual(json.loads(self.respond(d)[1])["result"], "fine")

    def test_requestTimeout(self) -> None:
        """
        A request with no answer and no progress gets an error after the
        request timeout, and the child is told to cancel it.
        """
        sid, child = self.open()
        d = self.post(call(1), sid)
        self.clock.advance(10.1)
        response, body = self.respond(d)
        self.assertIn("timed out", json.loads(body)["error"]["message"])
        self.assertEqual(child.last()["method"], "notifications/cancelled")
        self.assertEqual(child.last()["params"]["requestId"], 1)

    def test_progressRestartsTimeout(self) -> None:
        """
        Progress for a request restarts its timeout, so long work that
        reports progress is never cut.
        """
        sid, child = self.open()
        d = self.post(call(1, meta={"progressToken": 5}), sid)
        for i in range(5):
            self.clock.advance(8)
            child.send({"jsonrpc": "2.0", "method": "notifications/progress",
                        "params": {"progressToken": 5, "progress": i}})
        response, chunks, done = self.stream(d)
        child.answer(call(1), "finished")
        self.http.flush()
        self.successResultOf(done)
        self.assertEqual(parseSSE(b"".join(chunks))[-1]["data"]["result"], "finished")

    def test_idleReaped(self) -> None:
        """
        A session with nothing in flight and no stream ends after the idle
        timeout; a busy one does not.
        """
        idle, idleChild = self.open()
        busy, busyChild = self.open()
        self.post(call(1), busy)
        self.clock.advance(61)
        self.assertTrue(idleChild.transport.stdinClosed)
        self.assertFalse(busyChild.transport.stdinClosed)
        self.assertIsNone(self.manager.get(idle))
        self.assertIsNotNone(self.manager.get(busy))

    def test_shutdown(self) -> None:
        """
        Stopping the manager ends every session and waits for every child.
        """
        sid, child = self.open()
        d = self.manager.stopService()
        self.assertTrue(child.transport.stdinClosed)
        self.assertNoResult(d)
        child.exit(0)
        self.successResultOf(d)

    def test_health(self) -> None:
        """
        /health reports status, uptime, sessions and each child's state.
        """
        sid, child = self.open()
        self.clock.advance(2)
        response, body = self.respond(self.http.get("http://127.0.0.1/health"))
        report = json.loads(body)
        self.assertEqual(response.code, 200)
        self.assertEqual(report["status"], "ok")
        self.assertEqual(report["sessions"], 1)
        self.assertGreaterEqual(report["uptime"], 2)
        self.assertEqual(report["children"][0]["pid"], child.pid)
        self.assertEqual(report["children"][0]["state"], "running")

    def test_oversizedResponse(self) -> None:
        """
        A response over the message size limit becomes a clear error for its
        request, and the session keeps working.
        """
        self.manager.command = self.manager.command.__class__(
            argv=self.manager.command.argv, env=self.manager.command.env,
            maxMessageBytes=1000)
        sid, child = self.open()
        d = self.post(call(9), sid)
        child.send(b'{"jsonrpc":"2.0","id":9,"result":"' + b"z" * 5000 + b'"}\n')
        error = json.loads(self.respond(d)[1])["error"]
        self.assertIn("size limit", error["message"])
        d = self.post(call(10), sid)
        child.answer(call(10), "small")
        self.assertEqual(json.loads(self.respond(d)[1])["result"], "small")


class ChildStartErrorTests(BridgeTestCase):
    def test_missingCommand(self) -> None:
        """
        A command that vanished from PATH after startup is a 502 with a
        message naming it.
        """
        self.manager.command = self.manager.command.__class__(
            argv=("no-such-program-xyz",), env={"PATH": "/nonexistent"})
        response, body = self.respond(self.post(initializeRequest()))
        self.assertEqual(response.code, 502)
        self.assertIn("no-such-program-xyz", json.loads(body)["error"]["message"])
        self.assertIn("no-such-program-xyz", self.manager.lastError)


class ResumptionTests(BridgeTestCase):
    def progress(self, n: int) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "method": "notifications/progress",
                "params": {"progressToken": "t", "progress": n}}

    def cutPostStream(self, sid: str, child: FakeChild) -> list[dict[str, Any]]:
        """
        Start a call that streams one progress event, then drop the client's
        connection the way Klein reports it (by cancelling the route's
        Deferred).  Returns the events the client saw.
        """
        d = self.post(call(1, meta={"progressToken": "t"}), sid)
        child.send(self.progress(1))
        response, chunks, done = self.stream(d)
        session = self.manager.get(sid)
        assert session is not None
        stream = next(s for s in session.streams.values() if 1 in s.outstanding)
        self.dropConnection(stream.connection)
        return parseSSE(b"".join(chunks))

    def dropConnection(self, connection: Any) -> None:
        """
        The client goes away: the server's request loses its connection, and
        Klein cancels the route's Deferred.
        """
        connection.request.connectionLost(Failure(ConnectionDone("client went away")))
        self.http.flush()

    def resume(self, sid: str, lastId: str) -> Any:
        return self.request("GET", None, sid, accept="text/event-stream",
                            headers={"Last-Event-ID": lastId})

    def test_resumeFinishedStream(self) -> None:
        """
        Events and the response sent while the client was away are replayed
        on GET with Last-Event-ID, and only those after that id.
        """
        sid, child = self.open()
        seen = self.cutPostStream(sid, child)
        self.assertEqual(seen[-1]["data"], self.progress(1))
        child.send(self.progress(2))
        child.answer(call(1), "end")
        response, body = self.respond(self.resume(sid, seen[-1]["id"]))
        self.assertEqual(response.code, 200)
        data = [e["data"] for e in parseSSE(body)]
        self.assertEqual(data, [self.progress(2),
                                {"jsonrpc": "2.0", "id": 1, "result": "end"}])

    def test_resumeFromPriming(self) -> None:
        """
        Resuming from the priming event replays everything after it.
        """
        sid, child = self.open()
        seen = self.cutPostStream(sid, child)
        child.answer(call(1), "end")
        response, body = self.respond(self.resume(sid, seen[0]["id"]))
        data = [e["data"] for e in parseSSE(body)]
        self.assertEqual(data[0], self.progress(1))
        self.assertEqual(data[-1]["result"], "end")

    def test_resumeLiveStream(self) -> None:
        """
        Resuming a stream whose request is still in flight replays what was
        missed, then carries the rest live, and ends with the response.
        """
        sid, child = self.open()
        seen = self.cutPostStream(sid, child)
        child.send(self.progress(2))
        response, chunks, done = self.stream(self.resume(sid, seen[-1]["id"]))
        self.assertEqual([e["data"] for e in parseSSE(b"".join(chunks))], [self.progress(2)])
        child.send(self.progress(3))
        child.answer(call(1), "end")
        self.http.flush()
        self.successResultOf(done)
        data = [e["data"] for e in parseSSE(b"".join(chunks))]
        self.assertEqual(data[1:], [self.progress(3),
                                    {"jsonrpc": "2.0", "id": 1, "result": "end"}])

    def test_resumeGetStream(self) -> None:
        """
        The GET stream can be resumed too; events of other streams are not
        replayed on it.
        """
        sid, child = self.open()
        d = self.request("GET", None, sid, accept="text/event-stream")
        response, chunks, done = self.stream(d)
        changed = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
        child.send(changed)
        self.http.flush()
        seen = parseSSE(b"".join(chunks))
        self.dropConnection(self.manager.sessions[sid].getStream.connection)
        self.cutPostStream(sid, child)
        child.answer(call(1), "x")
        child.send({"jsonrpc": "2.0", "method": "notifications/prompts/list_changed"})
        response, chunks, done = self.stream(self.resume(sid, seen[-1]["id"]))
        data = [e["data"] for e in parseSSE(b"".join(chunks)) if e.get("data")]
        self.assertEqual(data, [{"jsonrpc": "2.0",
                                 "method": "notifications/prompts/list_changed"}])

    def test_resumeNothingToReplay(self) -> None:
        """
        Resuming with nothing missed still answers 200 and the SSE headers
        at once, not at the next event or heartbeat.
        """
        sid, child = self.open()
        seen = self.cutPostStream(sid, child)
        d = self.resume(sid, seen[-1]["id"])
        self.http.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/event-stream"])

    def test_badLastEventId(self) -> None:
        """
        A malformed Last-Event-ID, or one naming a stream the session never
        had, is a 400.
        """
        sid, child = self.open()
        self.assertEqual(self.respond(self.resume(sid, "garbage"))[0].code, 400)
        self.assertEqual(self.respond(self.resume(sid, "99.1"))[0].code, 400)


class ForkFailureTests(BridgeTestCase):
    def test_eagain(self) -> None:
        """
        A fork refused by the system (EAGAIN) is a 502 saying so; the bridge
        keeps serving, and the next session starts once fork works again.
        """
        import errno

        self.spawner.failWith = OSError(errno.EAGAIN, "Resource temporarily unavailable")
        response, body = self.respond(self.post(initializeRequest()))
        self.assertEqual(response.code, 502)
        self.assertIn("EAGAIN", json.loads(body)["error"]["message"])
        self.spawner.failWith = None
        self.open()
