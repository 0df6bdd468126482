"""
The HTTP+SSE transport of 2024-11-05, which many clients still speak: one
SSE connection (C{GET /sse}) is one session and one child process.

The stream's first event, C{endpoint}, names the URL the client POSTs its
messages to; every POST is answered 202 at once, and every message from the
child (responses, progress, log messages, sampling and elicitation
requests) travels as a C{message} event on the one stream.  The session
ends when the stream does: the client closing it stops the child, and the
child exiting closes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Optional

from . import jsonrpc
from .child import ChildProcess
from .jsonrpc import Message
from .logs import logger
from .sessions import PendingRequest, Requests, SessionError
from .streams import Connection, Stream, encodeEvent

if TYPE_CHECKING:
    from .sessions import SessionManager


class LegacySession:
    """
    One HTTP+SSE connection, its session and its child.

    It owns one L{Stream} (number 0, always SSE) that carries everything,
    so back-pressure, keep-alive comments and disconnect detection work as
    they do for the Streamable HTTP transport.

    @ivar id: the C{session_id} of the POST URL.
    @ivar state: C{"ready"} until it ends, then C{"closed"}.
    """

    log = logger("mcpbridge.legacy")
    transport = "sse"

    def __init__(self, manager: "SessionManager", sessionId: str, child: ChildProcess,
                 messagesPath: bytes) -> None:
        self.manager = manager
        self.config = manager.config
        self.clock = manager.reactor
        self.id = sessionId
        self.messagesPath = messagesPath
        #: The credential (its digest) the session was made with: no other may use it.
        self.owner: Optional[bytes] = None
        self.protocolVersion: Optional[str] = None
        self.state = "ready"
        self.initialized = False
        self.lastActivity = self.clock.seconds()
        self.requests = Requests(self.clock, self._timedOut)
        self.pending = self.requests.pending
        self.stream = Stream(self, 0, None)
        child.label = sessionId
        child.onMessage = self.childMessage
        child.onExit = self.childExited
        child.onOversized = self.childOversized
        self.child = child

    # StreamOwner.

    def primingEvent(self, stream: int) -> bytes:
        """
        The C{endpoint} event: where to POST, with this session's id.
        """
        return b"event: endpoint\ndata: %s?session_id=%s\n\n" % (
            self.messagesPath, self.id.encode("ascii"))

    def event(self, stream: int, data: bytes) -> bytes:
        return b"event: message\n" + encodeEvent(None, data)

    def streamDisconnected(self, stream: Stream) -> None:
        if self.state != "closed":
            self.manager.end(self, "the client closed the SSE stream")

    def pauseFor(self, connection: Connection) -> None:
        self.child.pauseFor(connection)

    def resumeFor(self, connection: Connection) -> None:
        self.child.resumeFor(connection)

    # What the manager asks of every session.

    @property
    def idle(self) -> bool:
        return not self.stream.live

    def liveConnections(self) -> Iterable[Connection]:
        if self.stream.live:
            assert self.stream.connection is not None
            yield self.stream.connection

    def touch(self) -> None:
        self.lastActivity = self.manager.lastActivity = self.clock.seconds()

    # Client to child.

    def open(self, connection: Connection) -> None:
        """
        Start the SSE stream on C{connection}: headers, then the
        C{endpoint} event.
        """
        self.stream.attach(connection)
        connection.startSSE()
        connection.write(self.primingEvent(0))

    def submit(self, messages: list[Message]) -> None:
        """
        Forward POSTed messages to the child; their answers go on the stream.

        @raise SessionError: 503 for a request while the bridge drains,
            409 for a request id already in flight.
        """
        self.touch()
        self.requests.check(self.manager, [m for m in messages if m.isRequest])
        for m in messages:
            if m.isRequest:
                self._track(m)
            elif m.method == "notifications/cancelled":
                pending = self.pending.get(m.params.get("requestId"))
                if pending is not None:
                    self.requests.untrack(pending)
            if not self.child.send(m):
                raise SessionError(404, jsonrpc.SERVER_UNAVAILABLE, "session has ended")

    def _track(self, message: Message) -> None:
        initialize = message.method == "initialize"
        if initialize:
            requested = message.params.get("protocolVersion")
            if isinstance(requested, str):
                self.protocolVersion = requested
        self.requests.track(message, self.stream, self.config.startupTimeout if initialize
                            else self.config.requestTimeout)

    def _fail(self, pending: PendingRequest, code: int, message: str) -> None:
        self.requests.untrack(pending)
        self.stream.send(jsonrpc.errorMessage(pending.id, code, message))

    def _timedOut(self, pending: PendingRequest, timeout: float) -> None:
        self.log.warn("SSE session {session}: request {id} ({method}) timed out after "
                      "{timeout} s", session=self.id, id=pending.id, method=pending.method,
                      timeout=timeout)
        self._fail(pending, jsonrpc.REQUEST_TIMEOUT,
                   f"request timed out after {timeout:g} s without progress")
        self.child.send(jsonrpc.cancelledNotification(pending.id, "timed out in the bridge"))

    # Child to client.

    def childMessage(self, message: Message) -> None:
        if not message.hasMethod:
            pending = self.pending.get(message.id)
            if pending is None:
                self.log.debug("SSE session {session}: response to unknown or cancelled "
                               "request {id} dropped", session=self.id, id=message.id)
                return
            self.requests.untrack(pending)
            if pending.method == "initialize":
                self._initialized(message)
        elif message.obj["method"] == "notifications/progress":
            self.requests.progressed(message, self.config.requestTimeout)
        self.stream.send(message)

    def _initialized(self, message: Message) -> None:
        result = message.obj.get("result")
        if not isinstance(result, dict):
            return
        version = result.get("protocolVersion")
        if isinstance(version, str):
            self.protocolVersion = version
        self.initialized = True
        self.manager.startedOk()
        self.log.info("SSE session {session} started (protocol {version}, pid {pid})",
                      session=self.id, version=self.protocolVersion, pid=self.child.pid)

    def childOversized(self, ident: Any, reason: str) -> None:
        pending = self.pending.get(ident)
        if pending is not None:
            self._fail(pending, jsonrpc.MESSAGE_TOO_LARGE, reason)

    def childExited(self, child: ChildProcess) -> None:
        if self.state == "closed":
            return
        reason = f"the MCP server process {child.exitDescription}"
        if not self.initialized:
            self.manager.startFailed(f"an SSE session failed to start: {reason}")
        self._close(reason)
        self.manager.end(self, reason)

    # Ending.

    def _close(self, reason: str) -> None:
        self.state = "closed"
        for pending in list(self.pending.values()):
            self._fail(pending, jsonrpc.CONNECTION_CLOSED, reason)
        self.requests.stop()
        self.stream.finish()

    def terminate(self, reason: str) -> Any:
        """
        End the session: error its pending requests, end the stream and
        stop the child.

        @return: a Deferred that fires when the child is gone.
        """
        if self.state != "closed":
            self.log.info("SSE session {session} ending: {reason}", session=self.id,
                          reason=reason)
            self._close(f"session ended: {reason}")
        return self.child.stop()
