"""
A pool of long-lived children for stateless requests.

Requests of the stateless era (2026-07-28), and of the session era when the
bridge runs with C{--stateless}, carry no session: any ready child can serve
them.  A L{ChildPool} keeps C{size} children started and ready, and hands
each request to the least busy one, several at a time:

 - Every request gets a bridge-assigned integer id on its way to the child
   (clients all start counting at 0 or 1), and so does its progress token;
   both are restored on the way back.  The id is unique in the pool, so a
   message from a child finds its request in one lookup.
 - When the client closes a request's stream before the answer, the child
   gets C{notifications/cancelled} for the bridge's id, and nothing more is
   sent for that request.
 - A child that exits fails its requests at once and is replaced, after a
   delay that doubles with each failure in a row (at most 30 s).
 - C{subscriptions/listen} opens the subscription on every child of the
   pool (any of them may see a change) and keeps it open on replacements;
   the client sees one acknowledgement, and a notification repeated by
   several children within half a second once.

Before a child serves anyone, the bridge speaks to it first: a modern pool
sends C{server/discover} (which also tells whether the server speaks the
stateless era at all), a session-era pool sends C{initialize} and keeps the
result to answer clients' C{initialize} itself.
"""

from __future__ import annotations

import itertools
from functools import partial
import json
from collections import deque
from typing import Any, Callable, Iterable, Optional

import attr
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList

from . import __version__, jsonrpc, modern
from .child import ChildProcess, ChildStartError, CommandSpec
from .jsonrpc import Message
from .logs import logger
from .sessions import SESSION_VERSIONS, SessionError
from .streams import Connection, Stream, encodeEvent
from .timing import Ticker, restartDelay, whenIdle

MODERN = "modern"
SESSION = "session"
_CLIENT_INFO = {"name": "mcpbridge", "version": __version__}
#: What a session-era pool child is told its client can do: the bridge relays
#: these requests to whichever client's call is in flight on that child (a
#: client that cannot serve one answers with an error).
_RELAYED_CAPABILITIES = {"sampling": {}, "elicitation": {}, "roots": {"listChanged": True}}


@attr.s(auto_attribs=True)
class PoolConfig:
    """
    Settings of a pool; seconds unless said otherwise, 0 disables a timeout.
    """

    size: int = 2
    concurrency: int = 16
    queue: int = 256
    requestTimeout: float = 600.0
    startupTimeout: float = 30.0
    heartbeatInterval: float = 15.0
    drainTimeout: float = 10.0
    repeatWindow: float = 0.5


class _Call:
    """
    One request served by the pool: a client's, or the bridge's own.

    @ivar legs: child → the bridge's id for this request at that child (a
        listen has one per child, anything else at most one).
    """

    __slots__ = ("clientId", "message", "method", "exchange", "legs", "progressToken",
                 "timer", "logLevel", "listen", "acked", "recent", "onAnswer", "paramHeaders",
                 "done", "serverRequests")

    def __init__(self, message: Message, exchange: Optional["_Exchange"],
                 onAnswer: Optional[Callable[[Message], None]] = None,
                 paramHeaders: Optional[dict[str, list[str]]] = None) -> None:
        self.clientId = message.id
        self.message = message
        self.method = message.method or ""
        self.exchange = exchange
        self.legs: dict[_Member, int] = {}
        self.progressToken = message.progressToken
        self.timer: Any = None
        self.logLevel = modern.logLevelOf(message)
        self.listen = self.method == "subscriptions/listen"
        self.acked = False
        self.recent: dict[str, float] = {}
        self.onAnswer = onAnswer
        self.paramHeaders = paramHeaders or {}
        self.done = False
        self.serverRequests: list[int] = []

    def send(self, message: Message) -> None:
        if self.exchange is not None and not self.done:
            self.exchange.stream.send(message)


class _Exchange:
    """
    One POST served by the pool, and the owner of its response stream.

    Its events carry no ids: nothing resumes a stateless stream.  When the
    client goes away before the answer, its requests are cancelled.
    """

    def __init__(self, pool: "ChildPool", connection: Connection, ids: Iterable[Any],
                 batch: bool) -> None:
        self.pool = pool
        self.calls: dict[Any, _Call] = {}
        self.stream = Stream(self, 1, connection, ids, batch)
        self.stream.onDone = self._done

    def _done(self, stream: Stream) -> None:
        self.pool.exchanges.discard(self)

    def primingEvent(self, stream: int) -> bytes:
        return b""

    def event(self, stream: int, data: bytes) -> bytes:
        return encodeEvent(None, data)

    def streamDisconnected(self, stream: Stream) -> None:
        self.pool.abandon(self)

    def pauseFor(self, connection: Connection) -> None:
        # A subscription spans every child and carries little: a client slow
        # to read one must not stall the whole pool.
        for call in self.calls.values():
            if not call.listen:
                for member in call.legs:
                    member.child.pauseFor(connection)

    def resumeFor(self, connection: Connection) -> None:
        for member in self.pool.members:
            member.child.resumeFor(connection)


class _Member:
    """
    One child of the pool.

    @ivar state: C{"starting"} (the bridge's first request is out),
        C{"ready"} or C{"gone"}.
    @ivar calls: the bridge's id → the request it stands for.
    """

    def __init__(self, child: ChildProcess) -> None:
        self.child = child
        self.state = "starting"
        self.calls: dict[int, _Call] = {}
        self.load = 0
        self.logCalls = 0

    def newest(self) -> Optional[_Call]:
        """
        The most recent request in flight that is not a subscription.
        """
        for call in reversed(self.calls.values()):
            if not call.listen and call.exchange is not None:
                return call
        return None


class ChildPool(Service):
    """
    Long-lived children serving stateless requests of one era.

    @ivar era: L{MODERN} (2026-07-28) or L{SESSION} (C{--stateless}).
    @ivar speaks: for a modern pool, whether the server speaks the stateless
        era (L{None} until its first child answered C{server/discover}).
    @ivar versions: the versions clients may use through this pool.
    """

    log = logger("mcpbridge.pool")

    def __init__(self, era: str, command: CommandSpec, config: PoolConfig, reactor: Any,
                 spawn: Callable[..., Any], killpg: Callable[[int, int], None]) -> None:
        self.era = era
        self.command = command
        self.config = config
        self.reactor = reactor
        self.spawn = spawn
        self.killpg = killpg
        self.members: list[_Member] = []
        self.waiting: deque[_Call] = deque()
        self.listens: set[_Call] = set()
        self.exchanges: set[_Exchange] = set()
        self.serverRequests: dict[int, tuple[_Member, Any, _Call]] = {}
        self.speaks: Optional[bool] = True if era == SESSION else (
            None if config.size else False)
        self.versions: tuple[str, ...] = modern.MODERN_VERSIONS if era == MODERN else ()
        self.sessionVersions: tuple[str, ...] = SESSION_VERSIONS
        self.initializeResult: Optional[dict[str, Any]] = None
        self.lastError: Optional[str] = None
        self.lastStartOk: Optional[bool] = None
        self.draining = False
        self._ids = itertools.count(1)
        self._failures = 0
        self._retry: Any = None
        self._ticker = Ticker(reactor, self.tick)
        self._tools: Optional[dict[str, Any]] = None
        self._toolsExpire = 0.0
        self._toolsWaiting: Optional[list[_Call]] = None
        self._initWaiters: list[tuple[Message, Connection]] = []
        self._pumping = False
        self._pumpAgain = False
        self._retiring: set[Deferred[None]] = set()

    # Service.

    def startService(self) -> None:
        super().startService()
        self._ticker.start()
        self._fill()

    @property
    def accepting(self) -> bool:
        return bool(self.running) and not self.draining

    def inFlight(self) -> int:
        """
        Client requests waiting or in flight, subscriptions aside.
        """
        busy = sum(m.load for m in self.members)
        return busy + sum(1 for c in self.waiting if c.exchange is not None)

    def drain(self) -> "Deferred[None]":
        """
        Take no new requests; fires when none is in flight or after
        C{drainTimeout}.  Open subscriptions do not hold it up.
        """
        self.draining = True
        deadline = self.reactor.seconds() + self.config.drainTimeout
        return whenIdle(self.reactor, self.inFlight, deadline).addCallback(lambda _: None)

    def stopService(self) -> "Deferred[Any]":
        super().stopService()
        self.draining = True
        self._ticker.stop()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        members, self.members = self.members, []
        for call in list(self.waiting):
            self._fail(call, 503, jsonrpc.SERVER_UNAVAILABLE, "the bridge is shutting down")
        for listen in list(self.listens):
            self._finishListen(listen)
        stops: list[Deferred[Any]] = list(self._retiring)
        for member in members:
            self._memberGone(member, "the bridge is shutting down")
            stops.append(member.child.stop())
        return DeferredList(stops)

    # Children.

    def _target(self) -> int:
        if self.speaks is False:
            return 0
        if self.speaks is None:
            return 1  # the first child tells whether the server speaks this era
        return self.config.size

    def _fill(self) -> None:
        self._retry = None
        while self.accepting and len(self.members) < self._target():
            child = ChildProcess(self.command, self.reactor, label=f"pool-{self.era}",
                                 onMessage=lambda m: None, onExit=lambda c: None,
                                 spawn=self.spawn, killpg=self.killpg)
            member = _Member(child)
            child.onMessage = partial(self._fromChild, member)
            child.onExit = partial(self._exited, member)
            child.onOversized = partial(self._oversized, member)
            try:
                child.start()
            except ChildStartError as e:
                self._startFailed(f"cannot start a pool child: {e}")
                self._scheduleFill()
                return
            self.members.append(member)
            self._greet(member)

    def _greet(self, member: _Member) -> None:
        """
        The bridge's first request to a new child.
        """
        if self.era == MODERN:
            message = self._own("server/discover", {})
        else:
            message = Message.fromObject({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": SESSION_VERSIONS[0],
                           "capabilities": _RELAYED_CAPABILITIES,
                           "clientInfo": _CLIENT_INFO}})
        call = _Call(message, None, lambda answer: self._greeted(member, answer))
        self._startTimer(call, self.config.startupTimeout)
        self._send(member, call)

    def _own(self, method: str, params: dict[str, Any]) -> Message:
        """
        A stateless request of the bridge's own.
        """
        version = self.versions[0] if self.versions else modern.MODERN_VERSIONS[0]
        meta = {modern.PROTOCOL_VERSION: version, modern.CLIENT_CAPABILITIES: {},
                modern.CLIENT_INFO: _CLIENT_INFO}
        return Message.fromObject({"jsonrpc": "2.0", "id": 0, "method": method,
                                   "params": dict(params, _meta=meta)})

    def _greeted(self, member: _Member, answer: Message) -> None:
        if member.state != "starting":
            return
        result = answer.obj.get("result")
        if self.era == SESSION:
            if not isinstance(result, dict):
                self._refused(member, f"the MCP server refused initialize: {_errorText(answer)}")
                return
            if self.initializeResult is None:
                self.initializeResult = result
                self.log.info("stateless session-era pool: the server speaks {version}",
                              version=result.get("protocolVersion"))
            member.child.send(Message.fromObject(
                {"jsonrpc": "2.0", "method": "notifications/initialized"}))
            self._ready(member)
            self._answerInitialize()
            return
        supported = result.get("supportedVersions") if isinstance(result, dict) else None
        versions = tuple(v for v in modern.MODERN_VERSIONS
                         if isinstance(supported, list) and v in supported)
        if versions:
            if self.speaks is None:
                self.speaks, self.versions = True, versions
                self.log.info("the MCP server speaks the stateless era ({versions}); "
                              "{size} pool child(ren)", versions=", ".join(versions),
                              size=self.config.size)
            self._ready(member)
            self._fill()
            return
        if self.speaks:
            self._refused(member, "a pool child did not answer server/discover: "
                          + _errorText(answer))
            return
        self._learnSessionVersions(member, answer)

    def _learnSessionVersions(self, member: _Member, answer: Message) -> None:
        """
        The server does not speak the stateless era: ask the same child
        which session-era version it speaks, so stateless clients can be
        told what to fall back to, and let it go.
        """
        self.log.info("the MCP server does not speak the stateless era (server/discover: "
                      "{answer}); stateless requests get -32022 with its session versions",
                      answer=_errorText(answer))
        member.state = "probing"
        hello = Message.fromObject({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": SESSION_VERSIONS[0], "capabilities": {},
                       "clientInfo": _CLIENT_INFO}})

        def learnt(reply: Message) -> None:
            result = reply.obj.get("result")
            version = result.get("protocolVersion") if isinstance(result, dict) else None
            if version in SESSION_VERSIONS:
                self.sessionVersions = SESSION_VERSIONS[SESSION_VERSIONS.index(version):]
            self.speaks = False
            self._retire(member)
            self._pump()

        call = _Call(hello, None, learnt)
        self._startTimer(call, self.config.startupTimeout)
        self._send(member, call)

    def _ready(self, member: _Member) -> None:
        member.state = "ready"
        self._failures = 0
        self.lastStartOk = True
        for listen in self.listens:
            self._attach(listen, member)
        self._pump()

    def _refused(self, member: _Member, reason: str) -> None:
        self._startFailed(reason)
        self._retire(member)
        self._answerInitialize()

    def _retire(self, member: _Member) -> None:
        """
        Stop a child the pool no longer uses (it may still be running).
        """
        if member in self.members:
            self.members.remove(member)
        self._memberGone(member, "the MCP server child was stopped")
        member.child.onExit = lambda c: None
        stopping = member.child.stop()
        self._retiring.add(stopping)
        stopping.addBoth(lambda _: self._retiring.discard(stopping))
        self._scheduleFill()

    def _exited(self, member: _Member, child: Optional[ChildProcess] = None) -> None:
        if member not in self.members:
            return
        self.members.remove(member)
        reason = f"the MCP server process {member.child.exitDescription}"
        if member.state != "ready":
            self._startFailed(f"a pool child failed to start: {reason}")
            if not any(m.state in ("ready", "starting") for m in self.members):
                for call in list(self.waiting):
                    if call.exchange is not None or call.onAnswer is not None:
                        self._fail(call, 502, jsonrpc.SERVER_UNAVAILABLE,
                                   f"The MCP server could not be started: {reason}")
        else:
            self.log.warn("pool child {pid} ended: {reason}", pid=member.child.pid,
                          reason=reason)
        self._memberGone(member, reason)
        self._scheduleFill()
        self._answerInitialize()

    def _memberGone(self, member: _Member, reason: str) -> None:
        """
        Fail what a child had in flight; subscriptions lose only this leg.
        """
        member.state = "gone"
        for ident, call in list(member.calls.items()):
            if call.listen:
                call.legs.pop(member, None)
                member.calls.pop(ident, None)
                continue
            status = 502 if call.exchange is not None and call.exchange.stream.mode == "pending" \
                else 200
            self._fail(call, status, jsonrpc.CONNECTION_CLOSED, reason)
        for ident, (owner, _, _) in list(self.serverRequests.items()):
            if owner is member:
                del self.serverRequests[ident]

    def _startFailed(self, reason: str) -> None:
        self.lastError = reason
        self.lastStartOk = False
        self._failures += 1
        self.log.error("{reason}", reason=reason)

    def _scheduleFill(self) -> None:
        if not self.accepting or (self._retry is not None and self._retry.active()):
            return
        delay = restartDelay(self._failures) if self._failures else 0.0
        self._retry = self.reactor.callLater(delay, self._fill)

    # Sending to children.

    def _startTimer(self, call: _Call, timeout: float) -> None:
        if timeout > 0:
            call.timer = self.reactor.callLater(timeout, self._timedOut, call, timeout)

    def _send(self, member: _Member, call: _Call) -> None:
        """
        Give C{call} to C{member}, under a new id of the bridge's.
        """
        ident = next(self._ids)
        call.legs[member] = ident
        member.calls[ident] = call
        if not call.listen:
            member.load += 1
            if call.logLevel is not None:
                member.logCalls += 1
        obj = dict(call.message.obj)
        obj["id"] = ident
        if call.progressToken is not None:
            params = dict(obj["params"])
            params["_meta"] = dict(params["_meta"], progressToken=ident)
            obj["params"] = params
        member.child.send(Message.fromObject(obj))

    def _release(self, call: _Call) -> None:
        """
        Forget C{call} everywhere (it is answered, failed or cancelled).
        """
        call.done = True
        for member, ident in call.legs.items():
            member.calls.pop(ident, None)
            if not call.listen:
                member.load -= 1
                if call.logLevel is not None:
                    member.logCalls -= 1
        if call.timer is not None and call.timer.active():
            call.timer.cancel()
        call.timer = None
        for ident in call.serverRequests:
            self.serverRequests.pop(ident, None)
        self.listens.discard(call)
        if not call.legs and call in self.waiting:  # never sent: it may still wait
            self.waiting.remove(call)
        if call.exchange is not None:
            call.exchange.calls.pop(call.clientId, None)

    def _cancelLegs(self, call: _Call, reason: str) -> None:
        for member, ident in call.legs.items():
            if member.state != "gone":
                member.child.send(jsonrpc.cancelledNotification(ident, reason))

    def _answer(self, call: _Call, message: Message) -> None:
        """
        Deliver the answer to C{call} (with the client's id) and end it.
        """
        self._release(call)
        if call.onAnswer is not None:
            call.onAnswer(message)
        elif call.exchange is not None:
            answer = jsonrpc.withId(message, call.clientId)
            status = modern.statusOf(answer) if self.era == MODERN else 200
            call.exchange.stream.respond(call.clientId, answer, status)
        self._pump()

    def _fail(self, call: _Call, status: int, code: int, text: str, data: Any = None) -> None:
        error = jsonrpc.errorMessage(call.clientId, code, text, data)
        self._release(call)
        if call.onAnswer is not None:
            call.onAnswer(error)
        elif call.exchange is not None:
            call.exchange.stream.respond(call.clientId, error, status)
        self._pump()

    def _timedOut(self, call: _Call, timeout: float) -> None:
        call.timer = None
        self.log.warn("stateless request {method} timed out after {timeout} s",
                      method=call.method, timeout=timeout)
        self._cancelLegs(call, "timed out in the bridge")
        self._fail(call, 200 if call.legs else 504, jsonrpc.REQUEST_TIMEOUT,
                   f"request timed out after {timeout:g} s without progress")

    # Requests from clients.

    def submit(self, messages: list[Message], connection: Optional[Connection], batch: bool,
               paramHeaders: Optional[dict[str, list[str]]] = None) -> Optional[Stream]:
        """
        Serve a POST's messages.

        @return: the stream that will carry the answers, or L{None} when the
            POST held no request (the caller answers 202).
        @raise SessionError: 503 while the bridge stops or the queue is full.
        """
        requests = [m for m in messages if m.isRequest]
        for m in messages:
            if m.isResponse:
                self._clientResponse(m)
            elif not m.isRequest:
                self._clientNotification(m)
        if not requests:
            return None
        assert connection is not None
        if not self.accepting:
            raise SessionError(503, jsonrpc.SERVER_UNAVAILABLE, "the bridge is shutting down",
                               retryAfter=5)
        ids = [m.id for m in requests]
        if len(set(map(json.dumps, ids))) != len(ids):
            raise SessionError(400, jsonrpc.INVALID_REQUEST,
                               "Invalid Request: a batch repeats a request id")
        if len(self.waiting) + len(requests) > self.config.queue:
            raise SessionError(503, jsonrpc.SERVER_UNAVAILABLE,
                               f"too many requests waiting for the MCP server "
                               f"(limit {self.config.queue})", retryAfter=1)
        if not self.members and self.speaks is not False:
            wait = self._retry.getTime() - self.reactor.seconds() \
                if self._retry is not None and self._retry.active() else 1
            raise SessionError(503, jsonrpc.SERVER_UNAVAILABLE,
                               f"the MCP server is not running: {self.lastError}",
                               retryAfter=max(1, int(wait + 0.999)))
        exchange = _Exchange(self, connection, ids, batch)
        self.exchanges.add(exchange)
        for m in requests:
            call = _Call(m, exchange, paramHeaders=paramHeaders)
            exchange.calls[m.id] = call
            if not call.listen:
                self._startTimer(call, self.config.requestTimeout)
            self.waiting.append(call)
        self._pump()
        return exchange.stream

    def abandon(self, exchange: _Exchange) -> None:
        """
        The client closed the stream of C{exchange}: cancel what it asked.
        """
        for call in list(exchange.calls.values()):
            self._cancelLegs(call, "the client closed the request's stream")
            self._release(call)
        exchange.stream.finish()
        self._pump()

    def _clientResponse(self, message: Message) -> None:
        """
        A client's answer to a server-to-client request (session era only).
        """
        route = self.serverRequests.pop(message.id, None) if isinstance(message.id, int) \
            else None
        if route is None:
            self.log.debug("answer to unknown server request {id} dropped", id=message.id)
            return
        member, original, call = route
        if message.id in call.serverRequests:
            call.serverRequests.remove(message.id)
        member.child.send(jsonrpc.withId(message, original))

    def _clientNotification(self, message: Message) -> None:
        method = message.method
        if self.era == MODERN or method in ("notifications/initialized",
                                            "notifications/cancelled"):
            # Nothing names which request a stateless client cancels: closing
            # the request's stream is how it cancels.
            return
        for member in self.members:
            if member.state == "ready":
                member.child.send(message)

    def initialize(self, message: Message, connection: Connection) -> None:
        """
        Answer a session-era C{initialize} without a session, from what the
        pool's children answered the bridge.
        """
        if not self.accepting:
            raise SessionError(503, jsonrpc.SERVER_UNAVAILABLE, "the bridge is shutting down",
                               retryAfter=5, id=message.id)
        self._initWaiters.append((message, connection))
        self._answerInitialize()

    def _answerInitialize(self) -> None:
        if self.initializeResult is None:
            if self.lastStartOk is False and not any(m.state == "starting"
                                                     for m in self.members):
                waiters, self._initWaiters = self._initWaiters, []
                for message, connection in waiters:
                    connection.respond(jsonrpc.dumps(jsonrpc.errorResponse(
                        message.id, jsonrpc.SERVER_UNAVAILABLE,
                        f"The MCP server could not be started: {self.lastError}")), 502)
            return
        waiters, self._initWaiters = self._initWaiters, []
        for message, connection in waiters:
            result = dict(self.initializeResult)
            served = result.get("protocolVersion")
            asked = message.params.get("protocolVersion")
            if (asked in SESSION_VERSIONS and served in SESSION_VERSIONS
                    and SESSION_VERSIONS.index(asked) > SESSION_VERSIONS.index(served)):
                result["protocolVersion"] = asked
            connection.respond(jsonrpc.dumps({"jsonrpc": "2.0", "id": message.id,
                                              "result": result}))

    # Dispatch.

    def _pump(self) -> None:
        """
        Hand waiting requests to children with room, oldest first.
        """
        if self._pumping:
            self._pumpAgain = True
            return
        self._pumping = True
        try:
            self._pumpAgain = True
            while self._pumpAgain:
                self._pumpAgain = False
                while self.waiting:
                    call = self.waiting[0]
                    if call.done:  # cancelled while it waited for the tool schemas
                        self.waiting.popleft()
                        continue
                    try:
                        admitted = self._admit(call)
                    except Exception:
                        # Never let one request wedge the queue behind it.
                        self.log.failure("serving stateless request {method}",
                                         method=call.method)
                        self._fail(call, 500, jsonrpc.INTERNAL_ERROR,
                                   "mcpbridge failed to serve this request")
                        continue
                    if not admitted:
                        break
                    if self.waiting and self.waiting[0] is call:
                        self.waiting.popleft()
        finally:
            self._pumping = False

    def _admit(self, call: _Call) -> bool:
        """
        Serve, refuse or hold C{call}.

        @return: L{False} when it has to wait for room (and so does every
            request behind it).
        """
        if self.era == MODERN and call.exchange is not None:
            if self.speaks is None:
                return False
            if self._refuse(call):
                return True
            if self._needsTools(call):
                self.waiting.popleft()
                if self._toolsWaiting is None:
                    self._toolsWaiting = [call]
                    self._fetchTools()
                else:
                    self._toolsWaiting.append(call)
                return True
        if call.listen:
            ready = [m for m in self.members if m.state == "ready"]
            if not ready:
                return False
            self.listens.add(call)
            for member in ready:
                self._attach(call, member)
            return True
        chosen = self._choose(call)
        if chosen is None:
            return False
        self._send(chosen, call)
        return True

    def _refuse(self, call: _Call) -> bool:
        """
        Answer C{call} with an error when the server cannot serve it.
        """
        requested = modern.envelope(call.message.obj) or {}
        version = requested.get(modern.PROTOCOL_VERSION)
        if not self.speaks or version not in self.versions:
            supported = list(self.versions) if self.speaks else list(self.sessionVersions)
            self._fail(call, 400, jsonrpc.UNSUPPORTED_VERSION,
                       f"Unsupported protocol version {version!r}; the server supports "
                       f"{', '.join(supported)}",
                       {"supported": supported, "requested": version})
            return True
        removed = modern.removedMethod(call.message)
        if removed is not None:
            self._fail(call, removed.status, removed.code, removed.message, removed.data)
            return True
        if call.method == "tools/call" and self._tools is not None \
                and self.reactor.seconds() < self._toolsExpire:
            tool = self._tools.get(str(call.message.params.get("name")))
            if tool is not None:
                problem = modern.checkParamHeaders(tool, call.message.params.get("arguments"),
                                                   call.paramHeaders)
                if problem is not None:
                    self._fail(call, 400, jsonrpc.HEADER_MISMATCH, f"Bad Request: {problem}")
                    return True
        return False

    def _needsTools(self, call: _Call) -> bool:
        """
        Whether C{call} must wait for the tools' input schemas to check its
        C{Mcp-Param-*} headers.
        """
        if call.method != "tools/call":
            return False
        if not call.message.params.get("arguments") and not call.paramHeaders:
            return False
        return self._tools is None or self.reactor.seconds() >= self._toolsExpire

    def _fetchTools(self) -> None:
        """
        Learn the tools' input schemas (every page of C{tools/list}).
        """
        schemas: dict[str, Any] = {}
        pages = [0]

        def page(answer: Message) -> None:
            result = answer.obj.get("result")
            if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
                self.log.warn("cannot check Mcp-Param-* headers: tools/list failed: {why}",
                              why=_errorText(answer))
                done({}, 5.0)
                return
            for tool in result["tools"]:
                if isinstance(tool, dict) and isinstance(tool.get("name"), str):
                    schemas[tool["name"]] = tool.get("inputSchema")
            cursor = result.get("nextCursor")
            pages[0] += 1
            if isinstance(cursor, str) and cursor and pages[0] < 20:
                ask({"cursor": cursor})
                return
            ttl = result.get("ttlMs")
            lifetime = ttl / 1000.0 if isinstance(ttl, int) and ttl > 0 else 30.0
            done(schemas, min(300.0, max(1.0, lifetime)))

        def done(found: dict[str, Any], lifetime: float) -> None:
            self._tools = found
            self._toolsExpire = self.reactor.seconds() + lifetime
            waiting, self._toolsWaiting = self._toolsWaiting or [], None
            self.waiting.extendleft(reversed(waiting))

        def ask(params: dict[str, Any]) -> None:
            self.waiting.appendleft(_Call(self._own("tools/list", params), None, page))
            self._pump()

        ask({})

    def _choose(self, call: _Call) -> Optional[_Member]:
        """
        The ready child with the fewest requests in flight and room for one
        more; a request that asked for log messages prefers a child where
        no other does (log messages name no request).
        """
        best: Optional[_Member] = None
        bestKey: Any = None
        for member in self.members:
            if member.state != "ready" or member.load >= self.config.concurrency:
                continue
            key = (call.logLevel is not None and member.logCalls > 0, member.load)
            if best is None or key < bestKey:
                best, bestKey = member, key
        return best

    # Subscriptions.

    def _attach(self, listen: _Call, member: _Member) -> None:
        if member not in listen.legs and member.state == "ready":
            self._send(member, listen)

    def _listenNotification(self, listen: _Call, member: _Member, message: Message) -> None:
        method = message.method
        if method == "notifications/subscriptions/acknowledged":
            if listen.acked:
                return
            listen.acked = True
        else:
            params = dict(message.params)
            params.pop("_meta", None)
            key = f"{method} {json.dumps(params, sort_keys=True)}"
            now = self.reactor.seconds()
            seen = listen.recent.get(key)
            if seen is not None and now - seen < self.config.repeatWindow:
                return
            listen.recent = {k: t for k, t in listen.recent.items()
                             if now - t < self.config.repeatWindow}
            listen.recent[key] = now
        listen.send(_retagged(message, listen.clientId))

    def _listenAnswered(self, listen: _Call, member: _Member, message: Message) -> None:
        """
        A child ended its part of a subscription; the client's ends when
        the first answer is an error, or when no child still carries it.
        """
        ident = listen.legs.pop(member, None)
        if ident is not None:
            member.calls.pop(ident, None)
        if listen.acked and listen.legs:
            return
        self._cancelLegs(listen, "the subscription ended")
        self._answer(listen, message)

    def _finishListen(self, listen: _Call) -> None:
        self._cancelLegs(listen, "the bridge is shutting down")
        self._release(listen)
        if listen.exchange is not None:
            listen.exchange.stream.finish()

    # Messages from children.

    def _fromChild(self, member: _Member, message: Message) -> None:
        obj = message.obj
        method = obj.get("method")
        if method is None:
            call = member.calls.get(obj.get("id"))  # type: ignore[arg-type]
            if call is None:
                self.log.debug("pool: answer to unknown or cancelled request {id} dropped",
                               id=obj.get("id"))
            elif call.listen:
                self._listenAnswered(call, member, message)
            else:
                self._answer(call, message)
            return
        if "id" in obj:
            self._serverRequest(member, message)
            return
        params = message.params
        if method == "notifications/tools/list_changed":
            self._tools = None
        if method == "notifications/progress":
            call = member.calls.get(params.get("progressToken"))  # type: ignore[arg-type]
            if call is not None and call.progressToken is not None:
                if call.timer is not None and call.timer.active():
                    call.timer.reset(self.config.requestTimeout)
                call.send(_withProgressToken(message, call.progressToken))
            return
        meta = params.get("_meta")
        if isinstance(meta, dict) and modern.SUBSCRIPTION_ID in meta:
            call = member.calls.get(meta[modern.SUBSCRIPTION_ID])
            if call is not None and call.listen:
                self._listenNotification(call, member, message)
            return
        if self.era == MODERN:
            if method == "notifications/message":
                self._log(member, message)
            else:
                self.log.debug("pool: notification {method} names no request; dropped",
                               method=method)
            return
        call = member.newest()
        if call is not None:
            call.send(message)

    def _log(self, member: _Member, message: Message) -> None:
        """
        A stateless log message goes only to a request that asked for its
        level; when several on that child did, nobody can tell which, so
        it goes nowhere.
        """
        level = message.params.get("level")
        rank = modern.LOG_LEVELS.index(level) if level in modern.LOG_LEVELS else None
        askers = [c for c in member.calls.values()
                  if not c.listen and c.logLevel is not None
                  and (rank is None or rank >= c.logLevel)]
        if len(askers) == 1:
            askers[0].send(message)

    def _serverRequest(self, member: _Member, message: Message) -> None:
        call = member.newest() if self.era == SESSION else None
        if call is None:
            why = ("server-to-client requests do not exist in the stateless era"
                   if self.era == MODERN else "no client request is in flight to ask")
            member.child.send(jsonrpc.errorMessage(message.id, jsonrpc.METHOD_NOT_FOUND,
                                                   f"mcpbridge: {why}"))
            return
        ident = next(self._ids)
        self.serverRequests[ident] = (member, message.id, call)
        call.serverRequests.append(ident)
        call.send(Message.fromObject(dict(message.obj, id=ident)))

    def _oversized(self, member: _Member, ident: Any, reason: str) -> None:
        call = member.calls.get(ident)
        if call is not None:
            self._fail(call, 200, jsonrpc.MESSAGE_TOO_LARGE, reason)

    # Periodic work and reporting.

    def tick(self) -> None:
        now = self.reactor.seconds()
        for exchange in list(self.exchanges):
            if exchange.stream.connection is not None:
                exchange.stream.connection.keepAlive(now, self.config.heartbeatInterval)

    def status(self) -> dict[str, Any]:
        return {
            "speaks": self.speaks,
            "versions": list(self.versions) if self.speaks else list(self.sessionVersions),
            "children": [{"pid": m.child.pid, "state": m.state, "load": m.load}
                         for m in self.members],
            "waiting": len(self.waiting),
            "subscriptions": len(self.listens),
            "last_error": self.lastError,
        }


def _errorText(message: Message) -> str:
    error = message.obj.get("error")
    if isinstance(error, dict):
        return f"{error.get('code')} {error.get('message')}"
    return "no result"


def _retagged(message: Message, subscriptionId: Any) -> Message:
    obj = dict(message.obj)
    params = dict(obj["params"])
    params["_meta"] = dict(params["_meta"], **{modern.SUBSCRIPTION_ID: subscriptionId})
    obj["params"] = params
    return Message.fromObject(obj)


def _withProgressToken(message: Message, token: Any) -> Message:
    obj = dict(message.obj)
    obj["params"] = dict(obj["params"], progressToken=token)
    return Message.fromObject(obj)
