"""
Unit tests of the HTTP+SSE transport (2024-11-05) over in-memory HTTP
(StubTreq), fake children and a fake clock: the endpoint event, 202 for
every POST, everything from the child on the one stream, and the session's
life bound to the stream's.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from treq.testing import StubTreq
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mcpbridge import jsonrpc
from mcpbridge.guard import OriginGuard
from mcpbridge.legacy import LegacySession
from mcpbridge.pool import MODERN, ChildPool, PoolConfig
from mcpbridge.servers import BridgedServer, Servers
from mcpbridge.sessions import SessionConfig
from mcpbridge.web import BridgeApp

from .fakes import FakeChild, StubHTTP, makeManager

BASE = "http://127.0.0.1:3000"


def initialize(id: Any = 0) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": {"protocolVersion": "2024-11-05", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}


def call(id: Any, progressToken: Any = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": "echo", "arguments": {}}
    if progressToken is not None:
        params["_meta"] = {"progressToken": progressToken}
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}


class LegacyTestCase(StubHTTP, SynchronousTestCase):
    config = SessionConfig(requestTimeout=30.0, heartbeatInterval=15.0)
    name: Optional[str] = None

    def setUp(self) -> None:
        self.manager, self.spawner, self.clock = makeManager(self.config)
        self.pool = ChildPool(MODERN, self.manager.command, PoolConfig(size=0), self.clock,
                              self.spawner, self.spawner.killpg)
        servers = Servers()
        servers.add(BridgedServer(self.name, self.manager, self.pool))
        self.app = BridgeApp(servers, OriginGuard(), self.clock)
        self.http = StubTreq(self.app.resource())
        self.prefix = "" if self.name is None else f"/servers/{self.name}"

    def openStream(self, headers: Optional[dict[str, str]] = None
                   ) -> tuple[Any, list[bytes], Any, LegacySession, FakeChild]:
        d = self.http.get(BASE + self.prefix + "/sse",
                          headers={"Accept": "text/event-stream", **(headers or {})})
        response, chunks, done = self.stream(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"),
                         ["text/event-stream"])
        (session,) = self.manager.legacy.values()
        return response, chunks, done, session, self.spawner.last

    def events(self, chunks: list[bytes]) -> list[dict[str, str]]:
        """
        The SSE events received so far, as their fields (data lines joined).
        """
        self.http.flush()
        events = []
        for block in b"".join(chunks).decode().split("\n\n")[:-1]:
            event: dict[str, str] = {}
            for line in block.split("\n"):
                if line.startswith(":"):
                    continue
                key, _, value = line.partition(": ")
                event[key] = event[key] + "\n" + value if key in event else value
            if event:
                events.append(event)
        return events

    def endpoint(self, chunks: list[bytes]) -> str:
        first = self.events(chunks)[0]
        self.assertEqual(first["event"], "endpoint")
        return str(first["data"])

    def post(self, url: str, body: Any, contentType: str = "application/json") -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        d = self.http.post(BASE + url, data=data, headers={"Content-Type": contentType})
        return self.respond(d)

    def messages(self, chunks: list[bytes]) -> list[Any]:
        return [json.loads(e["data"]) for e in self.events(chunks)
                if e.get("event") == "message"]

    def drop(self, session: LegacySession) -> None:
        connection = session.stream.connection
        assert connection is not None
        connection.request.connectionLost(Failure(ConnectionDone("client went away")))
        self.http.flush()


class EndpointTests(LegacyTestCase):
    def test_endpointEvent(self) -> None:
        """
        The stream opens with an endpoint event naming the messages path
        and the session; one child is started for it.
        """
        _, chunks, _, session, child = self.openStream()
        url = self.endpoint(chunks)
        self.assertEqual(url, f"/messages?session_id={session.id}")
        self.assertEqual(len(session.id), 32)
        self.assertEqual(len(self.spawner.children), 1)
        self.assertEqual(child.transport.pid, session.child.pid)

    def test_roundTrip(self) -> None:
        """
        A POSTed request is answered 202 at once; the child's response
        arrives as a message event on the stream.
        """
        _, chunks, _, session, child = self.openStream()
        url = self.endpoint(chunks)
        response, body = self.post(url, initialize(1))
        self.assertEqual((response.code, body), (202, b"Accepted"))
        self.assertEqual(child.last()["method"], "initialize")
        child.answerInitialize("2024-11-05")
        self.assertEqual(self.messages(chunks)[-1]["result"]["protocolVersion"], "2024-11-05")
        self.assertEqual(self.manager.lastStartOk, True)
        self.post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.post(url, call(2))
        child.answer(child.last(), {"content": []})
        self.assertEqual(self.messages(chunks)[-1], {"jsonrpc": "2.0", "id": 2,
                                                     "result": {"content": []}})

    def test_everythingOnTheStream(self) -> None:
        """
        Progress, log messages and server requests (sampling) reach the
        stream; the client's answer to a server request reaches the child.
        """
        _, chunks, _, session, child = self.openStream()
        url = self.endpoint(chunks)
        self.post(url, call(1, progressToken="p"))
        child.send({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": "p", "progress": 1}})
        child.send({"jsonrpc": "2.0", "method": "notifications/message",
                    "params": {"level": "info", "data": "hi"}})
        child.send({"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage",
                    "params": {"messages": [], "maxTokens": 1}})
        methods = [m.get("method") for m in self.messages(chunks)]
        self.assertEqual(methods, ["notifications/progress", "notifications/message",
                                   "sampling/createMessage"])
        response, _ = self.post(url, {"jsonrpc": "2.0", "id": "s1", "result": {"ok": 1}})
        self.assertEqual(response.code, 202)
        self.assertEqual(child.last(), {"jsonrpc": "2.0", "id": "s1", "result": {"ok": 1}})

    def test_namedServer(self) -> None:
        """
        A named server announces its own messages path.
        """
        servers = Servers()
        servers.add(BridgedServer("tools", self.manager, self.pool))
        self.http = StubTreq(BridgeApp(servers, OriginGuard(), self.clock).resource())
        self.prefix = "/servers/tools"
        _, chunks, _, session, _ = self.openStream()
        url = self.endpoint(chunks)
        self.assertEqual(url, f"/servers/tools/messages?session_id={session.id}")
        response, _ = self.post(url, initialize())
        self.assertEqual(response.code, 202)
        response, _ = self.post(f"/messages?session_id={session.id}", initialize())
        self.assertEqual(response.code, 404)

    def test_trailingSlashAndAlias(self) -> None:
        """
        /messages/ and the sessionId spelling of the parameter are taken too.
        """
        _, chunks, _, session, child = self.openStream()
        for n, url in enumerate([f"/messages/?session_id={session.id}",
                                 f"/messages?sessionId={session.id}",
                                 f"/messages/?sessionId={session.id}"]):
            response, _ = self.post(url, call(n))
            self.assertEqual(response.code, 202, url)
            self.assertEqual(child.last()["id"], n, url)


class RefusalTests(LegacyTestCase):
    def test_unknownSession(self) -> None:
        response, body = self.post("/messages?session_id=0123", initialize())
        self.assertEqual(response.code, 404)
        self.assertEqual(json.loads(body)["error"]["code"], jsonrpc.INVALID_REQUEST)

    def test_missingSession(self) -> None:
        response, body = self.post("/messages", initialize())
        self.assertEqual(response.code, 400)
        self.assertIn("session_id", json.loads(body)["error"]["message"])

    def test_malformedKeepsSession(self) -> None:
        """
        Malformed JSON and an invalid message are 400; the session lives on.
        """
        _, chunks, _, session, child = self.openStream()
        url = self.endpoint(chunks)
        response, body = self.post(url, b"{not json")
        self.assertEqual(response.code, 400)
        self.assertEqual(json.loads(body)["error"]["code"], jsonrpc.PARSE_ERROR)
        response, _ = self.post(url, {"jsonrpc": "1.0", "id": 1, "method": "x"})
        self.assertEqual(response.code, 400)
        response, _ = self.post(url, b"{}", contentType="text/plain")
        self.assertEqual(response.code, 415)
        self.assertIs(self.manager.getLegacy(session.id), session)
        response, _ = self.post(url, initialize())
        self.assertEqual(response.code, 202)

    def test_duplicateId(self) -> None:
        _, chunks, _, session, child = self.openStream()
        url = self.endpoint(chunks)
        self.post(url, call(7))
        response, body = self.post(url, call(7))
        self.assertEqual(response.code, 409)
        self.assertEqual(json.loads(body)["id"], 7)

    def test_sessionLimit(self) -> None:
        """
        SSE sessions count against --max-sessions.
        """
        self.manager.config = SessionConfig(maxSessions=1)
        self.openStream()
        response, body = self.respond(self.http.get(BASE + "/sse"))
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["5"])

    def test_hostRefused(self) -> None:
        response, _ = self.respond(self.http.get(BASE + "/sse",
                                                 headers={"Host": "evil.example"}))
        self.assertEqual(response.code, 421)
        self.assertEqual(self.spawner.children, [])

    def test_unknownServer(self) -> None:
        response, body = self.respond(self.http.get(BASE + "/servers/nope/sse"))
        self.assertEqual(response.code, 404)
        self.assertIn("nope", json.loads(body)["error"]["message"])


class LifecycleTests(LegacyTestCase):
    def test_clientClosesStream(self) -> None:
        """
        The client going away ends the session and stops its child.
        """
        _, chunks, _, session, child = self.openStream()
        self.drop(session)
        self.assertEqual(self.manager.legacy, {})
        self.assertTrue(child.transport.stdinClosed)
        response, _ = self.post(f"/messages?session_id={session.id}", initialize())
        self.assertEqual(response.code, 404)

    def test_childExits(self) -> None:
        """
        A child that exits fails what is pending and ends the stream.
        """
        _, chunks, done, session, child = self.openStream()
        url = self.endpoint(chunks)
        self.post(url, call(1))
        child.exit(3)
        self.http.flush()
        self.successResultOf(done)
        error = self.messages(chunks)[-1]
        self.assertEqual(error["id"], 1)
        self.assertEqual(error["error"]["code"], jsonrpc.CONNECTION_CLOSED)
        self.assertEqual(self.manager.legacy, {})
        self.assertEqual(self.manager.lastStartOk, False)

    def test_timeout(self) -> None:
        """
        A request unanswered for the request timeout gets an error event
        and the child is told to cancel it; progress restarts the clock.
        """
        _, chunks, _, session, child = self.openStream()
        url = self.endpoint(chunks)
        self.post(url, call(1, progressToken="p"))
        self.clock.advance(20)
        child.send({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": "p", "progress": 1}})
        self.clock.advance(20)
        self.assertNotIn("error", self.messages(chunks)[-1])
        self.clock.advance(11)
        error = self.messages(chunks)[-1]
        self.assertEqual((error["id"], error["error"]["code"]), (1, jsonrpc.REQUEST_TIMEOUT))
        self.assertEqual(child.last()["method"], "notifications/cancelled")
        self.assertEqual(child.last()["params"]["requestId"], 1)

    def test_heartbeat(self) -> None:
        """
        A quiet stream gets a keepalive comment once the heartbeat interval
        (15 s) has passed, not before.
        """
        _, chunks, _, session, child = self.openStream()
        self.clock.advance(14)
        self.http.flush()
        self.assertNotIn(b": keepalive\n\n", b"".join(chunks))
        self.clock.advance(2)
        self.http.flush()
        self.assertIn(b": keepalive\n\n", b"".join(chunks))

    def test_shutdown(self) -> None:
        """
        Stopping the manager ends every SSE session and its child.
        """
        _, chunks, done, session, child = self.openStream()
        d = self.manager.stopService()
        self.clock.advance(1)
        child.exit(0)
        self.successResultOf(d)
        self.http.flush()
        self.successResultOf(done)
        self.assertEqual(session.state, "closed")
        self.assertTrue(child.transport.stdinClosed)

    def test_drainRefusesRequests(self) -> None:
        _, chunks, _, session, child = self.openStream()
        url = self.endpoint(chunks)
        self.manager.drain()
        response, _ = self.post(url, call(1))
        self.assertEqual(response.code, 503)
        response, _ = self.respond(self.http.get(BASE + "/sse"))
        self.assertEqual(response.code, 503)

    def test_status(self) -> None:
        _, chunks, _, session, child = self.openStream()
        status = self.manager.status()
        self.assertEqual(status["sse_sessions"], 1)
        self.assertEqual(status["children"][0]["transport"], "sse")
        response, body = self.respond(self.http.get(BASE + "/health"))
        report = json.loads(body)
        self.assertEqual(report["sse_sessions"], 1)
        self.assertEqual(report["servers"]["default"]["sse_sessions"], 1)
