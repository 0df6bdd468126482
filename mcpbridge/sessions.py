"""
MCP sessions of the session era (2025-03-26 to 2025-11-25): one child process
per session, the client requests in flight, and the routing of every message
the child sends to exactly one stream.

Routing rule for a message from the child:

 1. A response goes to the stream of the request it answers.
 2. A notification that names its request goes to that request's stream:
    C{notifications/progress} by its C{progressToken}, C{notifications/cancelled}
    by the server request it cancels.
 3. Session-wide notifications (C{notifications/*/list_changed},
    C{notifications/resources/updated}) go to the GET stream when one is
    open.
 4. Anything else (log messages, sampling, elicitation and roots requests,
    session-wide notifications with no GET stream) goes to the stream of the
    newest request still in flight, since a stdio server cannot say which
    request it is working for.
 5. With nothing in flight it goes to the GET stream, or, if none is open,
    waits in a bounded backlog that the next GET stream receives first.
"""

from __future__ import annotations

import os
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Union

import attr
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall

from . import jsonrpc
from .child import ChildProcess, ChildStartError, CommandSpec, spawnGroupLeader
from .jsonrpc import Message
from .logs import logger
from .streams import PRIMING_VERSIONS, Connection, EventHistory, Stream, encodeEvent, eventId
from .timing import Ticker, restartDelay, whenIdle

if TYPE_CHECKING:
    from .legacy import LegacySession

#: Protocol versions of the session era that the bridge serves.
SESSION_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
#: Assumed when a client sends no MCP-Protocol-Version and nothing else tells.
DEFAULT_VERSION = "2025-03-26"

_SESSION_WIDE = ("notifications/resources/updated",)


def isSessionWide(method: Optional[str]) -> bool:
    return method is not None and (method.endswith("/list_changed") or method in _SESSION_WIDE)


@attr.s(auto_attribs=True)
class SessionConfig:
    """
    Settings of sessions; seconds unless said otherwise, 0 disables a timeout.
    """

    idleTimeout: float = 300.0
    requestTimeout: float = 600.0
    startupTimeout: float = 30.0
    maxSessions: int = 100
    heartbeatInterval: float = 15.0
    historyEvents: int = 1000
    historyBytes: int = 16 * 1024 * 1024
    backlogMessages: int = 1000
    retryMillis: int = 1000
    drainTimeout: float = 10.0
    spares: int = 0
    maxStreams: int = 64


class SessionError(Exception):
    """
    A client error the web layer turns into an HTTP status and JSON-RPC error.
    """

    def __init__(self, status: int, code: int, message: str, retryAfter: Optional[int] = None,
                 id: Any = None, data: Any = None) -> None:
        super().__init__(message)
        self.data = data
        self.status = status
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
        #: The JSON-RPC id of the request it answers, when there is one.
        self.id = id


class PendingRequest:
    """
    A client request the child has not answered yet.

    @ivar deadline: when it times out (L{None}: never).
    """

    __slots__ = ("id", "stream", "progressToken", "deadline", "timeout", "method")

    def __init__(self, id: Any, stream: Stream, progressToken: Any, method: str) -> None:
        self.id = id
        self.stream = stream
        self.progressToken = progressToken
        self.deadline: Optional[float] = None
        self.timeout = 0.0
        self.method = method


class Requests:
    """
    The client requests of one session that its child has not answered:
    by id, by progress token, each with its timeout.

    The timeouts share one timer, set for the earliest deadline, rather
    than one timer made and cancelled for each request: a timer left
    running when its request is answered finds nothing due, and is set
    again only while requests wait.

    @ivar onTimeout: called with a request and its timeout when it is up.
    """

    def __init__(self, clock: Any, onTimeout: Callable[[PendingRequest, float], None]) -> None:
        self.clock = clock
        self.onTimeout = onTimeout
        self.pending: dict[Any, PendingRequest] = {}
        self.progress: dict[Any, PendingRequest] = {}
        self._timer: Optional[IDelayedCall] = None

    def __len__(self) -> int:
        return len(self.pending)

    def check(self, manager: "SessionManager", requests: list[Message]) -> None:
        """
        @raise SessionError: 503 for requests while the bridge drains, 409
            for an id already in flight (or given twice).
        """
        if requests and not manager.accepting:
            raise SessionError(503, jsonrpc.SERVER_UNAVAILABLE,
                               "the bridge is shutting down", retryAfter=5)
        seen = set()
        for m in requests:
            if m.id in self.pending or m.id in seen:
                raise SessionError(
                    409, jsonrpc.INVALID_REQUEST,
                    f"request id {m.id!r} is already in flight in this session", id=m.id)
            seen.add(m.id)

    def track(self, message: Message, stream: Stream, timeout: float) -> PendingRequest:
        pending = PendingRequest(message.id, stream, message.progressToken, message.method or "")
        self.pending[message.id] = pending
        if pending.progressToken is not None:
            self.progress[pending.progressToken] = pending
        if timeout > 0:
            pending.timeout = timeout
            pending.deadline = self.clock.seconds() + timeout
            timer = self._timer
            if timer is None:
                self._timer = self.clock.callLater(timeout, self._expire)
            elif pending.deadline < timer.getTime():
                timer.reset(timeout)  # a shorter timeout since a reload
        return pending

    def _expire(self) -> None:
        self._timer = None
        # A timer may fire a hair before the deadline it was set for.
        now = self.clock.seconds() + 1e-6
        due = [p for p in self.pending.values() if p.deadline is not None and p.deadline <= now]
        for pending in due:
            # One timing out may end others (the session, for initialize).
            if pending.deadline is not None and self.pending.get(pending.id) is pending:
                pending.deadline = None
                self.onTimeout(pending, pending.timeout)
        deadlines = [p.deadline for p in self.pending.values() if p.deadline is not None]
        if deadlines and self._timer is None:
            self._timer = self.clock.callLater(max(0.0, min(deadlines) - self.clock.seconds()),
                                               self._expire)

    def untrack(self, pending: PendingRequest) -> None:
        self.pending.pop(pending.id, None)
        if pending.progressToken is not None:
            self.progress.pop(pending.progressToken, None)
        pending.deadline = None

    def progressed(self, message: Message, timeout: float) -> Optional[PendingRequest]:
        """
        The request a progress notification is for, its clock restarted.
        """
        pending = self.progress.get(message.params.get("progressToken"))
        if pending is not None and pending.deadline is not None:
            pending.deadline = self.clock.seconds() + timeout
        return pending

    def stop(self) -> None:
        """
        Stop the timer (the session has ended).
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class Session:
    """
    One MCP session and its child process.

    @ivar id: the C{Mcp-Session-Id}.
    @ivar protocolVersion: negotiated by C{initialize}.
    @ivar state: C{"starting"}, C{"ready"} or C{"closed"}.
    """

    log = logger("mcpbridge.session")
    transport = "streamable-http"

    def __init__(self, manager: "SessionManager", sessionId: str,
                 child: Optional[ChildProcess] = None) -> None:
        self.manager = manager
        self.config = manager.config
        self.clock = manager.reactor
        self.id = sessionId
        self.protocolVersion = DEFAULT_VERSION
        #: The credential (its digest) the session was made with: no other may use it.
        self.owner: Optional[bytes] = None
        self.state = "starting"
        self.lastActivity = self.clock.seconds()
        self.requests = Requests(self.clock, self._timedOut)
        self.pending = self.requests.pending
        self.serverRequests: dict[Any, Stream] = {}
        self.streams: dict[int, Stream] = {}
        self.getStream: Stream = Stream(self, 0, None)
        self.history = EventHistory(self.config.historyEvents, self.config.historyBytes)
        self.backlog: deque[Message] = deque(maxlen=self.config.backlogMessages)
        self.seq = 0
        self._streamNumbers = 0
        if child is None:
            child = manager.newChild(sessionId)
        child.label = sessionId
        child.onMessage = self.childMessage
        child.onExit = self.childExited
        child.onOversized = self.childOversized
        self.child = child

    # Bookkeeping.

    def nextSeq(self) -> int:
        self.seq += 1
        return self.seq

    def primingEvent(self, stream: int) -> bytes:
        """
        The event that opens an SSE stream: for clients of 2025-11-25 an
        event with an id and no data (so the client can resume even before
        the first message), with the reconnection delay; else nothing.
        """
        if self.protocolVersion in PRIMING_VERSIONS:
            return b"id: %s\nretry: %d\ndata: \n\n" % (
                eventId(stream, self.nextSeq()), self.config.retryMillis)
        return b""

    def event(self, stream: int, data: bytes) -> bytes:
        """
        An SSE event for C{stream}, numbered and kept for resumption.
        """
        seq = self.nextSeq()
        event = encodeEvent(eventId(stream, seq), data)
        self.history.record(stream, seq, event)
        return event

    def touch(self) -> None:
        self.lastActivity = self.manager.lastActivity = self.clock.seconds()

    @property
    def idle(self) -> bool:
        """
        No request in flight and no open stream.
        """
        return not self.pending and next(iter(self.liveConnections()), None) is None

    def liveConnections(self) -> Iterable[Connection]:
        if self.getStream.live:
            assert self.getStream.connection is not None
            yield self.getStream.connection
        for s in self.streams.values():
            if s.live:
                assert s.connection is not None
                yield s.connection

    def _newStream(self, connection: Optional[Connection], ids: Iterable[Any],
                   batch: bool) -> Stream:
        self._streamNumbers += 1
        stream = Stream(self, self._streamNumbers, connection, ids, batch)
        self.streams[stream.number] = stream
        stream.onDone = self._streamDone
        return stream

    def _streamDone(self, stream: Stream) -> None:
        # Its events stay in the history, so a client cut off just before the
        # end can still resume it; only the live bookkeeping goes.
        self.streams.pop(stream.number, None)

    def streamDisconnected(self, stream: Stream) -> None:
        self.touch()

    def pauseFor(self, connection: Connection) -> None:
        """
        A client's stream is full: stop reading the child's stdout until it
        drains, so the bridge never buffers without bound.
        """
        self.child.pauseFor(connection)

    def resumeFor(self, connection: Connection) -> None:
        self.child.resumeFor(connection)

    def _dropSessionHeader(self, stream: Stream) -> None:
        if stream.connection is not None:
            stream.connection.headers.pop(b"mcp-session-id", None)

    # Client to child.

    def initialize(self, message: Message, connection: Connection) -> None:
        """
        Send the client's C{initialize} to the new child; the answer goes
        back on C{connection} with the session id when it succeeds.
        """
        connection.headers[b"mcp-session-id"] = self.id.encode("ascii")
        stream = self._newStream(connection, [message.id], batch=False)
        pending = self.requests.track(message, stream, self.config.startupTimeout)
        requested = message.params.get("protocolVersion")
        if isinstance(requested, str) and requested in SESSION_VERSIONS:
            self.protocolVersion = requested
        if not self.child.send(message):
            self._dropSessionHeader(stream)
            self._fail(pending, 502, jsonrpc.SERVER_UNAVAILABLE,
                       "the MCP server is not running")

    def submit(self, messages: list[Message], connection: Optional[Connection],
               batch: bool) -> Optional[Stream]:
        """
        Forward a POST's messages to the child.

        @return: the stream that will carry the answers, or L{None} when the
            POST held no request (the caller answers 202).
        @raise SessionError: for a request id already in flight.
        """
        self.touch()
        requests = [m for m in messages if m.isRequest]
        self.requests.check(self.manager, requests)
        stream = None
        if requests:
            self._checkStreams()
            stream = self._newStream(connection, [m.id for m in requests], batch)
        for m in messages:
            if m.isRequest:
                assert stream is not None
                self.requests.track(m, stream, self.config.requestTimeout)
            elif m.isResponse:
                self.serverRequests.pop(m.id, None)
            elif m.method == "notifications/cancelled":
                self._clientCancelled(m)
            if not self.child.send(m):
                raise SessionError(404, jsonrpc.SERVER_UNAVAILABLE, "session has ended")
        return stream

    def _checkStreams(self) -> None:
        """
        @raise SessionError: 429 when the session has as many streams open
            as it may.
        """
        limit = self.config.maxStreams
        # Streams (and the GET stream) bound the live connections: count
        # them only when there could be too many.
        if limit and len(self.streams) + 1 >= limit \
                and sum(1 for _ in self.liveConnections()) >= limit:
            raise SessionError(429, jsonrpc.INVALID_REQUEST,
                               f"Too Many Requests: this session has {limit} streams open "
                               f"(see --max-session-streams)", retryAfter=1)

    def _clientCancelled(self, message: Message) -> None:
        requestId = message.params.get("requestId")
        pending = self.pending.get(requestId)
        if pending is not None:
            self.requests.untrack(pending)
            pending.stream.abandon(requestId)

    def _timedOut(self, pending: PendingRequest, timeout: float) -> None:
        if pending.method == "initialize":
            self.log.warn("session {session}: the MCP server did not answer initialize "
                          "within {timeout} s", session=self.id, timeout=timeout)
            self._dropSessionHeader(pending.stream)
            self._fail(pending, 504, jsonrpc.REQUEST_TIMEOUT,
                       f"the MCP server did not answer initialize within {timeout:g} s")
            self.manager.end(self, "startup timeout")
            return
        self.log.warn("session {session}: request {id} ({method}) timed out after {timeout} s",
                      session=self.id, id=pending.id, method=pending.method, timeout=timeout)
        self._fail(pending, 200, jsonrpc.REQUEST_TIMEOUT,
                   f"request timed out after {timeout:g} s without progress")
        self.child.send(jsonrpc.cancelledNotification(
            pending.id, "timed out in the bridge"))

    def _fail(self, pending: PendingRequest, status: int, code: int, message: str) -> None:
        self.requests.untrack(pending)
        pending.stream.respond(pending.id, jsonrpc.errorMessage(pending.id, code, message),
                               status)

    # GET stream and resumption.

    def openGetStream(self, connection: Connection) -> None:
        """
        Make C{connection} the session's GET stream.

        @raise SessionError: 409 when one is already open.
        """
        if self.getStream.live:
            raise SessionError(409, jsonrpc.INVALID_REQUEST,
                               "this session already has an open GET stream")
        self.touch()
        self.getStream.attach(connection)
        connection.startSSE()
        connection.write(self.primingEvent(0))
        self._flushBacklog()

    def resume(self, connection: Connection, stream: int, seq: int) -> None:
        """
        Reconnect a client to stream C{stream}: replay what it missed after
        event C{seq}, then carry on live if the stream has not ended.

        @raise SessionError: 400 for a stream this session never had, or an
            event it never sent (later events would reuse its number).
        """
        if stream > self._streamNumbers:
            raise SessionError(400, jsonrpc.INVALID_REQUEST,
                               "Last-Event-ID names a stream this session never had")
        if seq > self.seq:
            raise SessionError(400, jsonrpc.INVALID_REQUEST,
                               "Last-Event-ID names an event this session never sent")
        self.touch()
        connection.startSSE()
        connection.write(b"")  # the headers go now, even with nothing to replay
        for event in self.history.after(stream, seq):
            connection.write(event)
        target = self.getStream if stream == 0 else self.streams.get(stream)
        if target is None:
            connection.close()  # it ended; the replay was all of it
            return
        target.attach(connection)
        if stream == 0:
            self._flushBacklog()

    def _flushBacklog(self) -> None:
        while self.backlog and self.getStream.live:
            self.getStream.send(self.backlog.popleft())

    # Child to client.

    def childMessage(self, message: Message) -> None:
        if not message.hasMethod:
            if message.hasId:
                pending = self.pending.get(message.id)
                if pending is None:
                    self.log.debug("session {session}: response to unknown or cancelled "
                                   "request {id} dropped", session=self.id, id=message.id)
                    return
                self.requests.untrack(pending)
                if pending.method == "initialize":
                    self._initialized(pending, message)
                    return
                pending.stream.respond(pending.id, message)
            return
        obj = message.obj
        method = obj["method"]
        if "id" in obj:
            stream = self._unlinkedStream(method == "ping")
            if stream is None:
                self.backlog.append(message)
            else:
                self.serverRequests[obj["id"]] = stream
                stream.send(message)
            return
        stream = None
        if method == "notifications/progress":
            pending = self.requests.progressed(message, self.config.requestTimeout)
            if pending is not None:
                stream = pending.stream
        elif method == "notifications/cancelled":
            stream = self.serverRequests.pop(message.params.get("requestId"), None)
        if stream is None:
            stream = self._unlinkedStream(isSessionWide(method))
        if stream is None:
            self.backlog.append(message)
        else:
            stream.send(message)

    def _unlinkedStream(self, preferGet: bool) -> Optional[Stream]:
        if preferGet and self.getStream.live:
            return self.getStream
        if self.pending:
            return next(reversed(self.pending.values())).stream
        if self.getStream.live:
            return self.getStream
        return None

    def _initialized(self, pending: PendingRequest, message: Message) -> None:
        result = message.obj.get("result")
        if not isinstance(result, dict):
            self._dropSessionHeader(pending.stream)
            pending.stream.respond(pending.id, message)
            self.manager.end(self, "initialize failed")
            return
        version = result.get("protocolVersion")
        if isinstance(version, str):
            self.protocolVersion = version
        self.state = "ready"
        self.manager.register(self)
        pending.stream.respond(pending.id, message)
        self.log.info("session {session} started (protocol {version}, pid {pid})",
                      session=self.id, version=self.protocolVersion, pid=self.child.pid)

    def childOversized(self, ident: Any, reason: str) -> None:
        """
        The child's answer to request C{ident} was over the size limit.
        """
        pending = self.pending.get(ident)
        if pending is not None:
            self._fail(pending, 200, jsonrpc.MESSAGE_TOO_LARGE, reason)

    def childExited(self, child: ChildProcess) -> None:
        if self.state == "closed":
            return
        reason = f"the MCP server process {child.exitDescription}"
        status = 502 if self.state == "starting" else 200
        self._close(reason, status)
        self.manager.end(self, reason)

    # Ending.

    def _close(self, reason: str, status: int = 200) -> None:
        starting = self.state == "starting"
        self.state = "closed"
        for pending in list(self.pending.values()):
            if starting:
                self._dropSessionHeader(pending.stream)
            self._fail(pending, status, jsonrpc.CONNECTION_CLOSED, reason)
        self.requests.stop()
        for stream in list(self.streams.values()):
            stream.finish()
        self.getStream.finish()
        self.backlog.clear()

    def terminate(self, reason: str) -> "Deferred[None]":
        """
        End the session: error its pending requests, close its streams and
        stop its child.

        @return: fires when the child and everything it started is gone.
        """
        if self.state != "closed":
            self.log.info("session {session} ending: {reason}", session=self.id, reason=reason)
            self._close(f"session ended: {reason}")
        return self.child.stop()


class SessionManager(Service):
    """
    All sessions of one bridged server: creation, lookup, idle reaping,
    heartbeats and shutdown.
    """

    log = logger("mcpbridge.sessions")

    def __init__(self, command: CommandSpec, config: SessionConfig, reactor: Any,
                 spawn: Callable[..., Any] = spawnGroupLeader,
                 killpg: Optional[Callable[[int, int], None]] = None) -> None:
        self.command = command
        self.config = config
        self.reactor = reactor
        self.spawn = spawn
        self.killpg = killpg if killpg is not None else os.killpg
        self.sessions: dict[str, Session] = {}
        #: Sessions of the HTTP+SSE transport, by id.
        self.legacy: dict[str, LegacySession] = {}
        self.starting: set[Session] = set()
        self.closing: set[Union[Session, LegacySession]] = set()
        self.started = reactor.seconds()
        self.lastError: Optional[str] = None
        #: Whether the last attempt to start a session worked (None: none yet).
        self.lastStartOk: Optional[bool] = None
        self._ticker = Ticker(reactor, self.tick)
        self.spares: list[ChildProcess] = []
        self.draining = False
        #: Why its sessions end when it stops.
        self.stopReason = "the bridge is shutting down"
        self._drainDeadline = 0.0
        self._spareTimer: Any = None
        self._spareFailures = 0
        #: When a session last had a request (see L{_fillSpares}).
        self.lastActivity = 0.0
        #: When a spare was last taken (L{None}: none since the last fill).
        self._lastSpareTaken: Optional[float] = None

    def startService(self) -> None:
        super().startService()
        self._ticker.start()
        self._fillSpares()

    @property
    def accepting(self) -> bool:
        """
        Whether new sessions and requests are taken (not stopped or draining).
        """
        return bool(self.running) and not self.draining

    def drain(self) -> "Deferred[None]":
        """
        Stop taking new sessions and requests (503 with Retry-After), and
        give the requests in flight up to C{drainTimeout} to finish.

        @return: fires when nothing is in flight or the time is up.
        """
        if not self.draining:
            self.draining = True
            self._drainDeadline = self.reactor.seconds() + self.config.drainTimeout
            if self._inFlight():
                self.log.info("draining {count} request(s) in flight (at most {timeout} s)",
                              count=self._inFlight(), timeout=self.config.drainTimeout)
            whenIdle(self.reactor, self._inFlight, self._drainDeadline).addCallback(
                self._drainEnded)
        return whenIdle(self.reactor, self._inFlight, self._drainDeadline).addCallback(
            lambda _: None)

    def _drainEnded(self, left: int) -> None:
        if left:
            self.log.warn("drain timeout: {count} request(s) still in flight", count=left)

    def stopService(self) -> "Deferred[Any]":
        """
        Drain, then end every session and wait until every child and
        everything it started is gone.
        """
        d = self.drain()
        super().stopService()
        if self._spareTimer is not None and self._spareTimer.active():
            self._spareTimer.cancel()
        spares, self.spares = self.spares, []
        ds: list[Deferred[Any]] = [c.stop() for c in spares]

        def endAll(_: Any) -> "Deferred[Any]":
            self._ticker.stop()
            everyone = [*self._live(), *self.starting]
            ends = [s.terminate(self.stopReason) for s in everyone]
            ends += [s.child.whenFinished() for s in list(self.closing)]
            return DeferredList(ends + ds)

        return d.addCallback(endAll)

    def _live(self) -> list[Union[Session, LegacySession]]:
        """
        The sessions that started, of both transports.
        """
        return [*self.sessions.values(), *self.legacy.values()]

    def _inFlight(self) -> int:
        return sum(len(s.pending) for s in self._live()) + len(self.starting)

    def reconfigure(self, command: CommandSpec, config: SessionConfig) -> None:
        """
        Run new sessions with C{command} and C{config}; the sessions that
        exist keep their children and their settings.  Spares of the old
        command are stopped and replaced.
        """
        if command != self.command:
            # What was learnt of the old command says nothing of the new one.
            self.lastStartOk = None
            self.lastError = None
        self.command = command
        self.config = config
        spares, self.spares = self.spares, []
        for child in spares:
            child.stop()
        self._spareFailures = 0
        if self.running:
            self._fillSpares()

    # Children and warm spares.

    def newChild(self, label: str) -> ChildProcess:
        """
        A child process object for the configured command, not yet started.
        """
        return ChildProcess(self.command, self.reactor, label=label,
                            onMessage=lambda m: None, onExit=lambda c: None,
                            spawn=self.spawn, killpg=self.killpg)

    def _fillSpares(self) -> None:
        """
        Start children ahead of demand until C{spares} are ready.

        Spares taken are made up once the sessions have been quiet (no new
        session, no request) for L{SPARE_REFILL_DELAY}: starting a child
        costs the bridge a spawn and the machine an interpreter's start,
        which would slow the requests in flight.  They are made up anyway
        L{SPARE_REFILL_MAX_WAIT} after the last one was taken, and at once
        when none is left.
        """
        self._spareTimer = None
        taken = self._lastSpareTaken
        if taken is not None and self.spares:
            now = self.reactor.seconds()
            wait = self.lastActivity + self.SPARE_REFILL_DELAY - now
            if wait > 0 and now - taken < self.SPARE_REFILL_MAX_WAIT:
                self._spareTimer = self.reactor.callLater(wait, self._fillSpares)
                return
        self._lastSpareTaken = None
        while self.accepting and len(self.spares) < self.config.spares:
            child = self.newChild("spare")
            child.onMessage = self._spareMessage
            child.onExit = self._spareExited
            try:
                child.start()
            except ChildStartError as e:
                self.startFailed(f"cannot start a spare child: {e}")
                self._retrySpares()
                return
            self.spares.append(child)

    def _retrySpares(self) -> None:
        self._spareFailures += 1
        delay = restartDelay(self._spareFailures)
        if self.running and (self._spareTimer is None or not self._spareTimer.active()):
            self._spareTimer = self.reactor.callLater(delay, self._fillSpares)

    def _spareMessage(self, message: Message) -> None:
        self.log.debug("a spare child spoke before any client: {message!r} dropped",
                       message=message.raw[:200])

    def _spareExited(self, child: ChildProcess) -> None:
        if child in self.spares:
            self.spares.remove(child)
            self.startFailed(f"a spare child {child.exitDescription} before use")
            self._retrySpares()

    def _takeSpare(self) -> Optional[ChildProcess]:
        while self.spares:
            child = self.spares.pop(0)
            if child.running:
                self._refillLater()
                return child
        return None

    #: Seconds without a spare taken, and without a request, before the
    #: spares are made up again: starting children costs CPU that a burst
    #: of new sessions, or the requests in flight, need more.
    SPARE_REFILL_DELAY = 0.25
    #: Seconds after the last spare taken when spares are made up even while
    #: requests keep coming.
    SPARE_REFILL_MAX_WAIT = 5.0

    def _refillLater(self) -> None:
        """
        Make the spares up once sessions stop being created and requests
        pause (at once when none is left).
        """
        self._lastSpareTaken = self.reactor.seconds()
        delay = self.SPARE_REFILL_DELAY if self.spares else 0
        if self._spareTimer is not None and self._spareTimer.active():
            self._spareTimer.reset(delay)
        else:
            self._spareTimer = self.reactor.callLater(delay, self._fillSpares)

    # Lookup and creation.

    def get(self, sessionId: str) -> Optional[Session]:
        return self.sessions.get(sessionId)

    def getLegacy(self, sessionId: str) -> Optional[LegacySession]:
        return self.legacy.get(sessionId)

    @property
    def count(self) -> int:
        return len(self.sessions) + len(self.starting) + len(self.legacy)

    def _admit(self) -> None:
        """
        @raise SessionError: 503 while draining or at the session limit.
        """
        if not self.accepting:
            raise SessionError(503, jsonrpc.SERVER_UNAVAILABLE,
                               "the bridge is shutting down", retryAfter=5)
        if self.config.maxSessions and self.count >= self.config.maxSessions:
            raise SessionError(503, jsonrpc.SERVER_UNAVAILABLE,
                               f"too many sessions (limit {self.config.maxSessions})",
                               retryAfter=5)

    def create(self) -> Session:
        """
        Start a new session and its child.

        @raise SessionError: 503 when the session limit is reached, 502 when
            the child cannot be started.
        """
        self._admit()
        session = Session(self, secrets.token_hex(16), self._takeSpare())
        self._startChild(session.child, "a session")
        self.starting.add(session)
        return session

    def _startChild(self, child: ChildProcess, what: str) -> None:
        """
        Start C{child} unless it is a spare that runs already.

        @raise SessionError: 502 when it cannot be started.
        """
        if child.state != "new":
            return
        try:
            child.start()
        except ChildStartError as e:
            self.startFailed(f"cannot start {what}: {e}")
            raise SessionError(502, jsonrpc.SERVER_UNAVAILABLE,
                               f"The MCP server could not be started: {e}") from e

    def createLegacy(self, messagesPath: bytes) -> LegacySession:
        """
        Start a session of the HTTP+SSE transport and its child; it is
        live at once (the client initializes it over the stream).

        @param messagesPath: where its client POSTs messages.
        @raise SessionError: 503 when the session limit is reached, 502 when
            the child cannot be started.
        """
        from .legacy import LegacySession

        self._admit()
        sessionId = secrets.token_hex(16)
        child = self._takeSpare() or self.newChild(sessionId)
        session = LegacySession(self, sessionId, child, messagesPath)
        self._startChild(child, "an SSE session")
        self.legacy[sessionId] = session
        return session

    def register(self, session: Session) -> None:
        self.startedOk()
        self.starting.discard(session)
        self.sessions[session.id] = session

    def startedOk(self) -> None:
        """
        A child answered C{initialize}: the server starts.
        """
        self.lastStartOk = True
        self._spareFailures = 0

    def startFailed(self, reason: str) -> None:
        """
        Remember that a child could not be started (C{/health} says so).
        """
        self.lastError = reason
        self.lastStartOk = False
        self.log.error("{reason}", reason=reason)

    def end(self, session: Union[Session, LegacySession], reason: str) -> "Deferred[None]":
        """
        End a session (DELETE, idle timeout, its child's exit, a failed
        start) and stop its child.  One that ends before it was ready is a
        failed start.

        @return: fires when the child and everything it started is gone.
        """
        if session in self.starting:
            self.starting.discard(session)
            self.startFailed(f"a session failed to start: {reason}")
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
        if self.legacy.get(session.id) is session:
            del self.legacy[session.id]
        self.closing.add(session)
        d = session.terminate(reason)
        d.addBoth(lambda _: self.closing.discard(session))
        return d

    # Periodic work.

    def tick(self) -> None:
        """
        Reap idle sessions and write heartbeat comments on quiet streams.
        """
        now = self.reactor.seconds()
        idleTimeout = self.config.idleTimeout
        beat = self.config.heartbeatInterval
        for session in self._live():
            if idleTimeout > 0 and session.idle and now - session.lastActivity >= idleTimeout:
                self.end(session, f"idle for {idleTimeout:g} s")
                continue
            for conn in session.liveConnections():
                conn.keepAlive(now, beat)

    def status(self) -> dict[str, Any]:
        """
        What C{/health} reports.
        """
        children = [{"session": s.id[:8], "pid": s.child.pid, "state": s.child.state,
                     "session_state": s.state, "transport": s.transport}
                    for s in [*self._live(), *self.starting]]
        return {
            "sessions": len(self.sessions),
            "sse_sessions": len(self.legacy),
            "starting": len(self.starting),
            "closing": len(self.closing),
            "spares": len(self.spares),
            "children": children,
            "last_error": self.lastError,
        }
