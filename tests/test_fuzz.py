"""
Property-based fuzzing of every HTTP endpoint of the bridge, through the
real HTTP parser.

Each example builds a fresh bridge in memory (L{World}): a default server
and a named one (C{alpha}), each with its session manager and a stateless
pool of one child, every child a L{FakeChild} played by L{FakeMCP}, which
answers whatever the bridge writes to it and puts its own secret marker in
everything it says.  Four sessions are opened first: C{A} (2025-11-25, with
an open GET stream and a request in flight), C{B} (2025-03-26, so batches
pass), C{C} (on C{/servers/alpha/mcp}) and C{L} (HTTP+SSE on C{/sse}).
Hypothesis then throws raw bytes, or well-framed requests with random
methods, paths, headers and bodies, at the L{makeSite} site over a
L{StringTransport}, split at random points; fake children answer, the fake
clock moves past the request timeout, and what came back is read strictly
with h11, as a client would.

Every exchange must satisfy (L{violations}):

 - the output is a sequence of well-formed HTTP responses, and a whole
   request gets at least a status line; anything but an open event stream
   is complete;
 - no 500 (5xx only as 502/503/504 with a JSON-RPC error), no traceback or
   internal repr in a body, nothing logged as an error, no exception
   escaping into the reactor;
 - a 4xx or 5xx from C{/mcp}, C{/messages}, C{/sse} or C{/servers/...} is
   C{application/json} and C{{"jsonrpc": "2.0", "id": ..., "error":
   {"code": int, "message": str}}} (strict RFC 8259 JSON: no NaN); 202 and
   204 carry no JSON-RPC body; a 200 is strict JSON or a well-formed
   C{text/event-stream};
 - what the bridge writes to a child is one strict UTF-8 JSON-RPC message
   per line;
 - no answer carries a fixture session's id or its child's marker unless
   the request named that session; no fixture stream carries another's;
 - afterwards the bridge is alive: C{/health} is 200 and each fixture
   session the request did not name still answers a normal request.

Known bugs (L{KNOWN_BUGS}) each have a reproducer and a test here that
fails until the bridge is fixed.  While a reproducer still shows its bug,
the properties tolerate that bug's symptoms on the inputs that trigger it,
so the fuzzers keep looking for new ones; once it is fixed, the tolerance
switches itself off.

Set C{MCPBRIDGE_FUZZ_SCALE} (default 1) to run more or fewer examples.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import secrets
import tempfile
import traceback
from typing import Any, Callable, Iterable, Optional
from urllib.parse import unquote_to_bytes

import attr
import h11
import hypothesis.configuration
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site
from zope.interface import implementer

from mcpbridge.child import CommandSpec
from mcpbridge.gate import Credentials, Gate, RateLimiter
from mcpbridge.guard import OriginGuard
from mcpbridge.site import BridgeSite
from mcpbridge.pool import PoolConfig
from mcpbridge.servers import BridgedServer, ServerSpec, Servers
from mcpbridge.sessions import SessionConfig
from mcpbridge.web import BridgeApp

from .fakes import FakeChild, FakeSpawner

# Hypothesis keeps a cache under its home directory even without an example
# database; keep it out of the working tree.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    hypothesis.configuration.set_hypothesis_home_dir(
        os.path.join(tempfile.gettempdir(), "mcpbridge-hypothesis"))

SCALE = float(os.environ.get("MCPBRIDGE_FUZZ_SCALE", "1") or "1")


def fuzz(examples: int) -> Any:
    """
    The settings of one property: C{examples} (times the scale), no
    deadline, no example database.
    """
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)


# ---------------------------------------------------------------------------
# The thing under test
# ---------------------------------------------------------------------------

API_KEY = b"fuzz-key-5d1c0a7e"


def makeSite(servers: Servers, clock: MemoryReactorClock) -> Site:
    """
    The bridge's whole HTTP stack over C{servers}, as the listening ports
    serve it (L{BridgeSite}: request deadline, body limit; L{Gate}: CORS,
    rate limit, an API key, 413): every request in this module goes through
    here.  The rate limit is high enough for the twenty or so requests of
    one example from 127.0.0.1.
    """
    guard = OriginGuard()
    app = BridgeApp(servers, guard, clock)
    gate = Gate(app.resource(), guard, Credentials([API_KEY.decode()]),
                RateLimiter(1000.0, 1000, clock), lean=app.renderMCP)
    return BridgeSite(gate, reactor=clock)


#: Headers every request of the fixtures (and most fuzzed ones) carries.
CREDENTIALS: list[tuple[bytes, bytes]] = [(b"X-API-Key", API_KEY)]

NAMED = "alpha"


def serverSpec(name: Optional[str]) -> ServerSpec:
    """
    A server over fake children whose requests time out after 5 s (so an
    exchange can wait them out) and whose streams get keep-alives every 2 s.
    """
    return ServerSpec(name, CommandSpec(argv=("/bin/sh",), env={"PATH": "/usr/bin:/bin"}),
                      SessionConfig(requestTimeout=5.0, startupTimeout=5.0,
                                    heartbeatInterval=2.0),
                      PoolConfig(size=1, requestTimeout=5.0, startupTimeout=5.0,
                                 heartbeatInterval=2.0))


# ---------------------------------------------------------------------------
# The fake MCP servers
# ---------------------------------------------------------------------------

PV = "io.modelcontextprotocol/protocolVersion"
CAPS = "io.modelcontextprotocol/clientCapabilities"
INFO = "io.modelcontextprotocol/clientInfo"
LOGLEVEL = "io.modelcontextprotocol/logLevel"
MODERN = "2026-07-28"
SESSION_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")

#: The tool every fake server has: two arguments mirrored in headers.
WEATHER = {
    "name": "weather",
    "inputSchema": {"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "count": {"type": "integer", "x-mcp-header": "Count"}}},
}
#: A tool call the fake servers never answer (it times out).
SLOW = "slow"


def _noConstant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strictJSON(data: bytes) -> Any:
    """
    Parse C{data} as RFC 8259 JSON: UTF-8 without a BOM, no NaN or Infinity.

    @raise ValueError: when it is not.
    """
    return json.loads(data.decode("utf-8"), parse_constant=_noConstant)


class FakeMCP:
    """
    Plays the MCP server on every fake child: answers each request the
    bridge writes (except a C{tools/call} of L{SLOW}), says something
    first when a tool is called, and on L{chatter} speaks unprompted.
    Everything a child says carries its marker.

    @ivar problems: lines the bridge wrote that are not one strict UTF-8
        JSON-RPC message (or batch).
    """

    def __init__(self, spawner: FakeSpawner) -> None:
        self.spawner = spawner
        self.markers: dict[int, str] = {}
        self._read: dict[int, int] = {}
        self._serverIds = itertools.count(1)
        self.problems: list[str] = []

    def marker(self, child: FakeChild) -> str:
        if child.pid not in self.markers:
            self.markers[child.pid] = f"SECRET{child.pid}x{secrets.token_hex(6)}"
        return self.markers[child.pid]

    def _alive(self, child: FakeChild) -> bool:
        return not child.exited and not child.transport.lost

    def pump(self) -> bool:
        """
        Answer what the bridge wrote since the last time.

        @return: whether there was anything.
        """
        busy = False
        for child in list(self.spawner.children):
            data = child.transport.data
            start = self._read.get(child.pid, 0)
            end = data.rfind(b"\n") + 1
            if end <= start:
                continue
            self._read[child.pid] = end
            busy = True
            for line in data[start:end].split(b"\n")[:-1]:
                self._line(child, line)
        return busy

    def _line(self, child: FakeChild, line: bytes) -> None:
        try:
            obj = strictJSON(line)
        except (ValueError, RecursionError) as e:
            self.problems.append(f"child {child.pid} got a line that is not strict UTF-8 "
                                 f"JSON ({e}): {line[:200]!r}")
            return
        items = obj if isinstance(obj, list) else [obj]
        if not items or not all(isinstance(i, dict) for i in items):
            self.problems.append(f"child {child.pid} got a line that is not a JSON-RPC "
                                 f"message: {line[:200]!r}")
            return
        for item in items:
            if "method" in item and "id" in item and self._alive(child):
                self._answer(child, item)

    def _answer(self, child: FakeChild, request: dict[str, Any]) -> None:
        mark = self.marker(child)
        method = request["method"]
        params = request.get("params") if isinstance(request.get("params"), dict) else {}
        assert isinstance(params, dict)
        info = {"name": mark, "version": "1"}
        if method == "initialize":
            asked = params.get("protocolVersion")
            result: Any = {"protocolVersion": asked if asked in SESSION_VERSIONS
                           else SESSION_VERSIONS[0],
                           "capabilities": {"tools": {"listChanged": True}, "logging": {}},
                           "serverInfo": info}
        elif method == "server/discover":
            result = {"supportedVersions": [MODERN], "capabilities": {"tools": {}},
                      "serverInfo": info}
        elif method == "tools/list":
            result = {"tools": [dict(WEATHER, description=mark),
                                {"name": SLOW, "inputSchema": {"type": "object"}}],
                      "ttlMs": 60000}
        else:
            if method == "tools/call":
                if params.get("name") == SLOW:
                    return
                child.send({"jsonrpc": "2.0", "method": "notifications/message",
                            "params": {"level": "info", "data": mark}})
            meta = params.get("_meta")
            if isinstance(meta, dict) and "progressToken" in meta:
                child.send({"jsonrpc": "2.0", "method": "notifications/progress",
                            "params": {"progressToken": meta["progressToken"], "progress": 1,
                                       "message": mark}})
            result = {"content": [{"type": "text", "text": mark}]}
        child.send({"jsonrpc": "2.0", "id": request["id"], "result": result})

    def chatter(self, child: FakeChild) -> None:
        """
        Speak unprompted: a log message, a session-wide notification,
        progress for tokens clients commonly use, a response to nothing,
        and a request of the server's own.
        """
        if not self._alive(child):
            return
        mark = self.marker(child)
        child.send({"jsonrpc": "2.0", "method": "notifications/message",
                    "params": {"level": "error", "data": mark}})
        child.send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
                    "params": {"_meta": {"marker": mark}}})
        for token in (0, 1, "1"):
            child.send({"jsonrpc": "2.0", "method": "notifications/progress",
                        "params": {"progressToken": token, "progress": 2, "message": mark}})
        child.send({"jsonrpc": "2.0", "id": 1, "result": {"stray": mark}})
        child.send({"jsonrpc": "2.0", "id": f"srv-{next(self._serverIds)}",
                    "method": "roots/list", "params": {"_meta": {"marker": mark}}})


# ---------------------------------------------------------------------------
# Reading what the bridge answered
# ---------------------------------------------------------------------------

@attr.s(auto_attribs=True)
class Answer:
    """
    One HTTP response as a client read it.
    """

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    complete: bool = False
    #: No Server or Date header: twisted.web's parser refused the request
    #: before any resource saw it.
    parserLevel: bool = False

    def header(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]

    @property
    def contentType(self) -> bytes:
        values = self.header(b"content-type")
        return values[0].split(b";", 1)[0].strip().lower() if values else b""

    def __repr__(self) -> str:
        state = "" if self.complete else ", incomplete"
        return f"<{self.status} {self.contentType.decode()}{state}: {self.body[:300]!r}>"


def readAnswers(data: bytes, method: bytes, closed: bool
                ) -> tuple[list[Answer], Optional[str]]:
    """
    The HTTP responses in C{data}, read strictly (h11) as the client of
    C{method} requests would.

    @param closed: whether the server closed the connection after C{data}.
    @return: the responses, and what is wrong with C{data} if it is not a
        sequence of well-formed responses.
    """
    conn = h11.Connection(h11.CLIENT)
    hmethod = "HEAD" if method == b"HEAD" else "GET"
    answers: list[Answer] = []
    try:
        if data:
            conn.receive_data(data)  # (empty bytes would mean the end)
        if closed:
            conn.receive_data(b"")
        while True:
            conn.send(h11.Request(method=hmethod, target="/", headers=[("Host", "fuzz")]))
            conn.send(h11.EndOfMessage())
            current: Optional[Answer] = None
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return answers, None
                if isinstance(event, h11.ConnectionClosed):
                    if current is not None and not current.complete:
                        return answers, "the connection closed in the middle of a response"
                    return answers, None
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    headers = [(bytes(k).lower(), bytes(v)) for k, v in event.headers]
                    names = {k for k, _ in headers}
                    current = Answer(event.status_code, headers,
                                     parserLevel=not ({b"server", b"date"} & names))
                    answers.append(current)
                elif isinstance(event, h11.Data):
                    assert current is not None
                    current.body += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    assert current is not None
                    current.complete = True
                    break
            leftover, _ = conn.trailing_data
            if not leftover:
                return answers, None
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return answers, f"bytes after a response that closes: {leftover[:100]!r}"
    except h11.ProtocolError as e:
        return answers, f"not well-formed HTTP ({type(e).__name__}: {e})"


def sseProblems(body: bytes) -> list[str]:
    """
    What is wrong with the complete events of an SSE body.
    """
    problems = []
    whole = body[:body.rfind(b"\n\n") + 2] if b"\n\n" in body else b""
    for block in whole.split(b"\n\n"):
        data: list[bytes] = []
        kind = b"message"
        for line in block.split(b"\n"):
            if not line or line.startswith(b":"):
                continue
            field, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if field not in (b"id", b"data", b"event", b"retry"):
                problems.append(f"an SSE line that is no field: {line[:120]!r}")
            elif field == b"data":
                data.append(value)
            elif field == b"event":
                kind = value
            elif field == b"retry" and not value.isdigit():
                problems.append(f"an SSE retry that is not a number: {line[:120]!r}")
        text = b"\n".join(data)
        if kind == b"message" and text.strip():
            try:
                parsed = strictJSON(text)
            except ValueError as e:
                problems.append(f"an SSE event whose data is not strict JSON ({e}): "
                                f"{text[:200]!r}")
                continue
            if not isinstance(parsed, (dict, list)):
                problems.append(f"an SSE event whose data is no JSON-RPC message: {text[:200]!r}")
    return problems


def errorBodyProblem(answer: Answer) -> Optional[str]:
    """
    What keeps C{answer} from being a JSON-RPC error response, or L{None}.
    """
    if answer.contentType != b"application/json":
        return f"Content-Type {answer.contentType!r}, not application/json"
    try:
        obj = strictJSON(answer.body)
    except ValueError as e:
        return f"the body is not strict JSON ({e})"
    if not isinstance(obj, dict) or obj.get("jsonrpc") != "2.0" or "id" not in obj:
        return "the body is not a JSON-RPC response"
    ident = obj["id"]
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, (str, int))):
        return f"the error's id {ident!r} is not a string, an integer or null"
    error = obj.get("error")
    if not isinstance(error, dict) or isinstance(error.get("code"), bool) \
            or not isinstance(error.get("code"), int) or not isinstance(error.get("message"), str):
        return "the body has no error member with an integer code and a string message"
    return None


# ---------------------------------------------------------------------------
# The world: a bridge in memory with four sessions open
# ---------------------------------------------------------------------------

@implementer(ILogObserver)
class LogWatch:
    """
    Collects what is logged as an error (failures above all) while a test runs.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        if "log_failure" in event or event.get("isError") or (
                level is not None and level >= LogLevel.error):
            self.events.append(event)

    def take(self) -> list[str]:
        texts = []
        for event in self.events:
            failure = event.get("log_failure")
            text = formatEvent(event)
            if isinstance(failure, Failure):
                text += "\n" + failure.getTraceback()[-1500:]
            texts.append(f"[{event.get('log_namespace')}] {text}")
        self.events.clear()
        return texts


class Client:
    """
    One TCP connection to the site.
    """

    def __init__(self, site: Site, port: int) -> None:
        address = IPv4Address("TCP", "127.0.0.1", port)
        self.transport = StringTransport(peerAddress=address)
        self.protocol = site.buildProtocol(address)
        self.protocol.makeConnection(self.transport)
        self.closed = False

    def send(self, data: bytes, cuts: Iterable[int] = ()) -> None:
        at = 0
        for cut in sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]:
            # Once the server closes, the reactor reads no more.
            if cut > at and not self.transport.disconnecting:
                self.protocol.dataReceived(data[at:cut])
                at = cut

    def read(self, method: bytes) -> tuple[list[Answer], Optional[str]]:
        return readAnswers(self.transport.value(), method, bool(self.transport.disconnecting))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.protocol.connectionLost(Failure(ConnectionDone()))


@attr.s(auto_attribs=True)
class Fixture:
    """
    A session the world opened, its child's marker, and its connections.
    """

    role: str
    sid: str
    marker: str
    clients: list[Client] = attr.Factory(list)


@attr.s(auto_attribs=True)
class Violation:
    """
    One way an exchange broke a property: its kind (C{"500"}, C{"leak"},
    C{"error-body"} ...), what happened, and the answer concerned.
    """

    kind: str
    text: str
    answer: Optional[Answer] = None

    def __str__(self) -> str:
        return f"[{self.kind}] {self.text}"


@attr.s(auto_attribs=True)
class Exchange:
    """
    One request (or raw bytes) and what came of it.
    """

    raw: bytes
    method: bytes
    path: Optional[bytes]
    whole: bool
    answers: list[Answer] = attr.Factory(list)
    problems: list[Violation] = attr.Factory(list)


ACCEPT_BOTH = b"application/json, text/event-stream"
MCP_PATH = re.compile(rb"^/+(mcp|messages|sse|servers)(/|$)")


def pathOf(target: bytes) -> bytes:
    """
    The decoded path of a request target, as routing sees it.
    """
    path = target.split(b"?", 1)[0].split(b"#", 1)[0]
    if path.startswith(b"http://") or path.startswith(b"https://"):
        path = b"/" + path.split(b"/", 3)[-1] if path.count(b"/") >= 3 else b"/"
    return unquote_to_bytes(path)


def requestLine(raw: bytes) -> tuple[bytes, Optional[bytes]]:
    """
    The method and target of the first request in C{raw}, as far as they go.
    """
    first = raw.split(b"\n", 1)[0].rstrip(b"\r")
    parts = first.split()
    return (parts[0] if parts else b""), (parts[1] if len(parts) == 3 else None)


class World:
    """
    A bridge in memory: two servers over fake children and a fake clock,
    the site L{makeSite} builds, and four sessions open (L{fixtures}).
    """

    def __init__(self, watch: LogWatch, fixtures: bool = True) -> None:
        self.watch = watch
        self.clock = MemoryReactorClock()
        self.spawner = FakeSpawner()
        self.mcp = FakeMCP(self.spawner)
        self.servers = Servers()
        for name in (None, NAMED):
            server = BridgedServer.build(serverSpec(name), self.clock, spawn=self.spawner,
                                         killpg=self.spawner.killpg)
            server.startService()
            self.servers.add(server)
        self.site = makeSite(self.servers, self.clock)
        self._ports = itertools.count(40000)
        self._ids = itertools.count(1)
        self.fixtures: dict[str, Fixture] = {}
        self.poolMarkers = [self.mcp.marker(c) for c in self.spawner.children]
        self.eventIds: dict[str, bytes] = {}
        self.settle()
        if fixtures:
            self._openFixtures()

    # Plumbing.

    def connect(self) -> Client:
        return Client(self.site, next(self._ports))

    def settle(self, seconds: int = 0, chatter: Iterable[FakeChild] = ()) -> None:
        """
        Let the children answer until all is quiet, then move the clock on
        one second at a time (C{seconds} times), answering again each time.
        """
        for child in chatter:
            self.mcp.chatter(child)
        for step in range(seconds + 1):
            if step:
                self.clock.advance(1)
            for _ in range(100):
                if not self.mcp.pump():
                    break

    def request(self, method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]] = (),
                body: bytes = b"", client: Optional[Client] = None) -> tuple[Client, Answer]:
        """
        A well-formed request, answered before it returns (or its stream
        opened).
        """
        client = client or self.connect()
        client.send(render(method, target, [*headers, *CREDENTIALS], body))
        self.settle()
        answers, error = client.read(method)
        assert error is None and answers, (error, client.transport.value()[:500])
        return client, answers[-1]

    def post(self, target: bytes, obj: Any, sid: Optional[str] = None,
             extra: Iterable[tuple[bytes, bytes]] = ()) -> tuple[Client, Answer]:
        """
        A POST of C{obj} with good headers, answered before it returns.
        """
        headers = [(b"Host", b"localhost:3000"), (b"Accept", ACCEPT_BOTH),
                   (b"Content-Type", b"application/json"), *extra]
        if sid is not None:
            headers.append((b"Mcp-Session-Id", sid.encode()))
        return self.request(b"POST", target, headers, json.dumps(obj).encode())

    def childOf(self, path: bytes, sid: str, legacy: bool = False) -> FakeChild:
        name = NAMED if path.startswith(b"/servers/") else None
        server = self.servers.get(name)
        assert server is not None
        manager = server.manager
        session: Any = manager.getLegacy(sid) if legacy else manager.get(sid)
        return self.spawner.child(session.child.pid)

    # The fixture sessions.

    def _open(self, role: str, path: bytes, version: str) -> Fixture:
        client, answer = self.post(path, initialize(0, version))
        assert answer.status == 200, answer
        sid = answer.header(b"mcp-session-id")[0].decode()
        fixture = Fixture(role, sid, self.mcp.marker(self.childOf(path, sid)), [client])
        self.fixtures[role] = fixture
        return fixture

    def _openFixtures(self) -> None:
        a = self._open("A", b"/mcp", "2025-11-25")
        getStream, answer = self.request(b"GET", b"/mcp", [
            (b"Host", b"localhost"), (b"Accept", b"text/event-stream"),
            (b"Mcp-Session-Id", a.sid.encode())])
        assert answer.status == 200, answer
        a.clients.append(getStream)
        called, answer = self.post(b"/mcp", call(1, "echo"), a.sid)
        assert answer.status == 200 and answer.complete, answer
        self.eventIds["A"] = re.findall(rb"id: (\d+\.\d+)", answer.body)[-1]
        slow = self.connect()  # never answered: a request in flight
        slow.send(render(b"POST", b"/mcp", [
            (b"Host", b"localhost"), (b"Accept", ACCEPT_BOTH),
            (b"Content-Type", b"application/json"), (b"Mcp-Session-Id", a.sid.encode()),
            *CREDENTIALS], json.dumps(call(2, SLOW)).encode()))
        self.settle()
        a.clients += [called, slow]

        b = self._open("B", b"/mcp", "2025-03-26")
        called, answer = self.post(b"/mcp", call(1, "echo"), b.sid)
        self.eventIds["B"] = re.findall(rb"id: (\d+\.\d+)", answer.body)[-1]
        b.clients.append(called)

        self._open("C", b"/servers/alpha/mcp", "2025-06-18")

        stream, answer = self.request(b"GET", b"/sse", [(b"Host", b"127.0.0.1:3000"),
                                                        (b"Accept", b"text/event-stream")])
        assert answer.status == 200, answer
        lid = re.search(rb"session_id=([0-9a-f]+)", answer.body)
        assert lid is not None, answer
        sid = lid.group(1).decode()
        self.fixtures["L"] = Fixture("L", sid, self.mcp.marker(self.childOf(b"/sse", sid, True)),
                                     [stream])
        _, answer = self.post(b"/messages?session_id=" + sid.encode(),
                              initialize(0, "2024-11-05"))
        assert answer.status == 202, answer
        assert b'"result"' in stream.transport.value(), stream.transport.value()
        self.watch.take()

    def fill(self, data: bytes) -> bytes:
        """
        C{data} with the placeholders filled in: the fixtures' session ids
        and event ids, and C{{{AUTH}}} as the L{CREDENTIALS} header lines.
        """
        if b"{{AUTH}}" in data:
            data = data.replace(b"{{AUTH}}", b"".join(b"%s: %s\r\n" % h for h in CREDENTIALS))
        if b"{{" not in data or not self.fixtures:
            return data
        f = self.fixtures
        values = {
            b"{{A}}": f["A"].sid, b"{{B}}": f["B"].sid, b"{{C}}": f["C"].sid,
            b"{{L}}": f["L"].sid, b"{{AU}}": f["A"].sid.upper(), b"{{A8}}": f["A"].sid[:8],
            b"{{X}}": "0123456789abcdef" * 2,
            b"{{A1}}": f["A"].sid[:-1] + ("1" if f["A"].sid[-1] == "0" else "0"),
            b"{{CU}}": f["C"].sid.upper(), b"{{LU}}": f["L"].sid.upper(),
            b"{{EA}}": self.eventIds["A"].decode(), b"{{EB}}": self.eventIds["B"].decode(),
        }
        for key, value in values.items():
            data = data.replace(key, value.encode())
        return data

    def unfill(self, data: bytes) -> bytes:
        """
        C{data} with the fixtures' session ids written as placeholders again,
        for reports.
        """
        for role, fixture in self.fixtures.items():
            sid = fixture.sid.encode()
            data = data.replace(sid, b"{{%s}}" % role.encode())
            data = data.replace(sid.upper(), b"{{%sU}}" % role.encode())
        return data

    def fixtureChildren(self) -> list[FakeChild]:
        children = []
        for role, fixture in self.fixtures.items():
            legacy = role == "L"
            path = b"/servers/alpha/mcp" if role == "C" else b"/mcp"
            server = self.servers.get(NAMED if role == "C" else None)
            assert server is not None
            session = (server.manager.getLegacy if legacy else server.manager.get)(fixture.sid)
            if session is not None:
                children.append(self.childOf(path, fixture.sid, legacy))
        return children

    # One exchange.

    def exchange(self, raw: bytes, cuts: Iterable[int] = (), whole: bool = True,
                 hangUp: bool = False) -> Exchange:
        """
        Send C{raw} (placeholders filled) on a new connection, split at
        C{cuts}; let the children speak and answer and the clock run past
        the request timeout; read the answers; close the connection.

        @param whole: whether C{raw} is one complete, well-framed request.
        @param hangUp: close the connection right after sending, before
            any child speaks.
        """
        raw = self.fill(raw)
        method, target = requestLine(raw)
        ex = Exchange(raw, method, pathOf(target) if target is not None else None, whole)
        self.watch.take()
        del self.mcp.problems[:]
        client = self.connect()
        self._safely(ex, "sending the request", client.send, raw, cuts)
        if hangUp:
            self._safely(ex, "closing the connection early", client.close)
        self._safely(ex, "letting the children answer", self.settle, 7,
                     self.fixtureChildren() + self.poolChildren())
        answers, error = client.read(method)
        ex.answers = answers
        if error is not None:
            ex.problems.append(Violation("framing", error))
        if whole and not hangUp and not answers and error is None:
            ex.problems.append(Violation("hang", "no answer to a whole request"))
        self._safely(ex, "closing the connection", client.close)
        self._safely(ex, "letting the children answer", self.settle, 3)
        for text in self.watch.take():
            ex.problems.append(Violation("logged", text))
        for text in self.mcp.problems:
            ex.problems.append(Violation("stdin", text))
        return ex

    def poolChildren(self) -> list[FakeChild]:
        return [c for c in self.spawner.children if self.mcp.markers.get(c.pid)
                in self.poolMarkers]

    def _safely(self, ex: Exchange, doing: str, f: Callable[..., Any], *args: Any) -> None:
        try:
            f(*args)
        except Exception as e:
            ex.problems.append(Violation("crash", f"an exception escaped while {doing}: {e!r}\n"
                                         + traceback.format_exc()[-2000:]))

    # Afterwards.

    def aftermath(self, requests: list[bytes]) -> list[Violation]:
        """
        After fuzzing: no fixture stream holds another's data, the bridge
        is healthy, and each fixture session no request named still works.
        """
        problems = []
        everything = b"".join(requests)
        secretsOf = {role: [f.sid.encode(), f.marker.encode()] for role, f in self.fixtures.items()}
        for role, fixture in self.fixtures.items():
            for client in fixture.clients:
                data = client.transport.value()
                answers, error = client.read(b"GET")
                if error is not None:
                    problems.append(Violation("framing", f"session {role}'s stream: {error}"))
                for answer in answers:
                    if answer.contentType == b"text/event-stream":
                        problems += [Violation("sse", f"session {role}'s stream: {p}")
                                     for p in sseProblems(answer.body)]
                for other, secret in secretsOf.items():
                    for s in secret:
                        if other != role and s in data and s not in everything:
                            problems.append(Violation("leak", f"session {role}'s stream "
                                                      f"carries session {other}'s {s!r}"))
                for marker in self.poolMarkers:
                    if marker.encode() in data:
                        problems.append(Violation("leak", f"session {role}'s stream carries "
                                                  f"a pool child's marker"))
        try:
            _, health = self.request(b"GET", b"/health", [(b"Host", b"localhost")])
            if health.status != 200:
                problems.append(Violation("dead", f"/health answers {health!r}"))
            for role, path in (("B", b"/mcp"), ("C", b"/servers/alpha/mcp")):
                fixture = self.fixtures[role]
                if fixture.sid.encode() in everything:
                    continue
                ident = f"check-{next(self._ids)}"
                _, answer = self.post(path, {"jsonrpc": "2.0", "id": ident, "method": "tools/list"},
                                      fixture.sid)
                if answer.status != 200 or fixture.marker.encode() not in answer.body:
                    problems.append(Violation("dead", f"session {role} no longer works: "
                                              f"{answer!r}"))
            fixture = self.fixtures["L"]
            if fixture.sid.encode() not in everything:
                ident = f"check-{next(self._ids)}"
                _, answer = self.post(b"/messages?session_id=" + fixture.sid.encode(),
                                      {"jsonrpc": "2.0", "id": ident, "method": "tools/list"})
                stream = fixture.clients[0].transport.value()
                if answer.status != 202 or ident.encode() not in stream:
                    problems.append(Violation("dead", f"SSE session L no longer works: "
                                              f"{answer!r}"))
        except Exception:
            problems.append(Violation("dead", "a normal request failed afterwards:\n"
                                      + traceback.format_exc()[-2000:]))
        for text in self.watch.take():
            problems.append(Violation("logged", text))
        return problems


def render(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
           framing: str = "length", version: bytes = b"HTTP/1.1",
           chunks: tuple[int, ...] = ()) -> bytes:
    """
    One HTTP request: Content-Length framing, chunked (in pieces of
    C{chunks} bytes), or none at all (for a request without a body).
    """
    lines = [method + b" " + target + b" " + version]
    lines += [name + b": " + value for name, value in headers]
    if framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        out, at = [], 0
        for size in list(chunks) + [len(body)]:
            piece = body[at:at + max(1, size)]
            if piece:
                out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
            at += len(piece)
        while at < len(body):
            out.append(b"%x\r\n%s\r\n" % (len(body) - at, body[at:]))
            at = len(body)
        payload = b"".join(out) + b"0\r\n\r\n"
    elif framing == "length" or body:
        lines.append(b"Content-Length: %d" % len(body))
        payload = body
    else:
        payload = b""
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def initialize(id: Any, version: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {"sampling": {}},
                       "clientInfo": {"name": "fuzz", "version": "1"}}}


def call(id: Any, name: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": {}}}


# ---------------------------------------------------------------------------
# The properties every exchange must have
# ---------------------------------------------------------------------------

_TRACES = (b"Traceback (most recent call last)", b'File "/', b"Processing Failed",
           b" object at 0x", b"builtins.", b"twisted.python.failure")


def violations(world: World, ex: Exchange) -> list[Violation]:
    """
    Everything wrong with one exchange (see the module's docstring).
    """
    found = list(ex.problems)
    mcpPath = ex.path is not None and MCP_PATH.match(ex.path) is not None
    for index, answer in enumerate(ex.answers):
        first = index == 0
        body = answer.body
        for trace in _TRACES:
            if trace in body:
                found.append(Violation("trace", f"the body shows {trace!r}", answer))
        if answer.status >= 500 and (answer.status not in (502, 503, 504)
                                     or errorBodyProblem(answer) is not None):
            found.append(Violation("500", f"answered {answer!r}", answer))
            continue
        for value in answer.header(b"mcp-session-id"):
            if not value or any(c < 0x21 or c > 0x7E for c in value):
                found.append(Violation("session-id", f"Mcp-Session-Id {value!r} is not visible "
                                       f"ASCII", answer))
        if answer.parserLevel:
            continue
        if not answer.complete and not (answer.status == 200
                                        and answer.contentType == b"text/event-stream"):
            if ex.whole:
                found.append(Violation("hang", f"no complete answer: {answer!r}", answer))
            continue
        if not first or ex.path is None or ex.method == b"HEAD":
            continue
        if answer.status >= 400 and mcpPath:
            problem = errorBodyProblem(answer)
            if problem is not None:
                found.append(Violation("error-body", f"a {answer.status} from an MCP endpoint "
                                       f"is no JSON-RPC error: {problem}: {answer!r}", answer))
        elif answer.status in (202, 204):
            if answer.status == 204 and body:
                found.append(Violation("empty-body", f"a 204 with a body: {answer!r}", answer))
            elif errorBodyProblem(answer) is None or answer.contentType == b"application/json":
                found.append(Violation("empty-body", f"a {answer.status} with a JSON-RPC "
                                       f"body: {answer!r}", answer))
        elif answer.status == 200:
            if answer.contentType == b"application/json":
                try:
                    obj = strictJSON(body)
                except ValueError as e:
                    found.append(Violation("json", f"a 200 whose body is not strict JSON "
                                           f"({e}): {answer!r}", answer))
                else:
                    if mcpPath and not isinstance(obj, (dict, list)):
                        found.append(Violation("json", f"a 200 that is no JSON-RPC: {answer!r}",
                                               answer))
            elif answer.contentType == b"text/event-stream":
                for problem in sseProblems(body):
                    found.append(Violation("sse", problem, answer))
            elif mcpPath and ex.method != b"HEAD":
                found.append(Violation("content-type", f"a 200 that is neither JSON nor SSE: "
                                       f"{answer!r}", answer))
    everything = b"".join(a.body + b"".join(v for _, v in a.headers) for a in ex.answers)
    for role, fixture in world.fixtures.items():
        for secret in (fixture.sid.encode(), fixture.marker.encode()):
            if secret in everything and fixture.sid.encode() not in ex.raw:
                what = "session id" if secret == fixture.sid.encode() else "child's data"
                found.append(Violation("leak", f"an answer to a request that did not name "
                                       f"session {role} carries its {what}"))
    return found


# ---------------------------------------------------------------------------
# Known bugs
# ---------------------------------------------------------------------------

def _body(raw: bytes) -> bytes:
    """
    The body of the first request in C{raw}, de-chunked (as far as it goes).
    """
    if b"\r\n\r\n" not in raw:
        return b""
    head, rest = raw.split(b"\r\n\r\n", 1)
    if not re.search(rb"(?im)^transfer-encoding:[ \t]*chunked", head):
        return rest
    body = b""
    while b"\r\n" in rest:
        size, rest = rest.split(b"\r\n", 1)
        try:
            length = int(size.split(b";")[0], 16)
        except ValueError:
            break
        if length == 0:
            break
        body, rest = body + rest[:length], rest[length + 2:]
    return body


def _lenient(raw: bytes) -> bool:
    """
    Whether Python's json module takes the request's body (or, for a
    chunked or cut request, some JSON in it).
    """
    body = _body(raw)
    try:
        json.loads(body)
        return True
    except (ValueError, RecursionError):
        return False


def _nesting(raw: bytes) -> int:
    """
    The deepest nesting of JSON arrays and objects in the body (strings skipped).
    """
    depth = deepest = 0
    inString = escaped = False
    for byte in _body(raw):
        if inString:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                inString = False
        elif byte == 0x22:
            inString = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}|\xed[\xa0-\xbf]")
_NONFINITE = re.compile(rb"NaN|Infinity")
_HUGE_EVENT_ID = re.compile(rb"(?im)^last-event-id:[^\r\n]*\d{4301}")
_HUGE_PARAM = re.compile(rb"(?im)^mcp-param-[^:\r\n]*:[^\r\n]*\d{4301}")


def _notUTF8Body(raw: bytes) -> bool:
    """
    Whether the body is JSON text Python's json module reads as UTF-16 or
    UTF-32, or UTF-8 with a BOM.
    """
    body = _body(raw)
    if json.detect_encoding(body) != "utf-8" or body.startswith(b"\xef\xbb\xbf"):
        return True
    try:
        body.decode("utf-8")  # json.loads takes encoded surrogates (CESU-8)
    except UnicodeDecodeError:
        return True
    return False


@attr.s(auto_attribs=True, frozen=True)
class KnownBug:
    """
    A bug the fuzzers found: how to show it, and which symptoms it
    explains on which inputs.

    @ivar reproducer: raw request bytes; C{{{A}}} and the like name the
        fixture sessions, C{{{AUTH}}} stands for the L{CREDENTIALS} lines.
    @ivar kinds: the kinds of L{Violation} it explains ...
    @ivar trigger: ... on the exchanges (and for the violations) this says.
    """

    name: str
    summary: str
    reproducer: bytes
    kinds: frozenset[str]
    trigger: Callable[[Exchange, Violation], bool]

    def covers(self, ex: Exchange, violation: Violation) -> bool:
        return violation.kind in self.kinds and self.trigger(ex, violation)


def _post(body: bytes, target: bytes = b"/mcp", extra: bytes = b"",
          contentType: bytes = b"application/json") -> bytes:
    return (b"POST " + target + b" HTTP/1.1\r\n{{AUTH}}Host: localhost\r\nAccept: " + ACCEPT_BOTH
            + b"\r\nContent-Type: " + contentType + b"\r\n" + extra
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def _modernWeather(count: bytes) -> bytes:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "weather", "arguments": {"count": 3},
        "_meta": {PV: MODERN, CAPS: {}}}}).encode()
    return _post(body, extra=b"MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\n"
                 b"Mcp-Name: weather\r\nMcp-Param-Count: " + count + b"\r\n")


KNOWN_BUGS = [
    KnownBug(
        "huge-last-event-id",
        "GET /mcp with a Last-Event-ID whose stream or sequence number has more than 4300 "
        "digits: int() raises ValueError in streams.parseEventId; 500 and a logged traceback",
        b"GET /mcp HTTP/1.1\r\n{{AUTH}}Host: localhost\r\nAccept: text/event-stream\r\n"
        b"Mcp-Session-Id: {{A}}\r\nLast-Event-ID: 1." + b"1" * 4301 + b"\r\n\r\n",
        frozenset({"500", "logged", "trace"}),
        lambda ex, v: _HUGE_EVENT_ID.search(ex.raw) is not None),
    KnownBug(
        "huge-param-header",
        "a stateless tools/call whose Mcp-Param-* header for an integer argument has more "
        "than 4300 digits: int() raises ValueError in modern._matches; 500 and a logged "
        "traceback",
        _modernWeather(b"1" * 4301),
        frozenset({"500", "logged", "trace"}),
        lambda ex, v: _HUGE_PARAM.search(ex.raw) is not None),
    KnownBug(
        "surrogate-id",
        "a message whose id is a string with a lone surrogate escape (\"\\ud800\") that the "
        "bridge answers itself (invalid request, 409, ...): jsonrpc.dumps raises "
        "UnicodeEncodeError; 500 and a logged traceback",
        _post(b'{"jsonrpc":"1.0","id":"\\ud800"}'),
        frozenset({"500", "logged", "trace", "crash", "hang"}),
        lambda ex, v: _SURROGATE.search(ex.raw) is not None),
    KnownBug(
        "deep-json",
        "a body nested deeper than the recursion limit: json.loads raises RecursionError, "
        "which _readMessages does not catch; 500 and a logged traceback",
        _post(b"[" * 100000),
        frozenset({"500", "logged", "trace"}),
        lambda ex, v: _nesting(ex.raw) > 500 or b"[" * 500 in ex.raw or b"{" * 500 in ex.raw),
    KnownBug(
        "non-finite-json",
        "NaN, Infinity and -Infinity are taken as JSON (Python's json module): a request "
        "carrying them is forwarded to the child as is (not JSON for it: an initialize then "
        "times out with 504 and /health turns 503), and an invalid id of NaN is echoed in "
        "an error body that is not JSON either",
        _post(b'{"jsonrpc":"2.0","id":NaN,"method":"ping"}'),
        frozenset({"error-body", "json", "stdin", "sse", "500", "dead", "logged"}),
        lambda ex, v: _NONFINITE.search(ex.raw) is not None),
    KnownBug(
        "invalid-id-echoed",
        "an invalid message's id is echoed as is in the 400 error even when it is no valid "
        "id (false, 1.5, [], {}): JSON-RPC says null when the id cannot be determined, and "
        "clients' schemas reject such a response",
        _post(b'{"jsonrpc":"2.0","id":false,"method":"ping"}'),
        frozenset({"error-body"}),
        lambda ex, v: "the error's id" in v.text),
    KnownBug(
        "not-utf8-json",
        "a body in UTF-16 or UTF-32, UTF-8 with a BOM, or with surrogates encoded in "
        "UTF-8 (CESU-8, not valid UTF-8) is parsed (json.loads detects the encoding and "
        "passes surrogates) and then forwarded to the child as is: not UTF-8 JSON for it (an "
        "initialize then times out with 504 and /health turns 503)",
        _post(json.dumps(initialize(0, "2025-11-25")).encode("utf-16")),
        frozenset({"stdin", "500", "dead", "logged"}),
        lambda ex, v: _notUTF8Body(ex.raw) and _lenient(ex.raw)),
    KnownBug(
        "klein-html-errors",
        "a method an MCP path has no route for (PUT, PATCH, OPTIONS ... /mcp; GET "
        "/messages), or a path under /servers/ that is no route, gets Klein's HTML 405 or "
        "404 page, not a JSON-RPC error",
        b"PUT /mcp HTTP/1.1\r\n{{AUTH}}Host: localhost\r\nContent-Length: 0\r\n\r\n",
        frozenset({"error-body"}),
        lambda ex, v: v.answer is not None and v.answer.status in (404, 405)
        and v.answer.body.lower().startswith(b"<!doctype html>")),
    KnownBug(
        "non-utf8-url",
        "a path that percent-decodes to bytes that are not UTF-8, or a Host header that is "
        "not UTF-8: Klein logs a traceback ('Invalid encoding in PATH_INFO' or "
        "'... in SERVER_NAME') and answers 400 text/html 'Non-UTF-8 encoding in URL.'",
        b"GET /servers/%ff/mcp HTTP/1.1\r\n{{AUTH}}Host: localhost\r\n\r\n",
        frozenset({"logged", "error-body"}),
        lambda ex, v: (v.kind == "logged" and "Invalid encoding in " in v.text)
        or (v.answer is not None and v.answer.body == b"Non-UTF-8 encoding in URL.")),
    KnownBug(
        "content-type-line-break",
        "a POST with a body whose Content-Type holds a byte Python's email package takes "
        "for a line break (\\x85, \\x0b, \\x0c, \\x1c-\\x1e): twisted.web's form parsing "
        "(Request.requestReceived -> _parseContentType) raises ValueError out of "
        "dataReceived, so the client gets no answer and the reactor logs a traceback; the "
        "bridge's Site could pass parsePOSTFormSubmission=False (it never reads forms)",
        _post(b"{}", contentType=b"application/json\x85x"),
        frozenset({"crash", "hang", "logged"}),
        lambda ex, v: re.search(rb"(?im)^content-type:[^\r\n]*[\x0b\x0c\x1c-\x1e\x85]",
                                ex.raw) is not None),
    KnownBug(
        "bad-host",
        "a Host header with an empty label ('.', '.a', 'a..b', 'localhost..') or a label "
        "over 63 characters ('x' * 64): werkzeug's Map.bind raises BadHost before any "
        "route, which Klein does not catch; 500 and a logged traceback on every path, "
        "/health included",
        b"GET /health HTTP/1.1\r\n{{AUTH}}Host: a..b\r\n\r\n",
        frozenset({"500", "logged", "trace"}),
        lambda ex, v: any(p.kind == "logged" and "BadHost" in p.text for p in ex.problems)),
]

_present: dict[str, bool] = {}


class FuzzCase(SynchronousTestCase):
    """
    Fresh worlds, and the verdict on what they did.
    """

    def setUp(self) -> None:
        self.watch = LogWatch()
        globalLogPublisher.addObserver(self.watch)
        self.addCleanup(globalLogPublisher.removeObserver, self.watch)

    def world(self, fixtures: bool = True) -> World:
        try:
            world = World(self.watch, fixtures)
        finally:
            self.flushLoggedErrors()
        return world

    def bugPresent(self, bug: KnownBug) -> bool:
        """
        Whether C{bug}'s reproducer still shows it (once per process).
        """
        if bug.name not in _present:
            world = self.world()
            ex = world.exchange(bug.reproducer)
            found = violations(world, ex)
            self.flushLoggedErrors()
            _present[bug.name] = any(bug.covers(ex, v) for v in found)
        return _present[bug.name]

    def verdict(self, world: World, exchanges: list[Exchange], tolerate: bool = True) -> None:
        """
        Fail with every violation in C{exchanges} and after them that no
        known bug explains.
        """
        report = []
        for ex in exchanges:
            for answer in ex.answers[:1]:
                if hypothesis.currently_in_test_context():  # --hypothesis-show-statistics
                    hypothesis.event(f"{ex.method[:10]!r} {answer.status} "
                                     f"{answer.contentType.decode()}")
            found = violations(world, ex)
            self.flushLoggedErrors()
            if tolerate:
                found = [v for v in found
                         if not any(b.covers(ex, v) and self.bugPresent(b) for b in KNOWN_BUGS)]
            if found:
                report.append(f"request {world.unfill(ex.raw)[:1500]!r}\n"
                              + "\n".join(f"  {v}" for v in found))
        after = world.aftermath([ex.raw for ex in exchanges])
        self.flushLoggedErrors()
        if tolerate:
            after = [v for v in after
                     if not any(b.covers(ex, v) and self.bugPresent(b)
                                for b in KNOWN_BUGS for ex in exchanges)]
        if after:
            report.append("afterwards:\n" + "\n".join(f"  {v}" for v in after))
        if report:
            self.fail("\n\n".join(report))


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

def _noBreaks(data: bytes) -> bytes:
    return data.replace(b"\r", b"").replace(b"\n", b"")


def utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


#: Header values of no particular meaning: odd bytes, long, empty, spaced.
oddValues = st.one_of(
    st.binary(max_size=40).map(_noBreaks),  # control bytes: twisted.web refuses most
    st.binary(min_size=1, max_size=40).map(lambda b: bytes(x | 0x80 for x in b)),
    st.text(max_size=30).map(utf8).map(_noBreaks),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.encode),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.encode),
    st.integers(1000, 9000).map(lambda n: b"x" * n),
    st.sampled_from([b"", b" ", b"\t", b"  padded  ", b",", b";", b'"', b"=?base64?",
                     b"=?base64?AAAA?=", b"\x7f", b"\x00", b"null", b"undefined", b"-1",
                     b"%00", b"..", b"\xc3\x28", b"\xed\xa0\x80"]),
)

ACCEPTS = [ACCEPT_BOTH, b"application/json", b"text/event-stream", b"*/*",
           b"application/*, text/*", b"text/event-stream, application/json;q=0",
           b"APPLICATION/JSON, TEXT/EVENT-STREAM", b"application/json,text/event-stream,",
           b",,,", b'application/json; x="a,b", text/event-stream', b"*/*;q=0", b"text/html"]
CONTENT_TYPES = [b"application/json", b"application/json; charset=utf-8", b"Application/JSON",
                 b"application/json;", b"text/plain", b"application/x-www-form-urlencoded",
                 b"multipart/form-data; boundary=xyz", b"multipart/form-data",
                 b"application/jsonx", b" application/json ", b"application/json; charset=latin1"]
HOSTS = [b"localhost", b"localhost:3000", b"127.0.0.1:3000", b"[::1]:3000", b"[::1",
         b"evil.example.com", b"localhost.", b"LOCALHOST", b"127.0.0.1:", b"127.0.0.1:abc",
         b"localhost@evil.example.com", b"\xff", b"127.0.0.1:3000, evil.example.com"]
ORIGINS = [b"http://localhost:3000", b"http://127.0.0.1", b"https://[::1]:8080",
           b"https://evil.example.com", b"null", b"http://[::1", b"file://",
           b"http://localhost:3000/x", b"http://localhost:99999", b"javascript:alert(1)",
           b"http://127.0.0.1.evil.example.com", b"http://%6c%6fcalhost", b"HTTP://LOCALHOST"]
VERSIONS = [b"2025-11-25", b"2025-06-18", b"2025-03-26", b"2024-11-05", b"2026-07-28",
            b"2099-01-01", b"latest", b"2025-11-25, 2026-07-28", b"2026-07-28 "]
SESSION_REFS = [b"{{A}}", b"{{B}}", b"{{C}}", b"{{L}}", b"{{AU}}", b"{{A8}}", b"{{X}}",
                b" {{A}} ", b"{{A}}{{A}}", b"{{A}},{{B}}", b"{{A}}\xff", b"{{A}}\x00"]
EVENT_IDS = [b"{{EA}}", b"{{EB}}", b"0.0", b"0.1", b"1.1", b"2.3", b"3.1", b"99.99",
             b"-1.2", b"1.", b".1", b"1.2.3", b" 1.2 ", "\u0661.\u0662".encode(), b"0x1.1",
             b"+1.2", b"1_0.2", b"1.2e3", b"00000000000001.0000000000002"]

eventIds = st.one_of(
    st.sampled_from(EVENT_IDS),
    st.tuples(st.integers(0, 2**70), st.integers(0, 2**70)).map(lambda t: b"%d.%d" % t),
    st.integers(4290, 4400).map(lambda n: b"1" * n + b".1"),
    oddValues,
)
paramValues = st.one_of(
    st.integers().map(lambda i: b"%d" % i),
    st.floats(allow_nan=True).map(lambda f: repr(f).encode()),
    st.sampled_from([b"\xd9\xa1\xd9\xa2", b"1.0", b"-0", b"1e3", b"01", b"true", b"Paris",
                     b"=?base64?UGFyaXM=?=", b"=?base64?UGFyaXM?=", b"=?base64?3?="]),
    st.integers(4290, 4400).map(lambda n: b"1" * n),
    oddValues,
)

HEADER_VALUES: dict[bytes, Any] = {
    b"Host": st.sampled_from(HOSTS),
    b"Accept": st.sampled_from(ACCEPTS),
    b"Content-Type": st.sampled_from(CONTENT_TYPES),
    b"MCP-Protocol-Version": st.sampled_from(VERSIONS),
    b"Mcp-Session-Id": st.sampled_from(SESSION_REFS),
    b"Last-Event-ID": eventIds,
    b"Origin": st.sampled_from(ORIGINS),
    b"Mcp-Method": st.sampled_from([b"tools/call", b"tools/list", b"ping", b"initialize",
                                    b"=?base64?dG9vbHMvY2FsbA==?="]),
    b"Mcp-Name": st.sampled_from([b"weather", b"slow", b"=?base64?d2VhdGhlcg==?=",
                                  b"=?base64?d2VhdGhlcg?=", b"=?base64?!!?=", b"=?base64??="]),
    b"Mcp-Param-Region": paramValues,
    b"Mcp-Param-Count": paramValues,
    b"Authorization": st.sampled_from([b"Bearer ", b"Bearer x", b"Basic Zm9vOmJhcg==", b"x"]),
    b"X-API-Key": st.sampled_from([b"", b"key", b"\xff"]),
    b"Expect": st.sampled_from([b"100-continue", b"200-ok"]),
    b"Connection": st.sampled_from([b"close", b"keep-alive", b"Upgrade", b"TE"]),
    b"Upgrade": st.sampled_from([b"h2c", b"websocket"]),
    b"Cookie": st.sampled_from([b"session_id={{A}}", b"a=b"]),
    b"Access-Control-Request-Method": st.sampled_from([b"POST", b"DELETE", b"PUT"]),
    b"Access-Control-Request-Headers": st.sampled_from([b"mcp-session-id, content-type", b"*"]),
    b"X-Forwarded-For": st.sampled_from([b"1.2.3.4", b"unknown", b""]),
}
TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: The headers the bridge reads, drawn more often than the rest.
RELEVANT = [b"Host", b"Origin", b"Accept", b"Content-Type", b"MCP-Protocol-Version",
            b"Mcp-Session-Id", b"Last-Event-ID", b"Mcp-Method", b"Mcp-Name", b"Mcp-Param-Count"]
headerNames = st.one_of(
    st.sampled_from(RELEVANT),
    st.sampled_from(RELEVANT),
    st.sampled_from(RELEVANT),
    st.sampled_from(sorted(HEADER_VALUES)),
    st.sampled_from(sorted(HEADER_VALUES)).map(lambda n: n.lower()),
    st.sampled_from(sorted(HEADER_VALUES)).map(lambda n: n.upper()),
    st.text(TOKEN, min_size=1, max_size=20).map(str.encode),
    st.text(TOKEN, min_size=1, max_size=20).map(lambda t: b"Mcp-Param-" + t.encode()),
    st.sampled_from(sorted(HEADER_VALUES)),
    st.sampled_from(sorted(HEADER_VALUES)),
    st.sampled_from([b"X:Y", b"X Y", b"\xff", b"(", b"Host\x00"]),  # no token: a 400
)


@st.composite
def headerValue(draw: Any, name: bytes) -> bytes:
    known = next((s for n, s in HEADER_VALUES.items() if n.lower() == name.lower()), None)
    if known is not None and draw(st.integers(0, 3)):
        return bytes(draw(known))
    return bytes(draw(oddValues))


@st.composite
def mutatedHeaders(draw: Any, base: list[tuple[bytes, bytes]], extra: int = 4,
                   keep: int = 9, mutate: int = 10) -> list[tuple[bytes, bytes]]:
    """
    C{base} with headers dropped (each kept C{keep} times in 10), values
    replaced (one in C{mutate}), and up to C{extra} headers added
    (repeated ones too).
    """
    headers = []
    for name, value in base:
        if draw(st.integers(0, 9)) >= keep:
            continue
        if draw(st.integers(1, mutate)) == 1:
            value = draw(headerValue(name))
        headers.append((name, value))
    for _ in range(draw(st.integers(0, extra))):
        name = draw(headerNames)
        value = draw(headerValue(name))
        headers.insert(draw(st.integers(0, len(headers))), (name, value))
    return headers


# JSON, as text (so it can hold what Python objects cannot: duplicate keys,
# numbers Python refuses, deep nesting).

jsonScalarText = st.one_of(
    st.sampled_from(["null", "true", "false", "0", "-0", "1", "-1", "1.5", "1e400", "-1e400",
                     "NaN", "Infinity", "-Infinity", "1E2", "1e-400", "[]", "{}", '""', '"2.0"',
                     "0.1e1", "-0.0", "123456789012345678901234567890", '"\\ud800"',
                     '"\\udfff\\ud800"', '"\\u0000"', '"\\/"']),
    st.integers().map(str),
    st.integers(4290, 4400).map(lambda n: "9" * n),
    st.floats().map(lambda f: json.dumps(f)),
    st.text(max_size=20).map(json.dumps),
    st.text(max_size=20).map(lambda s: json.dumps(s, ensure_ascii=False)),
)
jsonKeyText = st.one_of(
    st.sampled_from(['"jsonrpc"', '"id"', '"method"', '"params"', '"result"', '"error"',
                     '"_meta"', '"name"', '"arguments"', '"progressToken"', '"requestId"',
                     '"protocolVersion"', '"code"', '"message"', '"__proto__"']),
    st.text(max_size=10).map(json.dumps),
)
jsonText = st.recursive(
    jsonScalarText,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(jsonKeyText, inner), max_size=5).map(
            lambda kvs: "{" + ",".join(f"{k}:{v}" for k, v in kvs) + "}")),
    max_leaves=15)

jsonValues = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=15),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=8)

METHOD_NAMES = ["initialize", "notifications/initialized", "ping", "tools/list", "tools/call",
                "resources/read", "resources/subscribe", "resources/unsubscribe", "prompts/get",
                "logging/setLevel", "completion/complete", "server/discover",
                "subscriptions/listen", "notifications/cancelled", "notifications/progress",
                "notifications/roots/list_changed", "sampling/createMessage", "", "rpc.discover",
                "__proto__", "initialize ", "Initialize"]
ids = st.one_of(
    st.sampled_from([0, 1, 2, -1, 2**53, 2**63, -2**63, 2**64, "0", "1", "2", "", "srv-1",
                     "srv-2", "check-1", "\ud800", "\x00"]),
    st.integers(), st.text(max_size=12), st.none(), st.booleans(), st.floats(),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                         max_size=1),
)
validIds = st.one_of(st.integers(-2**63, 2**63), st.text(max_size=12),
                     st.sampled_from([0, 1, 2, "1", "srv-1"]))
toolNames = st.sampled_from(["weather", "echo", SLOW, "", "nope"]) | st.text(max_size=8)
metaValues = st.fixed_dictionaries({}, optional={
    "progressToken": ids, PV: st.sampled_from([MODERN, "2025-11-25", "2099-01-01"]) | jsonValues,
    CAPS: st.just({}) | jsonValues, INFO: jsonValues,
    LOGLEVEL: st.sampled_from(["debug", "error", "emergency", "nope"]) | jsonValues})
paramsValues = st.one_of(
    jsonValues,
    st.fixed_dictionaries({}, optional={
        "name": toolNames | jsonValues,
        "arguments": st.fixed_dictionaries({}, optional={
            "region": st.text(max_size=8) | jsonValues,
            "count": st.integers() | st.floats() | jsonValues}) | jsonValues,
        "_meta": metaValues | jsonValues,
        "protocolVersion": st.sampled_from(list(SESSION_VERSIONS) + [MODERN]) | jsonValues,
        "capabilities": st.just({}) | jsonValues,
        "clientInfo": st.just({"name": "x", "version": "1"}) | jsonValues,
        "requestId": ids, "progressToken": ids, "progress": jsonValues,
        "uri": st.text(max_size=10), "cursor": jsonValues,
        "level": st.sampled_from(["debug", "error", "x"]) | jsonValues,
    }),
)
jsonrpcJunk = st.one_of(st.sampled_from(["1.0", "2", "2.00", "", " 2.0", "2.0\x00"]),
                        st.integers(), st.none(), st.floats(), st.just(2.0))


@st.composite
def jsonrpcValues(draw: Any) -> Any:
    return "2.0" if draw(st.integers(0, 9)) < 8 else draw(jsonrpcJunk)


@st.composite
def rpcMessages(draw: Any) -> dict[str, Any]:
    """
    JSON-RPC-ish objects: requests, notifications, responses and errors,
    with members of wrong types now and then.
    """
    obj: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        obj["jsonrpc"] = draw(jsonrpcValues())
    shape = draw(st.sampled_from(["request", "request", "notification", "response", "error",
                                  "junk"]))
    if shape in ("request", "notification"):
        obj["method"] = draw(st.sampled_from(METHOD_NAMES) | st.sampled_from(METHOD_NAMES)
                             | st.text(max_size=15) | jsonValues)
        if shape == "request":
            obj["id"] = draw(validIds | ids)
        if draw(st.integers(0, 3)):
            obj["params"] = draw(paramsValues)
    elif shape == "response":
        obj["id"] = draw(st.sampled_from(["srv-1", "srv-2", 1, None]) | ids)
        obj["result"] = draw(jsonValues)
    elif shape == "error":
        obj["id"] = draw(st.sampled_from(["srv-1", 1, None]) | ids)
        obj["error"] = draw(st.fixed_dictionaries(
            {"code": st.integers() | jsonValues, "message": st.text(max_size=10) | jsonValues},
            optional={"data": jsonValues}) | jsonValues)
    else:
        for key in draw(st.lists(st.sampled_from(["id", "method", "params", "result", "error",
                                                  "x"]), max_size=4)):
            obj[key] = draw(jsonValues)
    return obj


@st.composite
def wellFormed(draw: Any) -> dict[str, Any]:
    """
    Messages a real client sends (mostly correct).
    """
    kind = draw(st.sampled_from(["initialize", "call", "list", "ping", "notification",
                                 "cancel", "response", "progress"]))
    ident = draw(validIds)
    if kind == "initialize":
        return initialize(ident, draw(st.sampled_from(list(SESSION_VERSIONS) + [MODERN, "x"])))
    if kind == "call":
        msg = call(ident, draw(toolNames))
        if draw(st.booleans()):
            msg["params"]["_meta"] = {"progressToken": draw(validIds)}
        return msg
    if kind in ("list", "ping"):
        return {"jsonrpc": "2.0", "id": ident, "method": "tools/list" if kind == "list" else "ping"}
    if kind == "notification":
        return {"jsonrpc": "2.0", "method": draw(st.sampled_from(
            ["notifications/initialized", "notifications/roots/list_changed", "x/y"]))}
    if kind == "cancel":
        return {"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": draw(st.sampled_from([2, 1, "2"]) | validIds),
                           "reason": "fuzz"}}
    if kind == "progress":
        return {"jsonrpc": "2.0", "method": "notifications/progress",
                "params": {"progressToken": draw(validIds), "progress": 1}}
    return {"jsonrpc": "2.0", "id": draw(st.sampled_from(["srv-1", "srv-2", "srv-3"]) | validIds),
            "result": {"roots": []}}


@st.composite
def encoded(draw: Any, objects: Any) -> bytes:
    """
    JSON text of C{objects}, written in one of several ways (compact,
    spaced, indented, ASCII or not, other encodings).
    """
    obj = draw(objects)
    indent = draw(st.sampled_from([None, None, None, 1, "\t"]))
    ascii = draw(st.booleans())
    try:
        text = json.dumps(obj, ensure_ascii=ascii, indent=indent)
    except ValueError:
        text = "0"
    encoding = draw(st.sampled_from(["utf-8"] * 12 + ["utf-8-sig", "utf-16", "utf-16-be",
                                                      "utf-32"]))
    return text.encode(encoding, "surrogatepass")


duplicateKeys = st.tuples(validIds, validIds, st.sampled_from(METHOD_NAMES)).map(
    lambda t: ('{"jsonrpc":"2.0","id":%s,"method":"tools/call","id":%s,"method":%s,'
               '"params":{"name":"echo"},"jsonrpc":"1.0","jsonrpc":"2.0"}'
               % (json.dumps(t[0]), json.dumps(t[1]), json.dumps(t[2]))).encode())
deepNesting = st.tuples(st.integers(1, 3000), st.sampled_from(["[", '{"a":'])).map(
    lambda t: (t[1] * t[0] + "1" + ("]" if t[1] == "[" else "}") * t[0]).encode())
whitespace = st.sampled_from([b"", b" ", b"\n", b"\r\n", b"\t", b"\r", b"  \n\n "])

junkBodies = st.one_of(
    st.binary(max_size=200),
    jsonText.map(utf8),
    encoded(rpcMessages()),
    encoded(st.lists(rpcMessages(), max_size=4)),
    encoded(st.lists(st.lists(rpcMessages(), max_size=2) | rpcMessages() | jsonValues,
                     max_size=3)),
    st.tuples(whitespace, encoded(wellFormed()), whitespace).map(b"".join),
    duplicateKeys,
    deepNesting,
)
#: Bodies: half well-formed messages or batches of them, half anything.
bodies = st.one_of(
    encoded(wellFormed()),
    encoded(wellFormed()),
    encoded(st.lists(wellFormed(), min_size=1, max_size=4)),
    junkBodies,
)


@st.composite
def modernPayloads(draw: Any) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """
    A stateless (2026-07-28) request and its routing headers, both mostly
    consistent, now and then not.
    """
    method = draw(st.sampled_from(["tools/call"] * 4 + ["tools/list", "resources/read",
                                                         "prompts/get", "ping", "initialize",
                                                         "server/discover",
                                                         "subscriptions/listen",
                                                         "logging/setLevel"])
                  | st.text(max_size=8))
    meta: dict[str, Any] = {PV: MODERN, CAPS: {}, INFO: {"name": "fuzz", "version": "1"}}
    if not draw(st.integers(0, 5)):
        meta = draw(metaValues)
    if not draw(st.integers(0, 3)):
        meta[LOGLEVEL] = draw(st.sampled_from(["debug", "error", "nope"]))
    params: dict[str, Any] = {"_meta": meta}
    named: Any = None
    if method in ("tools/call", "prompts/get"):
        named = params["name"] = draw(st.sampled_from(["weather", "weather", SLOW, "echo"])
                                      | st.text(max_size=6))
        if method == "tools/call":
            params["arguments"] = draw(st.fixed_dictionaries({}, optional={
                "region": st.sampled_from(["Paris", ""]) | st.text(max_size=6) | jsonValues,
                "count": st.integers() | st.floats() | st.booleans() | jsonValues}))
    elif method == "resources/read":
        named = params["uri"] = draw(st.sampled_from(["file:///x", ""]) | st.text(max_size=6))
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if draw(st.integers(0, 7)):
        obj["id"] = draw(validIds)
    body = draw(encoded(st.just(obj)))

    def text(value: Any) -> bytes:
        return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else b"x"

    def plain(value: Any) -> bytes:
        if isinstance(value, bool):
            return b"true" if value else b"false"
        return _noBreaks(text(value) if isinstance(value, str) else repr(value).encode())

    def b64(value: bytes) -> bytes:
        return b"=?base64?" + base64.b64encode(value) + b"?="

    headers = [(b"MCP-Protocol-Version", text(meta.get(PV, MODERN))),
               (b"Mcp-Method", text(method))]
    if named is not None:
        headers.append((b"Mcp-Name", text(named) if draw(st.booleans()) else b64(text(named))))
    arguments = params.get("arguments")
    if isinstance(arguments, dict):
        for key, header in (("region", b"Mcp-Param-Region"), ("count", b"Mcp-Param-Count")):
            if key in arguments:
                value = plain(arguments[key])
                if not draw(st.integers(0, 4)):
                    value = draw(paramValues)
                headers.append((header, value if draw(st.booleans()) else b64(value)))
    headers = [(n, _noBreaks(v)) for n, v in headers]
    return body, draw(mutatedHeaders(headers, extra=2))


PATHS = [b"/mcp", b"/mcp", b"/servers/alpha/mcp", b"/servers/alpha/mcp", b"/messages",
         b"/messages/", b"/sse", b"/servers/alpha/sse", b"/servers/alpha/messages",
         b"/servers/alpha/messages/", b"/health", b"/status", b"/mcp/", b"/MCP",
         b"/servers/nope/mcp", b"/servers//mcp", b"/servers/alpha/", b"/servers/alpha",
         b"/servers", b"/", b"*", b"/ping", b"/favicon.ico", b"/servers/%61lpha/mcp",
         b"/servers/alpha%2Fmcp", b"/%6Dcp", b"/mcp/../health", b"/../mcp", b"//mcp",
         b"/mcp%00", b"/mcp;x=1", b"/servers/.%2e/mcp", b"/servers/" + b"a" * 64 + b"/mcp",
         b"/servers/" + b"a" * 65 + b"/sse", b"/servers/%ff/mcp", b"/servers/\xc3\xa9/mcp",
         b"http://localhost:3000/mcp", b"/servers/alpha/mcp/extra", b"/sse/x", b"/messages//"]
QUERIES = [b"session_id={{L}}", b"sessionId={{L}}", b"session_id=", b"session_id={{A}}",
           b"session_id={{L}}&session_id={{X}}", b"session_id={{X}}&session_id={{L}}",
           b"session_id=%ff%fe", b"session_id={{L}}%00", b"session_id[]={{L}}", b"=", b"&&&",
           b"session_id", b"session_id=" + b"9" * 5000, b"SESSION_ID={{L}}",
           b"session%5Fid={{L}}", b"session_id=%7B%7BL%7D%7D"]


@st.composite
def targets(draw: Any, paths: list[bytes] = PATHS) -> bytes:
    path = draw(st.sampled_from(paths))
    roll = draw(st.integers(0, 9))
    if roll == 0:
        path += b"/" + draw(st.binary(max_size=10).map(
            lambda b: b"".join(b"%%%02X" % c for c in b)))
    elif roll == 1:
        path = b"/".join([path] + [b".."] * draw(st.integers(1, 4)) + [b"mcp"])
    elif roll == 2:
        path = path * draw(st.integers(2, 20))
    if draw(st.integers(0, 2)) == 0 or b"messages" in path:
        query = draw(st.sampled_from(QUERIES) | st.binary(max_size=20).map(
            lambda b: b"".join(b"%%%02X" % c for c in b)))
        path += b"?" + query
    return path


METHODS = [b"GET", b"POST", b"DELETE", b"PUT", b"PATCH", b"OPTIONS", b"HEAD", b"TRACE",
           b"CONNECT", b"get", b"PROPFIND", b"M-SEARCH"]


@attr.s(auto_attribs=True)
class Req:
    """
    A request the strategies made; placeholders are filled when sent.
    """

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    framing: str = "length"
    version: bytes = b"HTTP/1.1"
    chunks: tuple[int, ...] = ()

    def render(self, fill: Callable[[bytes], bytes] = lambda b: b) -> bytes:
        return render(self.method, fill(self.target),
                      [(n, fill(v)) for n, v in self.headers], fill(self.body),
                      self.framing, self.version, self.chunks)

    def __repr__(self) -> str:
        raw = self.render()
        return f"Req({raw[:3000]!r}{'...' if len(raw) > 3000 else ''})"


#: Endpoints with what belongs to them: method, target, session, version.
ENDPOINTS = [
    (b"POST", b"/mcp", b"{{A}}", b"2025-11-25"),
    (b"POST", b"/mcp", b"{{B}}", b"2025-03-26"),
    (b"POST", b"/servers/alpha/mcp", b"{{C}}", b"2025-06-18"),
    (b"POST", b"/mcp", None, None),
    (b"POST", b"/servers/alpha/mcp", None, None),
    (b"POST", b"/messages?session_id={{L}}", None, None),
    (b"POST", b"/messages/?sessionId={{L}}", None, None),
    (b"POST", b"/servers/alpha/messages?session_id={{L}}", None, None),
    (b"GET", b"/mcp", b"{{A}}", b"2025-11-25"),
    (b"GET", b"/mcp", b"{{B}}", None),
    (b"GET", b"/servers/alpha/mcp", b"{{C}}", None),
    (b"DELETE", b"/mcp", b"{{A}}", None),
    (b"DELETE", b"/servers/alpha/mcp", b"{{C}}", None),
    (b"GET", b"/sse", None, None),
    (b"GET", b"/servers/alpha/sse", None, None),
    (b"GET", b"/health", None, None),
    (b"GET", b"/status", None, None),
]


@st.composite
def requests(draw: Any, methods: Any = st.sampled_from(METHODS), paths: list[bytes] = PATHS,
             bodies: Any = bodies, session: float = 0.5, keep: int = 9, extra: int = 4,
             coherent: float = 0.6, endpoints: Optional[list[Any]] = None,
             mutate: int = 10) -> Req:
    """
    A well-framed request: method, target, headers (a good set, mutated)
    and body.  With probability C{coherent} the method, target, session
    and version belong together (one of L{ENDPOINTS}); otherwise each is
    drawn from C{methods}, C{paths} and the session references.
    """
    base = [(b"Host", b"localhost:3000"), (b"Accept", ACCEPT_BOTH), *CREDENTIALS]
    if draw(st.floats(0, 1)) < coherent:
        method, target, sid, version = draw(st.sampled_from(endpoints or ENDPOINTS))
        if sid is not None:
            base.append((b"Mcp-Session-Id", sid))
        if version is not None and draw(st.booleans()):
            base.append((b"MCP-Protocol-Version", version))
    else:
        method = draw(methods)
        target = draw(targets(paths))
        if draw(st.floats(0, 1)) < session:
            base.append((b"Mcp-Session-Id", draw(st.sampled_from(SESSION_REFS[:4] * 3
                                                                 + SESSION_REFS))))
    if method not in (b"GET", b"HEAD", b"DELETE"):
        base.insert(2, (b"Content-Type", b"application/json"))
    if method in (b"GET", b"HEAD") and draw(st.booleans()):
        base[1] = (b"Accept", b"text/event-stream")
    headers = draw(mutatedHeaders(base, extra=extra, keep=keep, mutate=mutate))
    body = b""
    if method not in (b"GET", b"HEAD", b"DELETE") or not draw(st.integers(0, 9)):
        body = draw(bodies)
    version = draw(st.sampled_from([b"HTTP/1.1"] * 9 + [b"HTTP/1.0"]))
    framing = draw(st.sampled_from(["length"] * 4 + ["chunked", "none"]))
    if version == b"HTTP/1.0" and framing == "chunked":
        framing = "length"
    chunks = tuple(draw(st.lists(st.integers(1, 64), max_size=4)))
    return Req(method, target, headers, body, framing, version, chunks)


cutPoints = st.lists(st.integers(0, 20000), max_size=6)


# ---------------------------------------------------------------------------
# The properties
# ---------------------------------------------------------------------------

class EveryEndpointTests(FuzzCase):
    """
    Random methods, paths, headers and bodies at every endpoint.
    """

    @fuzz(200)
    @given(request=requests(), cuts=cutPoints, hangUp=st.integers(0, 4).map(lambda i: i == 0))
    def test_anyRequest(self, request: Req, cuts: list[int], hangUp: bool) -> None:
        """
        Any well-framed request, to any path, with any method and headers,
        whole or in pieces, its client staying or hanging up at once: a
        well-formed answer that is no 500, a JSON-RPC error for a refusal
        from an MCP endpoint, nothing leaked, nothing logged, and the
        bridge still serves.
        """
        world = self.world()
        self.verdict(world, [world.exchange(request.render(world.fill), cuts, hangUp=hangUp)])

    @fuzz(200)
    @given(request=requests(methods=st.just(b"POST"),
                            paths=[b"/mcp", b"/servers/alpha/mcp", b"/messages",
                                   b"/messages/", b"/servers/alpha/messages"],
                            keep=10, extra=1, session=0.6, coherent=0.9, mutate=40,
                            endpoints=[e for e in ENDPOINTS if e[0] == b"POST"],
                            bodies=bodies | bodies | junkBodies),
           cuts=cutPoints)
    def test_postBodies(self, request: Req, cuts: list[int]) -> None:
        """
        Random bodies (bytes, JSON of every shape, JSON-RPC-ish objects
        with wrong types, batches empty, mixed and nested, other
        encodings) POSTed with good headers to each POST endpoint.
        """
        world = self.world()
        self.verdict(world, [world.exchange(request.render(world.fill), cuts)])

    @fuzz(200)
    @given(payload=modernPayloads(),
           path=st.sampled_from([b"/mcp", b"/servers/alpha/mcp"]),
           session=st.sampled_from([None, None, None, b"{{A}}", b"{{X}}"]),
           cuts=cutPoints)
    def test_statelessPosts(self, payload: tuple[bytes, list[tuple[bytes, bytes]]], path: bytes,
                            session: Optional[bytes], cuts: list[int]) -> None:
        """
        Stateless (2026-07-28) requests with their routing headers, mostly
        consistent: the envelope and header ladder, the pool, and
        Mcp-Param-* checks against the fake server's tool schema.
        """
        body, headers = payload
        headers = [(b"Host", b"localhost:3000"), (b"Accept", ACCEPT_BOTH),
                   (b"Content-Type", b"application/json"), *CREDENTIALS] + headers
        if session is not None:
            headers.append((b"Mcp-Session-Id", session))
        world = self.world()
        raw = render(b"POST", path, [(n, world.fill(v)) for n, v in headers], body)
        ex = world.exchange(raw, cuts)
        self.verdict(world, [ex])
        versions = [v for n, v in headers if n.lower() == b"mcp-protocol-version"]
        if versions == [MODERN.encode()] and session is None:
            # The stateless era: no session id ever, no resumable events.
            for answer in ex.answers:
                self.assertEqual(answer.header(b"mcp-session-id"), [], answer)
                if answer.contentType == b"text/event-stream":
                    self.assertNotRegex(answer.body, rb"(?m)^id:", answer)

    @fuzz(150)
    @given(path=st.sampled_from([b"/mcp", b"/mcp", b"/servers/alpha/mcp"]),
           session=st.sampled_from([b"{{A}}", b"{{A}}", b"{{B}}", b"{{C}}", b"{{L}}", b"{{X}}",
                                    b"{{AU}}"]),
           lastEventIds=st.lists(eventIds, max_size=3),
           accept=st.sampled_from([b"text/event-stream", ACCEPT_BOTH, b"*/*",
                                   b"application/json"]),
           method=st.sampled_from([b"GET", b"GET", b"GET", b"HEAD", b"DELETE"]))
    def test_resumption(self, path: bytes, session: bytes, lastEventIds: list[bytes],
                        accept: bytes, method: bytes) -> None:
        """
        GET (and HEAD, DELETE) with session ids and Last-Event-ID values of
        every kind, including other sessions' event ids: 200 with an event
        stream that replays only the named stream, or a JSON-RPC error.
        """
        world = self.world()
        headers = [(b"Host", b"localhost"), (b"Accept", accept),
                   (b"Mcp-Session-Id", world.fill(session)), *CREDENTIALS]
        headers += [(b"Last-Event-ID", world.fill(v)) for v in lastEventIds]
        ex = world.exchange(render(method, path, headers, b"", "none"))
        self.verdict(world, [ex])
        answer = ex.answers[0] if ex.answers else None
        if answer is not None and answer.status == 200 and lastEventIds and method == b"GET":
            asked = world.fill(lastEventIds[-1]).strip()
            stream, _, seq = asked.partition(b".")
            if stream.isdigit() and seq.isdigit() and len(asked) < 100:
                for ident in re.findall(rb"(?m)^id: (\d+)\.(\d+)$", answer.body):
                    self.assertEqual(ident[0], stream, answer)
                    self.assertGreater(int(ident[1]), int(seq), answer)

    @fuzz(100)
    @given(steps=st.lists(requests(session=1.0, paths=[b"/mcp", b"/mcp", b"/sse", b"/messages"],
                                   methods=st.sampled_from([b"POST", b"POST", b"GET", b"DELETE",
                                                            b"PUT"]),
                                   endpoints=[e for e in ENDPOINTS if e[2] == b"{{A}}"]
                                   + [e for e in ENDPOINTS if b"{{L}}" in e[1]],
                                   coherent=0.8, keep=10, mutate=20),
                          min_size=1, max_size=4))
    def test_sessionJunk(self, steps: list[Req]) -> None:
        """
        Several requests in a row that name a fixture session (mostly A)
        with random junk besides: nothing crashes, and the sessions no
        request named (B, C, L) go on working.
        """
        world = self.world()
        exchanges = [world.exchange(step.render(world.fill)) for step in steps]
        self.verdict(world, exchanges)


@st.composite
def rawBytes(draw: Any) -> bytes:
    """
    Bytes for a fresh connection: random, or a request with random edits.
    """
    if not draw(st.integers(0, 4)):
        return bytes(draw(st.binary(max_size=400)))
    data = bytearray(draw(requests()).render())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "repeat"]))
        piece = draw(st.binary(min_size=1, max_size=8) | st.sampled_from(
            [b"\r\n", b"\n", b"\r", b":", b" ", b"\x00", b"\r\n\r\n", b"0\r\n", b"ffffffff\r\n",
             b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n", b"HTTP/1.1",
             b"Content-Length: -1\r\n", b"Content-Length: 99999999999999999999\r\n"]))
        if edit == "insert":
            data[at:at] = piece
        elif edit == "delete":
            del data[at:at + len(piece)]
        elif edit == "replace":
            data[at:at + len(piece)] = piece
        else:
            data[at:at] = bytes(data[at:at + len(piece) * 3]) * draw(st.integers(1, 3))
    return bytes(data)


#: Session ids that almost name a fixture session, by path: none may be served.
NEAR_MISSES = {
    b"/mcp": [b"{{AU}}", b"{{A8}}", b"{{X}}", b"{{A1}}", b"{{A}}x", b"x{{A}}", b"{{A}}{{A}}",
              b"{{A}},{{B}}", b"{{C}}", b"{{L}}", b"{{A}}\xc2\xa0", b"%7B{{A}}"],
    b"/servers/alpha/mcp": [b"{{A}}", b"{{B}}", b"{{L}}", b"{{CU}}", b"{{C}}0"],
    b"/messages?session_id=": [b"{{A}}", b"{{LU}}", b"{{L}}0", b"{{C}}", b"", b"{{L}}%00"],
    b"/servers/alpha/messages?session_id=": [b"{{L}}"],
    b"/messages?sessionid=": [b"{{L}}"],
}


@st.composite
def nearMissRequests(draw: Any) -> Req:
    """
    A request to an MCP endpoint naming a session that is not there (but
    almost is), with a body that is no initialize.
    """
    path = draw(st.sampled_from(sorted(NEAR_MISSES)))
    sid = draw(st.sampled_from(NEAR_MISSES[path]))
    headers = [(b"Host", b"localhost"), (b"Accept", ACCEPT_BOTH), *CREDENTIALS]
    named = []
    if b"?" in path:
        method, target = b"POST", path + sid
    else:
        method, target = draw(st.sampled_from([b"POST", b"GET", b"DELETE"])), path
        named.append((b"Mcp-Session-Id", sid))
    body = b""
    if method == b"POST":
        headers.append((b"Content-Type", b"application/json"))
        body = draw(encoded(wellFormed().filter(lambda m: m.get("method") != "initialize")
                            | st.lists(wellFormed().filter(
                                lambda m: m.get("method") != "initialize"), min_size=1,
                                max_size=3)))
    elif method == b"GET":
        headers[1] = (b"Accept", b"text/event-stream")
        if draw(st.booleans()):
            headers.append((b"Last-Event-ID", draw(st.sampled_from(EVENT_IDS[:9]))))
    if draw(st.booleans()):
        headers.append((b"MCP-Protocol-Version", draw(st.sampled_from(VERSIONS[:4]))))
    headers = draw(mutatedHeaders(headers, extra=2, keep=10, mutate=1000))
    # Only the near miss may name a session.
    headers = [h for h in headers if h[0].lower() != b"mcp-session-id"] + named
    return Req(method, target, headers, body)


class IsolationTests(FuzzCase):
    @fuzz(150)
    @given(request=nearMissRequests(), cuts=cutPoints)
    def test_nearMissSessions(self, request: Req, cuts: list[int]) -> None:
        """
        A session id that almost names a session (another case, a prefix,
        one character off, another server's or transport's session) is
        refused (4xx but 409), never served, and leaks nothing.  (A request
        of the stateless era ignores session ids: it is only checked for
        leaks.)
        """
        world = self.world()
        ex = world.exchange(request.render(world.fill), cuts)
        self.verdict(world, [ex])
        versions = [v.strip().decode("ascii", "replace") for n, v in request.headers
                    if n.lower() == b"mcp-protocol-version"]
        if any(v not in SESSION_VERSIONS for v in versions):
            return
        for answer in ex.answers[:1]:
            self.assertFalse(answer.status < 400 or answer.status == 409,
                             f"{world.unfill(ex.raw)[:600]!r} was served: {answer!r}")


class RawBytesTests(FuzzCase):
    @fuzz(200)
    @given(data=rawBytes(), cuts=cutPoints)
    def test_rawBytes(self, data: bytes, cuts: list[int]) -> None:
        """
        Arbitrary bytes, or requests with random edits, fed whole or in
        pieces: whatever comes back is well-formed HTTP and no 500, nothing
        is logged, nothing leaks, and the bridge still serves.
        """
        world = self.world()
        self.verdict(world, [world.exchange(data, cuts, whole=False)])

    @fuzz(100)
    @given(first=requests(methods=st.sampled_from([b"POST", b"DELETE", b"PUT", b"OPTIONS"]),
                          paths=[b"/mcp", b"/messages", b"/health", b"/status"]),
           cuts=cutPoints)
    def test_pipelined(self, first: Req, cuts: list[int]) -> None:
        """
        A random request and a GET /health after it on the same
        connection: the junk does not desynchronise the parser, so the
        second request gets its own answer (unless the first closed the
        connection).
        """
        world = self.world()
        first.version = b"HTTP/1.1"
        raw = first.render(world.fill) + render(b"GET", b"/health", [(b"Host", b"localhost")],
                                                b"", "none")
        ex = world.exchange(raw, cuts)
        ex.method = first.method
        self.verdict(world, [ex])
        keptOpen = len(ex.answers) >= 1 and ex.answers[0].complete and not any(
            v.lower() == b"close" for v in ex.answers[0].header(b"connection")) \
            and first.method != b"HEAD" and not ex.answers[0].parserLevel
        if keptOpen and ex.answers[0].contentType != b"text/event-stream":
            self.assertEqual(len(ex.answers), 2, ex.answers)
            self.assertEqual(ex.answers[1].status, 200, ex.answers)
            self.assertIn(b'"status"', ex.answers[1].body)


class CheckerTests(FuzzCase):
    """
    The machinery itself: the fixtures work and the checks catch what they
    are meant to.
    """

    def test_fixtures(self) -> None:
        """
        Each fixture session works and its streams carry its own child's
        marker; normal requests pass every check.
        """
        world = self.world()
        a = world.fixtures["A"]
        ex = world.exchange(render(b"POST", b"/mcp", [
            (b"Host", b"localhost"), (b"Accept", ACCEPT_BOTH), *CREDENTIALS,
            (b"Content-Type", b"application/json"), (b"Mcp-Session-Id", a.sid.encode())],
            json.dumps(call(7, "echo")).encode()))
        self.assertEqual(ex.answers[0].status, 200)
        self.assertIn(a.marker.encode(), ex.answers[0].body)
        self.assertIn(a.marker.encode(), a.clients[1].transport.value())  # the GET stream
        self.assertIn(world.fixtures["L"].marker.encode(),
                      world.fixtures["L"].clients[0].transport.value())
        self.verdict(world, [ex], tolerate=False)

    def test_stateless(self) -> None:
        """
        The stateless era works through the pool: a tools/call with
        matching headers gets the pool child's answer.
        """
        world = self.world()
        raw = _modernWeather(b"3")
        ex = world.exchange(raw)
        self.assertEqual(ex.answers[0].status, 200, ex.answers)
        self.assertIn(world.poolMarkers[0].encode(), ex.answers[0].body)
        self.verdict(world, [ex], tolerate=False)

    def test_catchesLeak(self) -> None:
        """
        An answer carrying a session's marker to a request that did not
        name it is a leak.
        """
        world = self.world()
        ex = Exchange(b"GET /health HTTP/1.1\r\n\r\n", b"GET", b"/health", True,
                      [Answer(200, [(b"content-type", b"application/json")],
                              json.dumps({"x": world.fixtures["B"].marker}).encode(), True)])
        self.assertEqual([v.kind for v in violations(world, ex)], ["leak"])

    def test_catchesBadErrors(self) -> None:
        """
        A 500, and a 4xx from an MCP endpoint that is not JSON-RPC, are
        violations; a proper JSON-RPC error is not.
        """
        world = self.world(fixtures=False)
        good = json.dumps({"jsonrpc": "2.0", "id": None,
                           "error": {"code": -32600, "message": "no"}}).encode()
        json_ = [(b"content-type", b"application/json"), (b"server", b"x")]
        cases = [(Answer(500, json_, good, True), ["500"]),
                 (Answer(400, json_, b'{"error": 1}', True), ["error-body"]),
                 (Answer(404, json_, good, True), []),
                 (Answer(404, json_, good.replace(b"null", b"NaN"), True), ["error-body"]),
                 (Answer(202, json_, good, True), ["empty-body"])]
        for answer, kinds in cases:
            ex = Exchange(b"POST /mcp HTTP/1.1\r\n\r\n", b"POST", b"/mcp", True, [answer])
            self.assertEqual([v.kind for v in violations(world, ex)], kinds, answer)

    def test_readAnswers(self) -> None:
        """
        Responses are read strictly: framing errors are reported.
        """
        ok = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
              b"HTTP/1.1 204 No Content\r\n\r\n")
        answers, error = readAnswers(ok, b"GET", False)
        self.assertIsNone(error)
        self.assertEqual([(a.status, a.body, a.complete) for a in answers],
                         [(200, b"hi", True), (204, b"", True)])
        _, error = readAnswers(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", b"GET", False)
        self.assertIsNotNone(error)
        _, error = readAnswers(b"garbage\r\n\r\n", b"GET", False)
        self.assertIsNotNone(error)


class KnownBugTests(FuzzCase):
    """
    One test per bug the fuzzers found, each failing until it is fixed
    (the reproducer is in L{KNOWN_BUGS}).
    """

    def assertFixed(self, name: str) -> None:
        bug = next(b for b in KNOWN_BUGS if b.name == name)
        world = self.world()
        ex = world.exchange(bug.reproducer)
        found = [v for v in violations(world, ex) if v.kind in bug.kinds]
        self.flushLoggedErrors()
        if found:
            self.fail(f"{bug.summary}\nreproducer: {bug.reproducer[:400]!r}\n"
                      + "\n".join(f"  {v}"[:1500] for v in found))

    def test_hugeLastEventId(self) -> None:
        self.assertFixed("huge-last-event-id")

    def test_hugeParamHeader(self) -> None:
        self.assertFixed("huge-param-header")

    def test_surrogateId(self) -> None:
        self.assertFixed("surrogate-id")

    def test_deepJSON(self) -> None:
        self.assertFixed("deep-json")

    def test_nonFiniteJSON(self) -> None:
        self.assertFixed("non-finite-json")

    def test_invalidIdEchoed(self) -> None:
        self.assertFixed("invalid-id-echoed")

    def test_notUTF8JSON(self) -> None:
        self.assertFixed("not-utf8-json")

    def test_kleinHTMLErrors(self) -> None:
        self.assertFixed("klein-html-errors")

    def test_nonUTF8URL(self) -> None:
        self.assertFixed("non-utf8-url")

    def test_contentTypeLineBreak(self) -> None:
        self.assertFixed("content-type-line-break")

    def test_badHost(self) -> None:
        self.assertFixed("bad-host")

    def test_headStartsSession(self) -> None:
        """
        HEAD /sse must not start an HTTP+SSE session and its child (Klein
        routes HEAD to the GET handler, so today it does).
        """
        world = self.world(fixtures=False)
        before = len(world.spawner.children)
        world.exchange(b"HEAD /sse HTTP/1.1\r\n{{AUTH}}Host: localhost\r\n\r\n")
        self.flushLoggedErrors()
        self.assertEqual(len(world.spawner.children), before,
                         "HEAD /sse spawned a child for a session no one can use")
