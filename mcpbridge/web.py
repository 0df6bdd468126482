"""
The HTTP face of the bridge, as a Klein application on a class: for each
server, MCP Streamable HTTP on C{/mcp} (POST, GET, DELETE) and the HTTP+SSE
transport on C{/sse} and C{/messages} (a named server's under
C{/servers/NAME/}); and C{GET /health}, C{GET /ping} and C{GET /status}.

Each request is served in one of two eras, decided per request: one that
names a live session, or whose C{MCP-Protocol-Version} is a session-era
version (or absent, unless the body carries the stateless C{_meta}
envelope), belongs to the session era, and goes to its session's child (or,
with C{--stateless}, to the session-era pool); any other belongs to the
stateless era and goes to the modern pool.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Optional, TypeVar

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET
from werkzeug.exceptions import MethodNotAllowed, NotFound

from . import __version__, jsonrpc, modern
from .guard import OriginGuard
from .jsonrpc import Message
from .legacy import LegacySession
from .logs import debugEnabled, logger
from .pool import ChildPool
from .servers import BridgedServer, Servers
from .sessions import SESSION_VERSIONS, Session, SessionError, SessionManager
from .streams import Connection, Stream, parseEventId

_JSON = b"application/json"
_SSE = b"text/event-stream"


def _accepts(request: IRequest, *types: bytes) -> bool:
    """
    Whether the C{Accept} header lists every one of C{types} (wildcards count).
    """
    header = request.getHeader(b"accept")
    if not header:
        return False
    listed = _listedTypes(header)
    if b"*/*" in listed:
        return True
    for t in types:
        if t not in listed and t.split(b"/")[0] + b"/*" not in listed:
            return False
    return True


@functools.lru_cache(maxsize=64)
def _listedTypes(header: bytes) -> frozenset[bytes]:
    """
    The media types an C{Accept} header lists, without parameters.  A
    client sends the same few headers again and again: they are read once.
    """
    return frozenset(part.split(b";", 1)[0].strip().lower() for part in header.split(b","))


def _empty(request: Any, status: int) -> bytes:
    """
    Set C{status} for a response with no body (and so no content type).
    """
    request.setResponseCode(status)
    request.defaultContentType = None
    return b""


def errorBody(request: IRequest, status: int, code: int, message: str,
              id: Any = None, retryAfter: Optional[int] = None, data: Any = None) -> bytes:
    """
    Set C{status} and return a JSON-RPC error response body.
    """
    request.setResponseCode(status)
    request.setHeader(b"content-type", _JSON)
    if retryAfter is not None:
        request.setHeader(b"retry-after", b"%d" % retryAfter)
    if status == 405 and not request.responseHeaders.hasHeader(b"allow"):
        request.setHeader(b"allow", b"POST")
    return jsonrpc.dumps(jsonrpc.errorResponse(id, code, message, data))


class BridgeApp:
    """
    Routes of the bridge: each server's endpoints (the default server's at
    C{/mcp} and C{/sse}, a named server's under C{/servers/NAME/}), and
    C{/health} and C{/status} for the whole bridge.
    """

    app = Klein()
    log = logger("mcpbridge.web")

    def __init__(self, servers: Servers, guard: OriginGuard, clock: Any) -> None:
        self.servers = servers
        self.guard = guard
        self.clock = clock
        self.started = clock.seconds()
        #: What TLS serves, for /status (L{None}: no --tls-key).
        self.tlsStatus: Callable[[], Optional[dict[str, Any]]] = lambda: None

    @classmethod
    def single(cls, manager: SessionManager, guard: OriginGuard, clock: Any,
               pool: ChildPool, stateless: Optional[ChildPool] = None) -> "BridgeApp":
        """
        The routes of one default server made of these parts.

        @param pool: serves the stateless era.
        @param stateless: with C{--stateless}, serves the session era
            without sessions.
        """
        servers = Servers()
        servers.add(BridgedServer(None, manager, pool, stateless))
        app = cls(servers, guard, clock)
        app.started = manager.started
        return app

    def resource(self) -> Any:
        return self.app.resource()

    @app.handle_errors(NotFound, MethodNotAllowed)
    def _noRoute(self, request: IRequest, failure: Any) -> bytes:
        """
        A path or method with no route: the status werkzeug decided, with
        a JSON-RPC error rather than an HTML page.
        """
        e = failure.value
        if isinstance(e, MethodNotAllowed) and e.valid_methods:
            request.setHeader(b"allow", ", ".join(
                sorted(m for m in e.valid_methods if m != "HEAD")).encode("ascii"))
            return errorBody(request, 405, jsonrpc.INVALID_REQUEST,
                             f"Method Not Allowed: {request.method.decode('ascii', 'replace')}"
                             f" is not served here")
        return errorBody(request, 404, jsonrpc.INVALID_REQUEST,
                         "Not Found: the bridge serves /mcp, /sse, /messages, /health, "
                         "/ping and /status (and a named server's under /servers/NAME/)")

    @app.handle_errors(SessionError)
    def _refused(self, request: IRequest, failure: Any) -> bytes:
        """
        Every refusal of the endpoint, as its HTTP status and a JSON-RPC error.
        """
        e = failure.value
        return errorBody(request, e.status, e.code, e.message, id=e.id,
                         retryAfter=e.retryAfter, data=e.data)

    def renderMCP(self, request: IRequest) -> Any:
        """
        The lean path of C{/mcp}, the default server's endpoint, which
        carries nearly all the traffic: the same handlers, and refusals,
        without the URL router in between.

        @return: the body, C{NOT_DONE_YET}, or L{None} for a method it does
            not serve (the router answers those).
        """
        handler = self._mcpHandlers.get(request.method)
        if handler is None:
            return None
        try:
            result = handler(self, request)
        except SessionError as e:
            return self._refused(request, Failure(e))
        if not isinstance(result, Deferred):
            return result
        lost = False

        def gone(_: Any) -> None:
            nonlocal lost
            lost = True
            result.cancel()

        def write(body: bytes) -> None:
            if not lost and not request.finished:  # type: ignore[attr-defined]
                request.write(body)
                request.finish()

        def failed(failure: Failure) -> None:
            if lost or request.finished or failure.check(CancelledError):  # type: ignore[attr-defined]
                return
            if failure.check(SessionError):
                write(self._refused(request, failure))
            else:
                request.processingFailed(failure)  # type: ignore[attr-defined]

        # The client going away cancels the answer, as Klein does.
        request.notifyFinish().addErrback(gone)  # type: ignore[attr-defined]
        result.addCallbacks(write, failed)
        return NOT_DONE_YET

    def _server(self, request: IRequest, name: Optional[str]) -> BridgedServer:
        """
        The server a request is for, once its Host and Origin passed.

        @raise SessionError: 421 or 403 from the guard, 404 for a server
            this bridge does not serve.
        """
        self._guard(request)
        server = self.servers.get(name)
        if server is None:
            what = "no default server" if name is None else f"no server named {name!r}"
            raise SessionError(404, jsonrpc.INVALID_REQUEST,
                               f"Not Found: this bridge has {what}")
        return server

    def _guard(self, request: IRequest) -> None:
        """
        @raise SessionError: for a Host (421) or Origin (403) not allowed.
        """
        refused = self.guard.check(request.getHeader(b"host"), request.getHeader(b"origin"))
        if refused is not None:
            status, reason = refused
            self.log.warn("refused {method} from {peer}: {reason} (Host {host!r}, "
                          "Origin {origin!r})", method=request.method,
                          peer=str(request.getClientAddress()), reason=reason,
                          host=request.getHeader(b"host"), origin=request.getHeader(b"origin"))
            raise SessionError(status, jsonrpc.INVALID_REQUEST, reason)

    def _live(self, request: IRequest, server: BridgedServer) -> Optional[Session]:
        """
        The live session a request names, if any.
        """
        header = request.getHeader(b"mcp-session-id")
        if header is None:
            return None
        return _owned(request, server.manager.get(header.decode("ascii", "replace")))

    def _session(self, request: IRequest, live: Optional[Session]) -> Session:
        """
        The session a request names, given what L{_live} found.

        @raise SessionError: 400 without a session id, 404 for an unknown one,
            400 for an C{MCP-Protocol-Version} other than the session's or a
            session-era one.
        """
        session = live
        if session is None and request.getHeader(b"mcp-session-id") is None:
            raise SessionError(400, jsonrpc.INVALID_REQUEST,
                               "Bad Request: Mcp-Session-Id header is required")
        if session is None:
            raise SessionError(404, jsonrpc.INVALID_REQUEST,
                               "Session not found: it ended or never existed; initialize again")
        header = request.getHeader(b"mcp-protocol-version")
        version = header.decode("ascii", "replace") if header is not None else None
        if version is not None and version not in SESSION_VERSIONS \
                and version != session.protocolVersion:
            raise SessionError(400, jsonrpc.INVALID_REQUEST,
                               f"Bad Request: unsupported MCP-Protocol-Version {version!r}; "
                               f"supported: {', '.join(SESSION_VERSIONS)}")
        return session

    @app.route("/mcp", methods=["POST"])
    @app.route("/servers/<name>/mcp", methods=["POST"])
    def post(self, request: IRequest, name: Optional[str] = None) -> Any:
        server = self._server(request, name)
        if not _accepts(request, _JSON, _SSE):
            raise SessionError(406, jsonrpc.INVALID_REQUEST, "Not Acceptable: Accept must "
                               "list application/json and text/event-stream")
        ctype = request.getHeader(b"content-type") or b""
        if ctype.split(b";", 1)[0].strip().lower() != _JSON:
            raise SessionError(415, jsonrpc.INVALID_REQUEST,
                               "Unsupported Media Type: Content-Type must be application/json")
        parsed, messages, batch = _readMessages(request)

        # A live session id means the session era whatever the version
        # header says, so that session's client hears its version is wrong.
        live = self._live(request, server)
        if live is None and modern.isModern(request, parsed):
            return self._modernPost(request, server.pool, messages, batch)
        if any(m.method == "initialize" and m.isRequest for m in messages):
            if batch:
                raise SessionError(400, jsonrpc.INVALID_REQUEST,
                                   "Invalid Request: initialize must not be part of a batch")
            return self._initialize(request, server, messages[0])
        if server.stateless is not None:
            return self._statelessPost(request, server.stateless, messages, batch)

        session = self._session(request, live)
        if batch and session.protocolVersion != "2025-03-26":
            raise SessionError(400, jsonrpc.INVALID_REQUEST,
                               "Invalid Request: batches are only allowed in protocol 2025-03-26")
        if debugEnabled():
            self.log.debug("session {session}: POST {methods}", session=session.id,
                           methods=[m.method or f"response {m.id!r}" for m in messages])
        return self._submit(request, session.submit, messages, batch)

    def _submit(self, request: IRequest, submit: Callable[..., Optional[Stream]],
                messages: list[Message], batch: bool) -> Any:
        """
        Hand a POST's messages to a session or a pool: 202 when they hold
        no request, else the answer when it comes.
        """
        connection = None
        if any(m.isRequest for m in messages):
            connection = Connection(request, self.clock)
        try:
            stream = submit(messages, connection, batch)
        except SessionError as e:
            if not batch:
                e.id = messages[0].id
            raise
        if stream is None:
            return _empty(request, 202)
        assert connection is not None
        return connection.deferred

    def _modernPost(self, request: IRequest, pool: ChildPool, messages: list[Message],
                    batch: bool) -> Any:
        """
        A POST of the stateless era: one request, checked, then served by
        the pool; a notification is accepted and dropped.
        """
        if batch:
            raise SessionError(400, jsonrpc.INVALID_REQUEST,
                               "Invalid Request: the stateless protocol era has no batches")
        message = messages[0]
        if message.isResponse:
            raise SessionError(400, jsonrpc.INVALID_REQUEST, "Invalid Request: clients of the "
                               "stateless protocol era send no responses", id=message.id)
        if not message.isRequest:
            return _empty(request, 202)
        modern.checkRequest(request, message)
        connection = Connection(request, self.clock)
        try:
            # Only a tools/call can have Mcp-Param-* headers to check.
            params = modern.paramHeaders(request) if message.method == "tools/call" else None
            pool.submit([message], connection, False, params)
        except SessionError as e:
            e.id = message.id
            raise
        return connection.deferred

    def _statelessPost(self, request: IRequest, pool: ChildPool, messages: list[Message],
                       batch: bool) -> Any:
        """
        A session-era POST under C{--stateless}: no session, served by the
        session-era pool.
        """
        if batch and request.getHeader(b"mcp-protocol-version") not in (None, b"2025-03-26"):
            raise SessionError(400, jsonrpc.INVALID_REQUEST,
                               "Invalid Request: batches are only allowed in protocol 2025-03-26")
        return self._submit(request, pool.submit, messages, batch)

    def _streamRequest(self, request: IRequest, name: Optional[str],
                       accept: Optional[bytes] = None) -> tuple[BridgedServer, Session]:
        """
        The server and session of a GET (open or resume a stream) or a
        DELETE (end the session).

        @raise SessionError: 405 in the stateless era, or in the session era
            under C{--stateless} (no session has streams to open or end);
            406 when the request does not accept C{accept}; else as
            L{_server} and L{_session}.
        """
        server = self._server(request, name)
        live = self._live(request, server)
        if server.stateless is not None or (live is None and modern.isModern(request)):
            raise SessionError(405, jsonrpc.INVALID_REQUEST,
                               f"Method Not Allowed: {request.method.decode()} /mcp; "
                               f"stateless requests use POST only")
        if accept is not None and not _accepts(request, accept):
            raise SessionError(406, jsonrpc.INVALID_REQUEST,
                               f"Not Acceptable: Accept must list {accept.decode()}")
        return server, self._session(request, live)

    def _initialize(self, request: IRequest, server: BridgedServer, message: Message) -> Any:
        if server.stateless is not None:
            connection = Connection(request, self.clock)
            server.stateless.initialize(message, connection)
            return connection.deferred
        try:
            session = server.manager.create()
        except SessionError as e:
            e.id = message.id
            raise
        session.owner = _principal(request)
        connection = Connection(request, self.clock)
        session.initialize(message, connection)
        return connection.deferred

    @app.route("/mcp", methods=["GET"])
    @app.route("/servers/<name>/mcp", methods=["GET"])
    def get(self, request: IRequest, name: Optional[str] = None) -> Any:
        _, session = self._streamRequest(request, name, accept=_SSE)
        lastEventId = request.getHeader(b"last-event-id")
        self.log.debug("session {session}: GET stream (Last-Event-ID {last!r})",
                       session=session.id, last=lastEventId)
        connection = Connection(request, self.clock)
        if lastEventId is None:
            session.openGetStream(connection)
        else:
            where = parseEventId(lastEventId)
            if where is None:
                raise SessionError(400, jsonrpc.INVALID_REQUEST,
                                   "Bad Request: malformed Last-Event-ID")
            session.resume(connection, *where)
        return connection.deferred

    @app.route("/mcp", methods=["DELETE"])
    @app.route("/servers/<name>/mcp", methods=["DELETE"])
    def delete(self, request: IRequest, name: Optional[str] = None) -> Any:
        server, session = self._streamRequest(request, name)
        server.manager.end(session, "closed by the client (DELETE)")
        return _empty(request, 204)

    _mcpHandlers = {b"POST": post, b"GET": get, b"DELETE": delete}

    # The HTTP+SSE transport (2024-11-05).

    @app.route("/sse", methods=["GET"])
    @app.route("/servers/<name>/sse", methods=["GET"])
    def sse(self, request: IRequest, name: Optional[str] = None) -> Any:
        """
        Open an HTTP+SSE session: a new child, and a stream whose first
        event names where to POST.
        """
        server = self._server(request, name)
        prefix = b"" if name is None else b"/servers/" + name.encode("utf-8")
        session = server.manager.createLegacy(prefix + b"/messages")
        session.owner = _principal(request)
        connection = Connection(request, self.clock)
        session.open(connection)
        self.log.debug("SSE session {session} opened", session=session.id)
        return connection.deferred

    @app.route("/messages", methods=["POST"])
    @app.route("/messages/", methods=["POST"])
    @app.route("/servers/<name>/messages", methods=["POST"])
    @app.route("/servers/<name>/messages/", methods=["POST"])
    def messages(self, request: IRequest, name: Optional[str] = None) -> Any:
        """
        A message of an HTTP+SSE session: 202, the answer goes on its stream.
        """
        server = self._server(request, name)
        args = request.args
        ids = args.get(b"session_id") or args.get(b"sessionId")
        if not ids:
            raise SessionError(400, jsonrpc.INVALID_REQUEST,
                               "Bad Request: the session_id query parameter is required")
        session = _owned(request, server.manager.getLegacy(ids[0].decode("ascii", "replace")))
        if session is None:
            raise SessionError(404, jsonrpc.INVALID_REQUEST,
                               "Session not found: its SSE stream ended or never existed; "
                               "open a new one")
        ctype = request.getHeader(b"content-type")
        if ctype is not None and ctype.split(b";", 1)[0].strip().lower() != _JSON:
            raise SessionError(415, jsonrpc.INVALID_REQUEST,
                               "Unsupported Media Type: Content-Type must be application/json")
        _, messages, batch = _readMessages(request)
        try:
            session.submit(messages)
        except SessionError as e:
            if not batch and e.id is None:
                e.id = messages[0].id
            raise
        request.setResponseCode(202)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Accepted"

    def _summary(self) -> tuple[bool, dict[str, Any]]:
        """
        Whether every server takes requests and can start its children, and
        the report's common head.
        """
        servers = list(self.servers)
        accepting = all(s.manager.accepting for s in servers)
        healthy = accepting and all(s.healthy for s in servers)
        return healthy, {
            "status": "ok" if healthy else ("failing" if accepting else "stopping"),
            "version": __version__,
            "uptime": round(self.clock.seconds() - self.started, 3),
        }

    @app.route("/health", methods=["GET"])
    def health(self, request: IRequest) -> Any:
        """
        200 while every server can start its children, else 503; with the
        default server's details at the top level, and a line per server.
        """
        healthy, report = self._summary()
        default = self.servers.default
        if default is not None:
            details = default.status()
            del details["name"], details["status"]
            report.update(details)
        else:
            report["last_error"] = next((s.lastError for s in self.servers if s.lastError),
                                        None)
        report["servers"] = {
            s.label: {"status": "ok" if s.healthy else "failing",
                      "sessions": len(s.manager.sessions),
                      "sse_sessions": len(s.manager.legacy),
                      "last_error": s.lastError}
            for s in self.servers}
        return _report(request, report, 200 if healthy else 503)

    @app.route("/ping", methods=["GET"])
    def ping(self, request: IRequest) -> Any:
        """
        200 while the bridge process runs: a liveness probe (whether its
        servers can start children is C{/health}'s question).
        """
        return _report(request, {"status": "ok", "version": __version__}, 200)

    @app.route("/status", methods=["GET"])
    def status(self, request: IRequest) -> Any:
        """
        Every server with its sessions, children, pools and last error.
        """
        self._guard(request)
        _, report = self._summary()
        report["tls"] = self.tlsStatus()
        report["servers"] = [s.status() for s in self.servers]
        return _report(request, report, 200)


def _principal(request: IRequest) -> Optional[bytes]:
    """
    Who the gate found a request comes from (L{None} without credentials).
    """
    return getattr(request, "principal", None)


_S = TypeVar("_S", Session, LegacySession)


def _owned(request: IRequest, session: Optional[_S]) -> Optional[_S]:
    """
    C{session} if the request's credential is the one it was made with:
    to anyone else it does not exist.
    """
    if session is not None and session.owner != _principal(request):
        return None
    return session


def _report(request: IRequest, report: dict[str, Any], status: int) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", _JSON)
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(report).encode("utf-8")


def _validId(value: Any) -> Any:
    """
    C{value} if it can be a JSON-RPC id (a string or an integer), else
    L{None}: an invalid message's id is echoed only when it is one.
    """
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


def _readMessages(request: IRequest) -> tuple[Any, list[Message], bool]:
    """
    Parse a POST body: one JSON-RPC message or a batch.

    @return: the parsed JSON, its messages, and whether it was a batch.
    @raise SessionError: 400 for malformed JSON or an invalid message.
    """
    body = request.content.read()
    try:
        parsed = jsonrpc.loads(body)
    except ValueError as e:
        raise SessionError(400, jsonrpc.PARSE_ERROR, f"Parse error: {e}") from e
    batch = isinstance(parsed, list)
    items = parsed if batch else [parsed]
    if not items:
        raise SessionError(400, jsonrpc.INVALID_REQUEST, "Invalid Request: empty batch")
    for item in items:
        problem = jsonrpc.checkClientMessage(item)
        if problem is not None:
            raise SessionError(400, jsonrpc.INVALID_REQUEST, f"Invalid Request: {problem}",
                               id=_validId(item.get("id")) if isinstance(item, dict) else None)
    if batch or b"\n" in body or b"\r" in body:
        return parsed, [Message.fromObject(item) for item in items], batch
    return parsed, [Message(body.strip(), parsed)], batch
