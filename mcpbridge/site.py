"""
The HTTP server the bridge's resource runs in: a L{Site} whose connections
cannot be held open by slow or silent clients, whose request bodies are
bounded, and whose access log is a debug event.

Twisted's own idle timeout restarts on every byte received, so a client
that sends a request one byte at a time ("slowloris") keeps its connection
for ever.  L{BridgeChannel} adds a deadline for the whole request instead:
from the connection's start, or from the first byte of a request on a
kept-alive connection, the request line, headers and body must all arrive
within C{readTimeout} seconds.  Once a request is being served (an SSE
stream may last hours) no timeout applies; between requests the idle
(keep-alive) timeout does.

A body larger than C{maxBodySize} is not kept: L{BridgeRequest} reads and
drops the rest, and the resource answers 413 once the request is whole
(so the client reads a proper answer instead of a reset connection).
"""

from __future__ import annotations

import re
import time
import warnings
from functools import lru_cache
from io import BytesIO
from typing import Any, Optional

from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES, RESPONSES, HTTPChannel, datetimeToString
from twisted.web.iweb import INonQueuedRequestFactory, IRequest
from twisted.web.http_headers import Headers
from twisted.web.resource import _IEncodingResource
from twisted.web.error import UnsupportedMethod
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.server import version as serverVersion
from zope.interface import implementer

from .eager import socketSender, writeEagerly
from .logs import debugEnabled, logger

log = logger("mcpbridge.http")

#: The answer to a request that did not arrive in time.
_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\n"
              b"Content-Type: text/plain; charset=utf-8\r\n"
              b"Content-Length: 37\r\n"
              b"Connection: close\r\n\r\n"
              b"the request did not arrive in time.\r\n")

#: An RFC 9110 token: a method or a header name.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"

#: The head of an HTTP/1.1 request, checked as twisted.web's parser checks
#: it: a token method, a target of printable ASCII, header names that are
#: tokens, values without NUL, CR or LF; no folded lines.  Groups: method,
#: target, version, header lines.
_WHOLE_HEAD = re.compile(rb"(%s) ([\x21-\xb0]+) (HTTP/1\.1)\r\n((?:%s:[^\0\r\n]*\r\n)*)\r\n"
                         % (_TOKEN, _TOKEN))
#: One header line of such a head: name, and value without the white space
#: around it.
_WHOLE_FIELD = re.compile(rb"([^:]+):[ \t]*((?:[^\r]*[^\r \t])?)[ \t]*\r\n")

_date: tuple[int, bytes] = (0, b"")


@lru_cache(maxsize=512)
def _headerName(name: bytes) -> bytes:
    """
    The name twisted.web's L{Headers} files a header called C{name} under
    (found once per spelling, by asking a L{Headers}).
    """
    headers = Headers()
    headers.addRawHeader(name, b"")
    return next(iter(headers.getAllRawHeaders()))[0]


@lru_cache(maxsize=16)
def _nonQueued(factory: Any) -> bool:
    """
    Whether C{factory} makes requests without the deprecated C{queued}
    argument (asked once per factory, not per request).
    """
    return INonQueuedRequestFactory.providedBy(factory)


def _head(version: bytes, code: bytes, reason: bytes, headers: Headers) -> list[bytes]:
    """
    The status line and headers of a response, in pieces, as twisted.web
    writes them.
    """
    head = [version, b" ", code, b" ", reason, b"\r\n"]
    for name, values in headers.getAllRawHeaders():
        for value in values:
            head += (name, b": ", value, b"\r\n")
    head.append(b"\r\n")
    return head


def _writeWithHead(request: Any, data: bytes) -> None:
    """
    Start C{request}'s answer: its status line, headers and C{data} in one
    write to the connection, as twisted.web would write them (the caller
    has checked that twisted.web would add or change nothing).
    """
    request.startedWriting = 1
    request.sentLength = len(data)
    head = _head(request.clientproto, b"%d" % request.code, request.code_message,
                 request.responseHeaders)
    head.append(data)
    request.channel.writeSequence(head)


def _fileHeaders(headers: Headers, data: bytes, start: int, end: int) -> None:
    """
    File the header lines of a whole request's head (C{data[start:end]},
    already checked as twisted.web's parser checks them, so no value holds
    a line break for L{Headers} to clean) under twisted.web's names.
    """
    raw = headers._rawHeaders
    for name, value in _WHOLE_FIELD.findall(data, start, end):
        raw.setdefault(_headerName(name), []).append(value)


def httpDate() -> bytes:
    """
    The time now as an HTTP C{Date} header value, made once a second.
    """
    global _date
    now = int(time.time())
    if now != _date[0]:
        _date = (now, datetimeToString(now))
    return _date[1]


class _HeadersByName:
    """
    Headers by their byte names, read and set where twisted.web's
    L{Headers} files them: a request asks for a handful and sets a handful,
    and each trip through Headers' general methods (names of either type,
    values to clean of line breaks) would cost more than the lookup.
    Anything else goes through L{Headers} as twisted.web's L{Request}
    sends it.  (C{_rawHeaders} is the store L{Headers} documents as its
    ivar; C{tests/test_site.py} compares these methods with twisted.web's
    own, byte for byte on the wire.)
    """

    requestHeaders: Headers
    responseHeaders: Headers

    def getHeader(self, key: Any) -> Any:
        values: Any
        if isinstance(key, bytes):
            values = self.requestHeaders._rawHeaders.get(_headerName(key))
        else:
            values = self.requestHeaders.getRawHeaders(key)
        return values[-1] if values else None

    def setHeader(self, name: Any, value: Any) -> None:
        if (isinstance(name, bytes) and isinstance(value, bytes)
                and b"\n" not in value and b"\r" not in value):
            self.responseHeaders._rawHeaders[_headerName(name)] = [value]
        else:
            self.responseHeaders.setRawHeaders(name, [value])


class BridgeRequest(_HeadersByName, Request):
    """
    A request whose body is kept only up to the site's C{maxBodySize}.

    @ivar tooLarge: whether the body was larger (its content is then
        empty, and the resource must answer 413).
    @ivar bodyBytes: how many body bytes arrived.
    """

    tooLarge = False
    bodyBytes = 0
    content: Any

    def __init__(self, channel: Any, *args: Any, **kw: Any) -> None:
        # The bridge reads no forms: a form content type must not make
        # twisted.web parse the body (whose odd headers can make it raise).
        kw.setdefault("parsePOSTFormSubmission", False)
        super().__init__(channel, *args, **kw)

    def _limit(self) -> int:
        site = getattr(self.channel, "site", None)
        return int(getattr(site, "maxBodySize", 0) or 0)

    def gotLength(self, length: Optional[int]) -> None:
        limit = self._limit()
        if limit and length is not None and length > limit:
            self.tooLarge = True
            self.content = BytesIO()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self.bodyBytes += len(data)
        if self.tooLarge:
            return
        limit = self._limit()
        if limit and self.bodyBytes > limit:
            # A chunked body that grew too large: drop what was kept.
            self.tooLarge = True
            self.content.close()
            self.content = BytesIO()
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        # The path nearly every request takes is served as twisted.web's
        # Request.process serves it, less the work it does not need there:
        # the Date header is formatted once a second, not per request, and
        # "/mcp" needs no splitting and unquoting.
        if self.path != b"/mcp":
            super().process()
            return
        channel: Any = self.channel
        self.site = site = channel.site
        self.setHeader(b"Server", serverVersion)
        self.setHeader(b"Date", httpDate())
        self.prepath = []
        self.postpath = [b"mcp"]
        try:
            resource = site.getResourceFor(self)
            if _IEncodingResource.providedBy(resource):
                encoder = resource.getEncoder(self)
                if encoder is not None:
                    self._encoder = encoder
            self.render(resource)
        except BaseException:
            self.processingFailed(Failure())

    def write(self, data: bytes) -> None:
        # The status line and headers go out in the same write as the
        # first piece of the body: one system call, and one packet for
        # the client to wake up for, instead of two.  An answer whose
        # length is known (nearly every answer of the bridge) is put
        # together here, as twisted.web would; any other goes through
        # twisted.web with the connection's writes held.
        if self.startedWriting or not data:
            super().write(data)
            return
        if self._plainAnswer():
            _writeWithHead(self, data)
            return
        channel: Any = self.channel
        held = isinstance(channel, BridgeChannel) and channel.holdWrites()
        try:
            super().write(data)
        finally:
            if held:
                channel.releaseWrites()

    def _plainAnswer(self) -> bool:
        """
        Whether twisted.web would write this answer's head as it is, with
        the body after it unchanged: its length and type are set, and
        nothing else (HEAD, a status without a body, an encoder, cookies,
        caching headers, a closed connection) has a say.
        """
        headers = self.responseHeaders
        return (isinstance(self.channel, BridgeChannel)
                and not self._disconnected and self.method != b"HEAD"
                and not self._inFakeHead and self.code not in NO_BODY_CODES
                and self._encoder is None and not self.cookies and self.etag is None
                and self.lastModified is None and headers.hasHeader(b"content-length")
                and headers.hasHeader(b"content-type"))

    def writeMany(self, pieces: list[bytes]) -> None:
        """
        Write C{pieces} (with the status line and headers, if not sent yet)
        in one write to the connection.
        """
        channel: Any = self.channel
        held = isinstance(channel, BridgeChannel) and channel.holdWrites()
        try:
            for piece in pieces:
                self.write(piece)
        finally:
            if held:
                channel.releaseWrites()


class _Outcome:
    """
    A resource whose C{render} gives what another resource's already gave
    (a body, or an exception): for a L{LeanRequest} to have twisted.web
    deal with an outcome it does not take itself, without rendering twice.
    """

    def __init__(self, body: Any = None, error: Optional[BaseException] = None) -> None:
        self.body = body
        self.error = error

    def render(self, request: Any) -> Any:
        if self.error is not None:
            raise self.error
        return self.body


@implementer(IRequest)
class LeanRequest(_HeadersByName):
    """
    A plain POST to C{/mcp} that arrived whole, with only what serving it
    as nearly every such request is served needs: headers read and set, a
    status, one answer of known length written with its head, the end.

    twisted.web's L{Request} does much more per request (cookies, a query
    string, the resource tree, chunking, HEAD, producers, sessions), each
    step cheap but all of them on the path of every call.  This request
    does only the common steps, each as twisted.web does it, and hands
    over to a full L{BridgeRequest} the first time anything else is asked
    of it (an event stream, an answer without a length, a failure, any
    attribute it does not have): L{_promote} makes that request from this
    one's state, and this object then forwards everything to it.
    C{tests/test_site.py} compares what goes on the wire with
    L{BridgeRequest}'s and twisted.web's own.
    """

    method = b"POST"
    uri = path = b"/mcp"
    clientproto = b"HTTP/1.1"
    code = 200
    code_message = b"OK"
    finished = 0
    startedWriting = 0
    sentLength = 0
    tooLarge = False
    _disconnected = False
    defaultContentType = b"text/html"

    def __init__(self, channel: "BridgeChannel", headers: Headers, body: bytes) -> None:
        self.channel: Any = channel
        self.requestHeaders = headers
        self.responseHeaders = Headers()
        self.content: Any = BytesIO(body)
        self.bodyBytes = len(body)
        self.client = channel.getPeer()
        self.host = channel.getHost()
        self.notifications: list[Deferred[None]] = []
        self.args: dict[bytes, list[bytes]] = {}

    def process(self) -> None:
        # As BridgeRequest.process, then twisted.web's render for a body.
        self.site = site = self.channel.site
        headers = self.responseHeaders._rawHeaders
        headers[b"Server"] = [serverVersion]
        headers[b"Date"] = [httpDate()]
        self.prepath: list[bytes] = []
        self.postpath = [b"mcp"]
        try:
            resource = site.getResourceFor(self)
            if _IEncodingResource.providedBy(resource) \
                    and resource.getEncoder(self) is not None:
                _handOver(self).render(resource)
                return
            try:
                body = resource.render(self)
            except UnsupportedMethod as e:
                _handOver(self).render(_Outcome(error=e))
                return
            if body is NOT_DONE_YET:
                return
            if isinstance(self, LeanRequest) and isinstance(body, bytes) \
                    and not self.startedWriting and not self.finished:
                self.setHeader(b"content-length", b"%d" % len(body))
                self.write(body)
                self.finish()
            else:
                _handOver(self).render(_Outcome(body))
        except BaseException:
            _handOver(self).processingFailed(Failure())

    # What the bridge asks of nearly every request (and its headers, from
    # _HeadersByName).

    def setResponseCode(self, code: int, message: Optional[bytes] = None) -> None:
        self.code = code
        self.code_message = message if message is not None \
            else RESPONSES.get(code, b"Unknown Status")

    def getClientAddress(self) -> Any:
        return self.client

    def getHost(self) -> Any:
        return self.host

    def isSecure(self) -> bool:
        channel = self.__dict__.get("channel")
        return bool(channel is not None and channel.isSecure())

    def notifyFinish(self) -> "Deferred[None]":
        d: Deferred[None] = Deferred()
        self.notifications.append(d)
        return d

    def write(self, data: bytes) -> None:
        if self.finished:
            raise RuntimeError(
                "Request.write called on a request after Request.finish was called.")
        if self._disconnected:
            return
        raw = self.responseHeaders._rawHeaders
        if (self.startedWriting or not data or self.code in NO_BODY_CODES
                or b"Content-Length" not in raw or b"Content-Type" not in raw):
            self._promote().write(data)
            return
        _writeWithHead(self, data)

    def finish(self) -> None:
        if self._disconnected:
            raise RuntimeError(
                "Request.finish called on a request after its connection was lost; "
                "use Request.notifyFinish to keep track of this.")
        if self.finished:
            warnings.warn("Warning! request.finish called twice.", stacklevel=2)
            return
        if not self.startedWriting:
            self._promote().finish()
            return
        channel = self.channel
        factory = getattr(channel, "factory", None)
        if factory is not None:
            factory.log(self)
        self.finished = 1
        channel.requestDone(self)
        del self.channel
        self.content.close()
        del self.content
        notifications, self.notifications = self.notifications, []
        for d in notifications:
            d.callback(None)

    def connectionLost(self, reason: Failure) -> None:
        self._disconnected = True
        self.channel = None
        if self.content is not None:
            self.content.close()
        notifications, self.notifications = self.notifications, []
        for d in notifications:
            d.errback(reason)

    # Anything else: a full request takes over.

    def __getattr__(self, name: str) -> Any:
        # (The channel and the body are gone once the answer is finished,
        # as from twisted.web's requests.)
        if name.startswith("__") or name in ("_full", "channel", "content"):
            raise AttributeError(name)
        return getattr(self._promote(), name)

    def _promote(self) -> BridgeRequest:
        """
        Hand over to a L{BridgeRequest} made from this request's state;
        from now on this object forwards every attribute to it.
        """
        state = dict(self.__dict__)
        channel = state.get("channel")
        full = BridgeRequest.__new__(BridgeRequest)
        # BridgeRequest's own __init__ needs a live channel (it asks for the
        # addresses this request already has); a lost one is taken as is.
        holder = channel if channel is not None else _LostChannel(state)
        BridgeRequest.__init__(full, holder)
        for name in ("method", "uri", "path", "clientproto", "code", "code_message",
                     "finished", "startedWriting", "sentLength", "defaultContentType",
                     "_disconnected"):
            state.setdefault(name, getattr(type(self), name))
        full.__dict__.update(state)
        full.channel = channel  # type: ignore[assignment]
        full.parseCookies()
        if channel is not None:
            requests = channel.requests
            for i, r in enumerate(requests):
                if r is self:
                    requests[i] = full
        self.__dict__.clear()
        self.__class__ = _Promoted  # type: ignore[assignment]
        self.__dict__["_full"] = full
        return full


def _handOver(request: Any) -> BridgeRequest:
    """
    The full request a L{LeanRequest} hands over to (made now if it has
    not yet).
    """
    if isinstance(request, _Promoted):
        return request._full
    return request._promote()


class _LostChannel:
    """
    What a L{BridgeRequest} made for a request whose connection is gone
    reads of its channel while it is made.
    """

    transport = None
    site = None

    def __init__(self, state: dict[str, Any]) -> None:
        self._client = state.get("client")
        self._host = state.get("host")

    def getPeer(self) -> Any:
        return self._client

    def getHost(self) -> Any:
        return self._host


@implementer(IRequest)
class _Promoted:
    """
    A L{LeanRequest} that handed over to a full request: every attribute
    read, set or deleted is that request's.
    """

    _full: BridgeRequest

    def __getattr__(self, name: str) -> Any:
        if name == "_full":
            raise AttributeError(name)
        return getattr(self._full, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._full, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._full, name)


class BridgeChannel(HTTPChannel):
    """
    An HTTP connection with a deadline for each request to arrive whole,
    and the site's write buffer size.
    """

    transport: Any
    site: Any
    _savedTimeOut: Optional[int] = None  # type: ignore[assignment]

    readTimeout: float = 30.0
    writeBufferSize: Optional[int] = None
    _readDeadline: Optional[IDelayedCall] = None
    _abortCall: Optional[IDelayedCall] = None

    def connectionMade(self) -> None:
        # A producer streaming to this transport is paused once more than
        # bufferSize bytes wait to be written.
        if self.writeBufferSize and hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = self.writeBufferSize
        if isinstance(self.transport, tcp.Connection):
            writeEagerly(self.transport, socketSender(self.transport))
        super().connectionMade()
        self._requestStarted = self.clock.seconds()
        self._armDeadline(self.readTimeout)

    # The read deadline: one timer per connection, re-armed when it fires
    # rather than cancelled and made again for every request.

    clock: Any = None
    _requestStarted: Optional[float] = None

    def _armDeadline(self, delay: float) -> None:
        if self.readTimeout and self._readDeadline is None:
            self._readDeadline = self.callLater(delay, self._deadlinePassed)

    def dataReceived(self, data: bytes) -> None:
        if not self._handlingRequest and self._requestStarted is None:
            self._requestStarted = self.clock.seconds()
            self._armDeadline(self.readTimeout)
        if (self.wholeRequests and self.persistent and not self.requests
                and self.line_mode and not self._buffer and not self._busyReceiving
                and not self.paused and self._wholeRequest(data)):
            return
        super().dataReceived(data)

    # Requests that arrive whole.
    #
    # twisted.web's parser takes a request apart one line at a time, each
    # header checked and stored on its own.  Nearly every request to the
    # bridge is one small POST that comes in one read, with its headers
    # and all of its body; _wholeRequest takes such a request in one go,
    # checked as twisted.web checks it, and hands it to the same methods
    # the parser would.  Anything else (a part of a request, several at
    # once, chunked bodies, "Expect", HTTP/1.0, anything malformed) goes
    # to the parser untouched, which also answers the malformed ones.

    #: Whether whole requests take the short way (for tests to compare).
    wholeRequests = True

    def _wholeRequest(self, data: bytes) -> bool:
        """
        Serve C{data} if it is exactly one whole, plain HTTP/1.1 request.

        @return: whether it was; if not, nothing was taken from C{data}.
        """
        head = _WHOLE_HEAD.match(data)
        if head is None:
            return False
        start, end = head.span(4)
        # (A header line takes at least four bytes: count them only when
        # there could be too many.)
        if end > self.totalHeadersSize or (
                end - start > 4 * self.maxHeaders
                and data.count(b"\n", start, end) > self.maxHeaders):
            return False
        # The headers that decide how the body is read, found in one pass.
        lower = data[start - 1:end].lower()
        if b"\ntransfer-encoding:" in lower or b"\nexpect:" in lower:
            return False
        length = 0
        at = lower.find(b"\ncontent-length:")
        if at >= 0:
            if lower.find(b"\ncontent-length:", at + 1) >= 0:
                return False
            value = lower[at + 16:lower.index(b"\r", at)].strip(b" \t")
            if not value.isdigit():
                return False
            length = int(value)
        if len(data) - head.end() != length:
            return False
        body = data[head.end():]

        self.resetTimeout()
        factory = self.requestFactory
        if (factory is BridgeRequest and head.group(2) == b"/mcp" and head.group(1) == b"POST"
                and b"\nconnection:" not in lower
                and length <= (getattr(self.site, "maxBodySize", 0) or length)):
            self._leanRequest(data, start, end, body)
            return True
        if _nonQueued(factory):
            request = factory(self)
        else:
            request = factory(self, len(self.requests))
        self.requests.append(request)
        self._command, self._path, self._version = head.group(1, 2, 3)
        _fileHeaders(request.requestHeaders, data, start, end)
        self.length = length
        self.allHeadersReceived()
        if body:
            request.handleContentChunk(body)
        self.allContentReceived()
        return True

    def _leanRequest(self, data: bytes, start: int, end: int, body: bytes) -> None:
        """
        Serve a whole POST to C{/mcp} with a L{LeanRequest}, putting the
        connection in the state twisted.web's C{allHeadersReceived} and
        C{allContentReceived} would: persistent (the request has no
        C{Connection} header), no keep-alive timeout while it is served,
        later bytes kept until it is done.
        """
        headers = Headers()
        _fileHeaders(headers, data, start, end)
        request = LeanRequest(self, headers, body)
        self.requests.append(request)
        self.persistent = True
        self._requestStarted = None
        if self.timeOut:
            self._savedTimeOut = self.setTimeout(None)
        self._handlingRequest = True
        self.setRawMode()
        request.process()

    def allContentReceived(self) -> None:
        self._requestStarted = None
        super().allContentReceived()

    def _deadlinePassed(self) -> None:
        self._readDeadline = None
        if self._requestStarted is None:
            return  # no request is arriving; the next one arms it again
        left = self._requestStarted + self.readTimeout - self.clock.seconds()
        if left > 0:
            self._armDeadline(left)
        else:
            self._readTimedOut()

    def _stopDeadline(self) -> None:
        self._requestStarted = None
        if self._readDeadline is not None:
            if self._readDeadline.active():
                self._readDeadline.cancel()
            self._readDeadline = None

    # The keep-alive timeout, kept as TimeoutMixin keeps it but with one
    # timer for the connection's life: twisted.web turns it off for each
    # request and on again after, which would make and cancel a timer per
    # request.  Turned off, the timer is left to run out and ignored.

    _idleCall: Optional[IDelayedCall] = None

    def setTimeout(self, period: Optional[int]) -> Optional[int]:
        previous, self.timeOut = self.timeOut, period
        if period is not None:
            if self._idleCall is not None:
                self._idleCall.reset(period)
            else:
                self._idleCall = self.callLater(period, self._idleTimedOut)
        return previous

    def resetTimeout(self) -> None:
        if self._idleCall is not None and self.timeOut is not None:
            self._idleCall.reset(self.timeOut)

    def _idleTimedOut(self) -> None:
        self._idleCall = None
        if self.timeOut is not None:
            self.timeoutConnection()

    # Holding writes back, to send what one call to a request's write makes
    # (headers and body) in one piece.

    _held: Optional[list[bytes]] = None

    def holdWrites(self) -> bool:
        """
        Keep what is written until L{releaseWrites}, to send it in one
        piece (the transport joins small pieces and queues large ones).

        @return: whether this call started holding (and so must release).
        """
        if self._held is not None:
            return False
        self._held = []
        return True

    def releaseWrites(self) -> None:
        held, self._held = self._held, None
        if held and self.transport is not None:
            self.transport.writeSequence(held)

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        if self._held is None or not isinstance(headers, Headers):
            super().writeHeaders(version, code, reason, headers)
            return
        self._held += _head(version, code, reason, headers)

    def write(self, data: bytes) -> None:
        if self._held is None:
            super().write(data)
        else:
            self._held.append(data)

    def writeSequence(self, iovec: Any) -> None:
        if self._held is None:
            super().writeSequence(iovec)
        else:
            self._held.extend(iovec)

    # What every request asks the connection, asked of the socket once.

    _host: Any = None
    _peer: Any = None
    _secure: Optional[bool] = None

    def getHost(self) -> Any:
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def getPeer(self) -> Any:
        if self._peer is None:
            self._peer = super().getPeer()
        return self._peer

    def isSecure(self) -> bool:
        if self._secure is None:
            self._secure = bool(super().isSecure())
        return self._secure

    def _readTimedOut(self) -> None:
        self._readDeadline = None
        if self._handlingRequest or self.transport is None or self.transport.disconnecting:
            return
        if debugEnabled():
            log.debug("closing {peer}: no whole request within {seconds} s",
                      peer=str(self.transport.getPeer()), seconds=self.readTimeout)
        self.transport.write(_TIMED_OUT)
        self.loseConnection()
        # A client that does not read the answer does not keep the socket.
        self._abortCall = self.callLater(5.0, self._abort)

    def _abort(self) -> None:
        self._abortCall = None
        if self.transport is not None:
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopDeadline()
        if self._idleCall is not None and self._idleCall.active():
            self._idleCall.cancel()
        self._idleCall = None
        if self._abortCall is not None and self._abortCall.active():
            self._abortCall.cancel()
        self._abortCall = None
        super().connectionLost(reason)


class BridgeSite(Site):
    """
    The bridge's site: L{BridgeChannel} connections making L{BridgeRequest}s,
    and an access log line per request only at debug level.

    @ivar maxBodySize: the largest request body kept (0: no limit).
    @ivar readTimeout: seconds a request has to arrive whole (0: no limit).
    @ivar writeBufferSize: bytes queued for a client before the producer
        feeding it is paused.
    """

    protocol = BridgeChannel  # type: ignore[assignment]
    requestFactory = BridgeRequest
    displayTracebacks = False
    maxBodySize = 4 * 1024 * 1024
    readTimeout = 30.0
    writeBufferSize = 64 * 1024

    _log = logger("mcpbridge.access")

    def __init__(self, resource: Any, keepaliveTimeout: float = 60.0, **kw: Any) -> None:
        super().__init__(resource, timeout=keepaliveTimeout or None, **kw)

    def log(self, request: Any) -> None:
        if debugEnabled():
            self._log.debug("{method} {uri} {code}", method=request.method,
                            uri=request.uri, code=request.code)

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        channel.readTimeout = self.readTimeout
        channel.writeBufferSize = self.writeBufferSize
        channel.clock = self.reactor
        return channel
