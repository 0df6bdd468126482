"""
Response streams, of a session or of one stateless exchange (their owner).

A L{Stream} is where the messages for one POST (or for the session's GET
stream) go.  A POST stream starts undecided: if the first message for it is
the response it waits for, that response goes back as one C{application/json}
body; if anything else comes first, the stream switches to
C{text/event-stream} and carries every message up to the response.

In a session every SSE event has an id C{"<stream>.<seq>"}: unique in the
session and naming its stream, so a client that lost the connection can
resume that stream (and only that one) from the session's L{EventHistory}.
A stateless stream's events carry no id: nothing resumes it.
"""

from __future__ import annotations

import re

from collections import deque
from typing import Any, Callable, Iterable, Optional, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.web.iweb import IRequest
from zope.interface import implementer

from .jsonrpc import Message


class StreamOwner(Protocol):
    """
    What a L{Stream} and its L{Connection} need from whoever owns them: a
    session, or one stateless exchange of the child pool.
    """

    def primingEvent(self, stream: int) -> bytes:
        """The bytes that open an SSE stream (maybe none)."""

    def event(self, stream: int, data: bytes) -> bytes:
        """One SSE event carrying C{data}, recorded for resumption if the owner resumes."""

    def streamDisconnected(self, stream: "Stream") -> None:
        """The client went away from C{stream} before it ended."""

    def pauseFor(self, connection: "Connection") -> None:
        """C{connection}'s socket is full: stop reading what feeds it."""

    def resumeFor(self, connection: "Connection") -> None:
        """C{connection} drained (or ended): reading may go on."""

#: Versions whose clients understand a priming event (empty data, an id).
PRIMING_VERSIONS = frozenset({"2025-11-25"})


def eventId(stream: int, seq: int) -> bytes:
    return b"%d.%d" % (stream, seq)


_DIGITS = re.compile(rb"[0-9]{1,18}")


def parseEventId(value: bytes) -> Optional[tuple[int, int]]:
    """
    Split a C{Last-Event-ID} into (stream, seq), or L{None} if malformed.
    """
    stream, dot, seq = value.strip().partition(b".")
    if not dot or not _DIGITS.fullmatch(stream) or not _DIGITS.fullmatch(seq):
        return None
    return int(stream), int(seq)


def encodeEvent(ident: Optional[bytes], data: bytes) -> bytes:
    """
    One SSE C{message} event, with an id or without.  C{data} is a single
    line of JSON; a body with a carriage return (legal JSON whitespace, but
    a line break in SSE) is split into several C{data:} lines, which the
    client joins back.
    """
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\ndata: ")
    if ident is None:
        return b"".join((b"data: ", data, b"\n\n"))
    return b"".join((b"id: ", ident, b"\ndata: ", data, b"\n\n"))


@implementer(IPushProducer)
class Connection:
    """
    The HTTP response a stream writes to, and the Deferred handed to Klein.

    Klein cancels C{deferred} when the client goes away; the canceller tells
    the stream, which keeps recording events for a later resumption.

    While it streams SSE it is also the response's producer: when the
    client's socket is full, twisted.web pauses it, and it pauses reading
    the child's stdout until the client catches up.
    """

    __slots__ = ("request", "deferred", "open", "sse", "stream", "lastWrite",
                 "headers", "_clock", "owner", "_producing")

    def __init__(self, request: IRequest, clock: Any) -> None:
        # A twisted.web Request: also an IConsumer, which IRequest does not say.
        self.request: Any = request
        self.deferred: Deferred[bytes] = Deferred(self._cancelled)
        self.open = True
        self.sse = False
        self.stream: Optional[Stream] = None
        self.headers: dict[bytes, bytes] = {}
        self._clock = clock
        self.lastWrite = clock.seconds()
        self.owner: Optional[StreamOwner] = None
        self._producing = False

    def _cancelled(self, d: "Deferred[bytes]") -> None:
        if self.open:
            self.open = False
            if self.owner is not None:
                self.owner.resumeFor(self)
            if self.stream is not None:
                self.stream.connectionLost(self)

    # IPushProducer, for back-pressure from the client's socket.

    def pauseProducing(self) -> None:
        if self.open and self.owner is not None:
            self.owner.pauseFor(self)

    def resumeProducing(self) -> None:
        if self.owner is not None:
            self.owner.resumeFor(self)

    def stopProducing(self) -> None:
        self.resumeProducing()

    def respond(self, body: bytes, status: int = 200) -> None:
        """
        Answer with one JSON body and finish.
        """
        if not self.open:
            return
        self.open = False
        req = self.request
        req.setResponseCode(status)
        req.setHeader(b"content-type", b"application/json")
        # Known up front, so the body goes out whole rather than chunked.
        req.setHeader(b"content-length", b"%d" % len(body))
        for k, v in self.headers.items():
            req.setHeader(k, v)
        self.deferred.callback(body)

    def startSSE(self) -> None:
        """
        Send the headers of an event stream.
        """
        self.sse = True
        req = self.request
        req.setResponseCode(200)
        req.setHeader(b"content-type", b"text/event-stream")
        req.setHeader(b"cache-control", b"no-cache")
        req.setHeader(b"x-accel-buffering", b"no")
        for k, v in self.headers.items():
            req.setHeader(k, v)
        if not self._producing:
            self._producing = True
            req.registerProducer(self, True)

    def write(self, data: bytes) -> None:
        if self.open:
            self.lastWrite = self._clock.seconds()
            self.request.write(data)

    def writeMany(self, pieces: list[bytes]) -> None:
        """
        Write C{pieces} in one write to the connection where the request
        can (a L{BridgeRequest}), else one after another.
        """
        if self.open:
            self.lastWrite = self._clock.seconds()
            writeMany = getattr(self.request, "writeMany", None)
            if writeMany is not None:
                writeMany(pieces)
            else:
                for piece in pieces:
                    self.request.write(piece)

    def keepAlive(self, now: float, interval: float) -> None:
        """
        Write an SSE comment when the stream has been quiet for C{interval}
        seconds (0: never), so proxies and clients keep it open.
        """
        if interval > 0 and self.open and self.sse and now - self.lastWrite >= interval:
            self.write(b": keepalive\n\n")

    def close(self) -> None:
        """
        End the response (an SSE stream ends here).
        """
        if self.open:
            self.open = False
            if self._producing:
                self._producing = False
                self.request.unregisterProducer()
            if self.owner is not None:
                self.owner.resumeFor(self)
            self.deferred.callback(b"")


class EventHistory:
    """
    The last events of a session, bounded by count and by bytes, for
    replaying a stream after a client resumes it with C{Last-Event-ID}.
    """

    def __init__(self, maxEvents: int, maxBytes: int) -> None:
        self.maxEvents = maxEvents
        self.maxBytes = maxBytes
        self._events: deque[tuple[int, int, bytes]] = deque()
        self._bytes = 0

    def record(self, stream: int, seq: int, event: bytes) -> None:
        if self.maxEvents <= 0 or len(event) > self.maxBytes:
            return
        self._events.append((stream, seq, event))
        self._bytes += len(event)
        while len(self._events) > self.maxEvents or self._bytes > self.maxBytes:
            self._bytes -= len(self._events.popleft()[2])

    def after(self, stream: int, seq: int) -> list[bytes]:
        """
        The events of C{stream} recorded after C{seq}, oldest first.
        """
        return [e for (s, q, e) in self._events if s == stream and q > seq]


class Stream:
    """
    Where the messages of one POST, or of the session's GET stream, go.

    @ivar number: 0 for the GET stream, then 1, 2, ... per POST.
    @ivar outstanding: ids of the client requests still awaiting a response.
    @ivar connection: the live HTTP response, or L{None} while the client
        is away.
    """

    def __init__(self, owner: StreamOwner, number: int,
                 connection: Optional[Connection], outstanding: Iterable[Any] = (),
                 batch: bool = False) -> None:
        self.owner = owner
        self.number = number
        self.outstanding = set(outstanding)
        self.batch = batch
        self.mode = "pending" if number else "sse"
        self.done = False
        self._buffered: list[bytes] = []
        self.connection: Optional[Connection] = None
        self.onDone: Optional[Callable[["Stream"], None]] = None
        if connection is not None:
            self.attach(connection)

    def attach(self, connection: Connection) -> None:
        """
        Make C{connection} the live response of this stream, replacing any
        previous one.
        """
        old = self.connection
        if old is not None and old is not connection:
            old.stream = None
            old.close()
        self.connection = connection
        connection.stream = self
        connection.owner = self.owner

    def connectionLost(self, connection: Connection) -> None:
        if self.connection is connection:
            self.connection = None
            self.owner.streamDisconnected(self)

    @property
    def live(self) -> bool:
        return self.connection is not None and self.connection.open

    # Sending.

    def send(self, message: Message) -> None:
        """
        Send a message that is not the response to one of this stream's
        requests (a notification, or a server-to-client request).
        """
        if self.done:
            return
        if self.mode == "pending":
            self._buffered.append(message.raw)
            self._startSSE()
            return
        self._event(message.raw)

    def respond(self, requestId: Any, message: Message, status: int = 200) -> None:
        """
        Deliver the response to request C{requestId}; the stream ends once
        every request it carried has its response.
        """
        if self.done:
            return
        self.outstanding.discard(requestId)
        last = not self.outstanding
        if self.mode == "pending":
            if not self.batch:
                self._finishJSON(message.raw, status)
                return
            self._buffered.append(message.raw)
            if last:
                self._finishBatch()
            return
        self._event(message.raw)
        if last:
            self.finish()

    def abandon(self, requestId: Any) -> None:
        """
        Stop waiting for C{requestId} (the client cancelled it).
        """
        self.outstanding.discard(requestId)
        if not self.outstanding and not self.done:
            if self.mode == "pending" and self._buffered:
                self._finishBatch()
            else:
                if self.mode == "pending":
                    self._startSSE()
                self.finish()

    def finish(self) -> None:
        """
        End the stream: no more events, and the HTTP response ends.
        """
        if self.done:
            return
        self.done = True
        if self.connection is not None:
            self.connection.close()
        if self.onDone is not None:
            self.onDone(self)

    # Internals.

    def _finishJSON(self, body: bytes, status: int) -> None:
        self.done = True
        self.mode = "json"
        if self.connection is not None:
            self.connection.respond(body, status)
        if self.onDone is not None:
            self.onDone(self)

    def _finishBatch(self) -> None:
        self._finishJSON(b"[" + b",".join(self._buffered) + b"]", 200)

    def _startSSE(self) -> None:
        self.mode = "sse"
        conn = self.connection
        live = conn is not None and conn.open
        # The headers, the priming event and what waited for the stream
        # leave in one write (headers alone when there is nothing yet).
        events = [self.owner.primingEvent(self.number)] if live else []
        events += [self.owner.event(self.number, raw) for raw in self._buffered]
        self._buffered = []
        if live:
            assert conn is not None
            conn.startSSE()
            conn.writeMany(events)

    def _event(self, data: bytes) -> None:
        event = self.owner.event(self.number, data)
        conn = self.connection
        if conn is not None and conn.open:
            conn.write(event)

