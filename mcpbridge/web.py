"""
The HTTP face of the bridge: MCP Streamable HTTP on C{/mcp} (POST, GET,
DELETE) and C{GET /health}, as a Klein application on a class.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from klein import Klein
from twisted.web.iweb import IRequest

from . import __version__, jsonrpc
from .child import ChildStartError
from .guard import OriginGuard
from .jsonrpc import Message
from .logs import debugEnabled, logger
from .sessions import SESSION_VERSIONS, SessionError, SessionManager
from .streams import Connection, parseEventId

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
              id: Any = None, retryAfter: Optional[int] = None) -> bytes:
    """
    Set C{status} and return a JSON-RPC error response body.
    """
    request.setResponseCode(status)
    request.setHeader(b"content-type", _JSON)
    if retryAfter is not None:
        request.setHeader(b"retry-after", b"%d" % retryAfter)
    return jsonrpc.dumps(jsonrpc.errorResponse(id, code, message))


class BridgeApp:
    """
    Routes of one bridged MCP server.
    """

    app = Klein()
    log = logger("mcpbridge.web")

    def __init__(self, manager: SessionManager, guard: OriginGuard, clock: Any) -> None:
        self.manager = manager
        self.guard = guard
        self.clock = clock

    def resource(self) -> Any:
        return self.app.resource()

    def _guard(self, request: IRequest) -> Optional[bytes]:
        refused = self.guard.check(request.getHeader(b"host"), request.getHeader(b"origin"))
        if refused is None:
            return None
        status, reason = refused
        self.log.warn("refused {method} from {peer}: {reason} (Host {host!r}, Origin {origin!r})",
                      method=request.method, peer=str(request.getClientAddress()),
                      reason=reason, host=request.getHeader(b"host"),
                      origin=request.getHeader(b"origin"))
        return errorBody(request, status, jsonrpc.INVALID_REQUEST, reason)

    def _session(self, request: IRequest) -> Any:
        """
        The session a request names, or an error body.
        """
        header = request.getHeader(b"mcp-session-id")
        if header is None:
            return errorBody(request, 400, jsonrpc.INVALID_REQUEST,
                             "Bad Request: Mcp-Session-Id header is required")
        session = self.manager.get(header.decode("ascii", "replace"))
        if session is None:
            return errorBody(request, 404, jsonrpc.INVALID_REQUEST,
                             "Session not found: it ended or never existed; initialize again")
        version = request.getHeader(b"mcp-protocol-version")
        if version is not None:
            v = version.decode("ascii", "replace")
            if v not in SESSION_VERSIONS and v != session.protocolVersion:
                return errorBody(request, 400, jsonrpc.INVALID_REQUEST,
                                 f"Bad Request: unsupported MCP-Protocol-Version {v!r}; "
                                 f"supported: {', '.join(SESSION_VERSIONS)}")
        return session

    @app.route("/mcp", methods=["POST"])
    def post(self, request: IRequest) -> Any:
        refused = self._guard(request)
        if refused is not None:
            return refused
        if not _accepts(request, _JSON, _SSE):
            return errorBody(request, 406, jsonrpc.INVALID_REQUEST,
                             "Not Acceptable: Accept must list application/json "
                             "and text/event-stream")
        ctype = request.getHeader(b"content-type") or b""
        if ctype.split(b";", 1)[0].strip().lower() != _JSON:
            return errorBody(request, 415, jsonrpc.INVALID_REQUEST,
                             "Unsupported Media Type: Content-Type must be application/json")
        body = request.content.read()
        try:
            parsed = json.loads(body)
        except ValueError as e:
            return errorBody(request, 400, jsonrpc.PARSE_ERROR, f"Parse error: {e}")
        batch = isinstance(parsed, list)
        items = parsed if batch else [parsed]
        if not items:
            return errorBody(request, 400, jsonrpc.INVALID_REQUEST,
                             "Invalid Request: empty batch")
        for item in items:
            problem = jsonrpc.checkClientMessage(item)
            if problem is not None:
                return errorBody(request, 400, jsonrpc.INVALID_REQUEST,
                                 f"Invalid Request: {problem}",
                                 id=item.get("id") if isinstance(item, dict) else None)
        if batch or b"\n" in body or b"\r" in body:
            messages = [Message.fromObject(item) for item in items]
        else:
            messages = [Message(body.strip(), parsed)]

        init = [m for m in messages if m.isRequest and m.method == "initialize"]
        if init:
            if batch:
                return errorBody(request, 400, jsonrpc.INVALID_REQUEST,
                                 "Invalid Request: initialize must not be part of a batch")
            return self._initialize(request, messages[0])

        session = self._session(request)
        if isinstance(session, bytes):
            return session
        if batch and session.protocolVersion != "2025-03-26":
            return errorBody(request, 400, jsonrpc.INVALID_REQUEST,
                             "Invalid Request: batches are only allowed in protocol 2025-03-26")
        if debugEnabled():
            self.log.debug("session {session}: POST {methods}", session=session.id,
                           methods=[m.method or f"response {m.id!r}" for m in messages])
        connection = None
        if any(m.isRequest for m in messages):
            connection = Connection(request, self.clock)
        try:
            stream = session.submit(messages, connection, batch)
        except SessionError as e:
            return errorBody(request, e.status, e.code, e.message,
                             id=messages[0].id if not batch else None)
        if stream is None:
            return _empty(request, 202)
        assert connection is not None
        return connection.deferred

    def _initialize(self, request: IRequest, message: Message) -> Any:
        version = request.getHeader(b"mcp-protocol-version")
        if version is not None and version.decode("ascii", "replace") not in SESSION_VERSIONS:
            # A client may send the header with initialize; a bad one is an error.
            return errorBody(request, 400, jsonrpc.INVALID_REQUEST,
                             "Bad Request: unsupported MCP-Protocol-Version "
                             f"{version.decode('ascii', 'replace')!r}", id=message.id)
        try:
            session = self.manager.create()
        except SessionError as e:
            return errorBody(request, e.status, e.code, e.message, id=message.id,
                             retryAfter=e.retryAfter)
        except ChildStartError as e:
            return errorBody(request, 502, jsonrpc.SERVER_UNAVAILABLE,
                             f"The MCP server could not be started: {e}", id=message.id)
        connection = Connection(request, self.clock)
        session.initialize(message, connection)
        return connection.deferred

    @app.route("/mcp", methods=["GET"])
    def get(self, request: IRequest) -> Any:
        refused = self._guard(request)
        if refused is not None:
            return refused
        if not _accepts(request, _SSE):
            return errorBody(request, 406, jsonrpc.INVALID_REQUEST,
                             "Not Acceptable: Accept must list text/event-stream")
        session = self._session(request)
        if isinstance(session, bytes):
            return session
        connection = Connection(request, self.clock)
        lastEventId = request.getHeader(b"last-event-id")
        self.log.debug("session {session}: GET stream (Last-Event-ID {last!r})",
                       session=session.id, last=lastEventId)
        try:
            if lastEventId is not None:
                where = parseEventId(lastEventId)
                if where is None:
                    return errorBody(request, 400, jsonrpc.INVALID_REQUEST,
                                     "Bad Request: malformed Last-Event-ID")
                session.resume(connection, *where)
            else:
                session.openGetStream(connection)
        except SessionError as e:
            return errorBody(request, e.status, e.code, e.message)
        return connection.deferred

    @app.route("/mcp", methods=["DELETE"])
    def delete(self, request: IRequest) -> Any:
        refused = self._guard(request)
        if refused is not None:
            return refused
        session = self._session(request)
        if isinstance(session, bytes):
            return session
        self.manager.end(session, "closed by the client (DELETE)")
        return _empty(request, 204)

    @app.route("/health", methods=["GET"])
    def health(self, request: IRequest) -> Any:
        status = self.manager.status()
        healthy = self.manager.accepting and self.manager.lastStartOk is not False
        status = {
            "status": "ok" if healthy else ("stopping" if not self.manager.accepting
                                            else "failing"),
            "version": __version__,
            "uptime": round(self.clock.seconds() - self.manager.started, 3),
            **status,
        }
        request.setResponseCode(200 if healthy else 503)
        request.setHeader(b"content-type", _JSON)
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(status).encode("utf-8")

