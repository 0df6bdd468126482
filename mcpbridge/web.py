"""
The HTTP face of the bridge: MCP Streamable HTTP on C{/mcp} (POST, GET,
DELETE) and C{GET /health}, as a Klein application on a class.

Each request is served in one of two eras, decided per request: one that
names a live session, or whose C{MCP-Protocol-Version} is a session-era
version (or absent, unless the body carries the stateless C{_meta}
envelope), belongs to the session era, and goes to its session's child (or,
with C{--stateless}, to the session-era pool); any other belongs to the
stateless era and goes to the modern pool.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

from klein import Klein
from twisted.web.iweb import IRequest

from . import __version__, jsonrpc, modern
from .guard import OriginGuard
from .jsonrpc import Message
from .logs import debugEnabled, logger
from .pool import ChildPool
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
    listed = {part.split(b";", 1)[0].strip().lower() for part in header.split(b",")}
    if b"*/*" in listed:
        return True
    for t in types:
        if t not in listed and t.split(b"/")[0] + b"/*" not in listed:
            return False
    return True


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
    if status == 405:
        request.setHeader(b"allow", b"POST")
    return jsonrpc.dumps(jsonrpc.errorResponse(id, code, message, data))


class BridgeApp:
    """
    Routes of one bridged MCP server.
    """

    app = Klein()
    log = logger("mcpbridge.web")

    def __init__(self, manager: SessionManager, guard: OriginGuard, clock: Any,
                 pool: ChildPool, stateless: Optional[ChildPool] = None) -> None:
        """
        @param pool: serves the stateless era.
        @param stateless: with C{--stateless}, serves the session era
            without sessions.
        """
        self.manager = manager
        self.guard = guard
        self.clock = clock
        self.pool = pool
        self.stateless = stateless

    def resource(self) -> Any:
        return self.app.resource()

    @app.handle_errors(SessionError)
    def _refused(self, request: IRequest, failure: Any) -> bytes:
        """
        Every refusal of the endpoint, as its HTTP status and a JSON-RPC error.
        """
        e = failure.value
        return errorBody(request, e.status, e.code, e.message, id=e.id,
                         retryAfter=e.retryAfter, data=e.data)

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

    def _live(self, request: IRequest) -> Optional[Session]:
        """
        The live session a request names, if any.
        """
        header = request.getHeader(b"mcp-session-id")
        return None if header is None else self.manager.get(header.decode("ascii", "replace"))

    def _isModern(self, request: IRequest, body: Any = None) -> bool:
        """
        Whether a request belongs to the stateless era.  A live session id
        means the session era whatever the version header says, so that
        session's client hears that its version is wrong.
        """
        return self._live(request) is None and modern.isModern(request, body)

    def _session(self, request: IRequest) -> Session:
        """
        The session a request names.

        @raise SessionError: 400 without a session id, 404 for an unknown one,
            400 for an C{MCP-Protocol-Version} other than the session's or a
            session-era one.
        """
        header = request.getHeader(b"mcp-session-id")
        if header is None:
            raise SessionError(400, jsonrpc.INVALID_REQUEST,
                               "Bad Request: Mcp-Session-Id header is required")
        session = self.manager.get(header.decode("ascii", "replace"))
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
    def post(self, request: IRequest) -> Any:
        self._guard(request)
        if not _accepts(request, _JSON, _SSE):
            raise SessionError(406, jsonrpc.INVALID_REQUEST, "Not Acceptable: Accept must "
                               "list application/json and text/event-stream")
        ctype = request.getHeader(b"content-type") or b""
        if ctype.split(b";", 1)[0].strip().lower() != _JSON:
            raise SessionError(415, jsonrpc.INVALID_REQUEST,
                               "Unsupported Media Type: Content-Type must be application/json")
        body = request.content.read()
        try:
            parsed = json.loads(body)
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
                                   id=item.get("id") if isinstance(item, dict) else None)
        if batch or b"\n" in body or b"\r" in body:
            messages = [Message.fromObject(item) for item in items]
        else:
            messages = [Message(body.strip(), parsed)]

        if self._isModern(request, parsed):
            return self._modernPost(request, messages, batch)
        if any(m.method == "initialize" and m.isRequest for m in messages):
            if batch:
                raise SessionError(400, jsonrpc.INVALID_REQUEST,
                                   "Invalid Request: initialize must not be part of a batch")
            return self._initialize(request, messages[0])
        if self.stateless is not None:
            return self._statelessPost(request, messages, batch)

        session = self._session(request)
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

    def _modernPost(self, request: IRequest, messages: list[Message], batch: bool) -> Any:
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
            self.pool.submit([message], connection, False, params)
        except SessionError as e:
            e.id = message.id
            raise
        return connection.deferred

    def _statelessPost(self, request: IRequest, messages: list[Message], batch: bool) -> Any:
        """
        A session-era POST under C{--stateless}: no session, served by the
        session-era pool.
        """
        if batch and request.getHeader(b"mcp-protocol-version") not in (None, b"2025-03-26"):
            raise SessionError(400, jsonrpc.INVALID_REQUEST,
                               "Invalid Request: batches are only allowed in protocol 2025-03-26")
        assert self.stateless is not None
        return self._submit(request, self.stateless.submit, messages, batch)

    def _noStreams(self, request: IRequest) -> None:
        """
        @raise SessionError: 405 for a GET or DELETE of the stateless era,
            or of the session era under C{--stateless}: no session has
            streams to open or to end.
        """
        if self.stateless is not None or self._isModern(request):
            raise SessionError(405, jsonrpc.INVALID_REQUEST,
                               f"Method Not Allowed: {request.method.decode()} /mcp; "
                               f"stateless requests use POST only")

    def _initialize(self, request: IRequest, message: Message) -> Any:
        if self.stateless is not None:
            connection = Connection(request, self.clock)
            self.stateless.initialize(message, connection)
            return connection.deferred
        try:
            session = self.manager.create()
        except SessionError as e:
            e.id = message.id
            raise
        connection = Connection(request, self.clock)
        session.initialize(message, connection)
        return connection.deferred

    @app.route("/mcp", methods=["GET"])
    def get(self, request: IRequest) -> Any:
        self._guard(request)
        self._noStreams(request)
        if not _accepts(request, _SSE):
            raise SessionError(406, jsonrpc.INVALID_REQUEST,
                               "Not Acceptable: Accept must list text/event-stream")
        session = self._session(request)
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
    def delete(self, request: IRequest) -> Any:
        self._guard(request)
        self._noStreams(request)
        self.manager.end(self._session(request), "closed by the client (DELETE)")
        return _empty(request, 204)

    @app.route("/health", methods=["GET"])
    def health(self, request: IRequest) -> Any:
        pools = [p for p in (self.pool, self.stateless) if p is not None]
        healthy = (self.manager.accepting and self.manager.lastStartOk is not False
                   and all(p.lastStartOk is not False for p in pools))
        report = {
            "status": "ok" if healthy else ("stopping" if not self.manager.accepting
                                            else "failing"),
            "version": __version__,
            "uptime": round(self.clock.seconds() - self.manager.started, 3),
            **self.manager.status(),
            "stateless": self.pool.status(),
        }
        if report["last_error"] is None:
            report["last_error"] = next((p.lastError for p in pools if p.lastError), None)
        if self.stateless is not None:
            report["stateless_sessions"] = self.stateless.status()
        request.setResponseCode(200 if healthy else 503)
        request.setHeader(b"content-type", _JSON)
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(report).encode("utf-8")

