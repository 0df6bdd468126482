"""
Tests of L{mcpbridge.site.BridgeChannel}'s short way for requests that
arrive whole: it must see every request exactly as twisted.web's own
parser does, and leave to the parser everything it does not take.

Each request here is fed to two channels of the same site, one taking the
short way and one not, and what the resource saw and what went back on
the wire must be the same.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.http import datetimeToString
from twisted.web.iweb import INonQueuedRequestFactory
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import provider

from mcpbridge.site import BridgeChannel, BridgeRequest, BridgeSite, LeanRequest, httpDate

from .fakes import WritesTransport


class Mirror(Resource):
    """
    Answers every request with what it saw of it, as JSON.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    def render(self, request: Any) -> bytes:
        seen = {
            "method": request.method.decode("latin-1"),
            "uri": request.uri.decode("latin-1"),
            "version": request.clientproto.decode("latin-1"),
            "headers": sorted((k.decode("latin-1"), [v.decode("latin-1") for v in vs])
                              for k, vs in request.requestHeaders.getAllRawHeaders()),
            "body": request.content.read().decode("latin-1"),
            "tooLarge": request.tooLarge,
            "prepath": [p.decode("latin-1") for p in request.prepath],
            "postpath": [p.decode("latin-1") for p in request.postpath],
            "headersOut": sorted(k.decode("latin-1") for k, _ in
                                 request.responseHeaders.getAllRawHeaders()),
        }
        self.seen.append(seen)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(seen).encode()


#: The Date header differs between two runs a second apart.
_DATE = re.compile(rb"Date: [^\r]*\r\n")


class Exchange:
    """
    One connection to a L{Mirror} site, taking the short way or not.
    """

    def __init__(self, whole: bool, maxBodySize: int = 1000) -> None:
        self.mirror = Mirror()
        self.clock = MemoryReactorClock()
        site = BridgeSite(self.mirror, reactor=self.clock)
        site.maxBodySize = maxBodySize
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        self.channel = site.buildProtocol(address)
        self.channel.wholeRequests = whole
        self.transport = StringTransport(peerAddress=address)
        self.channel.makeConnection(self.transport)

    def feed(self, *pieces: bytes) -> tuple[bytes, bool, list[dict[str, Any]]]:
        for piece in pieces:
            if self.transport.disconnecting:
                break
            self.channel.dataReceived(piece)
        return (_DATE.sub(b"", self.transport.value()), bool(self.transport.disconnecting),
                self.mirror.seen)


def post(body: bytes = b'{"jsonrpc":"2.0","id":1,"method":"ping"}', *headers: bytes,
         target: bytes = b"/mcp", version: bytes = b"HTTP/1.1", length: bool = True) -> bytes:
    lines = [b"POST " + target + b" " + version, b"Host: 127.0.0.1:3000",
             b"Content-Type: application/json", *headers]
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


#: Requests the short way takes.
WHOLE = [
    post(),
    post(b"", length=False),
    b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    post(b"{}", b"X-Spaced:   padded value \t ", b"x-lower: v", b"X-Empty:", b"X-Tab:\tv"),
    post(b"{}", b"Accept: application/json", b"Accept: text/event-stream"),
    post(b"{}", b"Connection: close"),
    b"POST /mcp HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}",
    b"POST /mcp HTTP/1.1\r\nContent-Length:  0 \r\n\r\n",
    b"POST /mcp?a=%20b HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
    post(b"x" * 2000),  # over the body limit: 413 either way
    b"M-SEARCH * HTTP/1.1\r\n\r\n",
    b"GET /\x7f\xb0 HTTP/1.1\r\n\r\n",
]

#: Requests left to twisted.web's parser, as they arrive in one read.
PARSER = [
    post(b"{}", b"Content-Length: 2"),  # twice
    post(b"{}", length=False) + b"",  # a body without a length
    b"POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
    post(b"{}", b"Expect: 100-continue"),
    post(version=b"HTTP/1.0"),
    post(b"{}", b"X-Folded: a", b" b"),
    post(b"{}", b"Bad Name: v"),
    post(b"{}", b"X-Nul: a\x00b"),
    post(b"{}", b"X-Cr: a\rb"),
    post(b"{}", b"X-Lf: a\nb"),
    post(b"{}", b": no name"),
    post(b"{}", b"NoColon"),
    b"POST /mcp HTTP/1.1\r\nContent-Length: -2\r\n\r\n{}",
    b"POST /mcp HTTP/1.1\r\nContent-Length: 0x2\r\n\r\n{}",
    b"POST /mcp HTTP/1.1\r\nContent-Length: \xd9\xa2\r\n\r\n{}",
    post(b"{}") + post(b"[]"),  # two at once
    post(b"{}") + b"\r\n",  # more than the body
    post(b"{}")[:-1],  # less than the body
    b"\r\n" + post(b"{}"),  # an empty line first
    b"POST  /mcp HTTP/1.1\r\n\r\n",
    b"POST /mcp HTTP/1.1 \r\n\r\n",
    b"POST /mcp HTTP/2.0\r\n\r\n",
    b"P(ST /mcp HTTP/1.1\r\n\r\n",
    b"POST /m\xb1cp HTTP/1.1\r\n\r\n",
    b"POST /mcp HTTP/1.1\n\n",
    b"POST /mcp HTTP/1.1\r\nHost: x\r\n",
    b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 600 + b"\r\n",  # too many headers
    b"GET / HTTP/1.1\r\nX: " + b"y" * 20000 + b"\r\n\r\n",  # too large
]


class WholeRequestTests(SynchronousTestCase):
    def assertSame(self, *pieces: bytes) -> tuple[bytes, bool, list[dict[str, Any]]]:
        whole = Exchange(True).feed(*pieces)
        parsed = Exchange(False).feed(*pieces)
        self.assertEqual(whole, parsed, pieces)
        return whole

    def test_shortWay(self) -> None:
        """
        A whole plain request never reaches the line parser, and is served
        as the parser would serve it.
        """
        for data in WHOLE:
            exchange = Exchange(True)
            exchange.channel.lineReceived = lambda line: self.fail(f"parsed {data!r}")
            output, closed, seen = exchange.feed(data)
            self.assertTrue(output.startswith(b"HTTP/1.1 "), data)
            self.assertSame(data)

    def test_parserWay(self) -> None:
        """
        Anything else goes to the parser untouched, which serves or refuses
        it as before.
        """
        for data in PARSER:
            exchange = Exchange(True)
            taken: list[bool] = []
            whole = exchange.channel._wholeRequest

            def wholeRequest(data: bytes) -> bool:
                taken.append(whole(data))
                return taken[-1]
            exchange.channel._wholeRequest = wholeRequest
            exchange.feed(data)
            self.assertEqual(taken[:1], [False], data)
            self.assertSame(data)

    def test_headersAsParsed(self) -> None:
        """
        The resource sees the headers' names canonicalized and their values
        without the white space around them, every value of a repeated
        header, and the body.
        """
        output, closed, seen = self.assertSame(WHOLE[4])
        headers = dict(seen[0]["headers"])
        self.assertEqual(headers["X-Spaced"], ["padded value"])
        self.assertEqual(headers["X-Lower"], ["v"])
        self.assertEqual(headers["X-Empty"], [""])
        self.assertEqual(headers["X-Tab"], ["v"])
        self.assertEqual(seen[0]["body"], "{}")

    def test_keptAlive(self) -> None:
        """
        Requests one after another on a connection all take the short way;
        a request in pieces and one that asks to close still work between
        them.
        """
        pieces = [post(b"[1]"), post(b"[2]")[:20], post(b"[2]")[20:], post(b"[3]"),
                  post(b"[4]", b"Connection: close"), post(b"[5]")]
        output, closed, seen = self.assertSame(*pieces)
        self.assertEqual([s["body"] for s in seen], ["[1]", "[2]", "[3]", "[4]"])
        self.assertTrue(closed)

    def test_switchedOff(self) -> None:
        exchange = Exchange(True)
        exchange.channel.wholeRequests = False
        lines: list[bytes] = []
        parse = exchange.channel.lineReceived

        def lineReceived(line: bytes) -> Any:
            lines.append(line)
            return parse(line)
        exchange.channel.lineReceived = lineReceived
        exchange.feed(post())
        self.assertTrue(lines)

    def test_default(self) -> None:
        self.assertTrue(BridgeChannel.wholeRequests)

    def test_requestFactories(self) -> None:
        """
        A request factory gets the deprecated C{queued} argument only if it
        does not say it takes none, as twisted.web's parser does it.
        """
        for nonQueued in [True, False]:
            made: list[tuple[Any, ...]] = []

            def factory(channel: Any, *args: Any) -> BridgeRequest:
                made.append(args)
                return BridgeRequest(channel)
            if nonQueued:
                factory = provider(INonQueuedRequestFactory)(factory)
            exchange = Exchange(True)
            exchange.channel.requestFactory = factory
            output, _, _ = exchange.feed(post(), post())
            self.assertEqual(made, [()] * 2 if nonQueued else [(0,)] * 2)
            self.assertEqual(output.count(b"HTTP/1.1 200 OK"), 2)

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.sampled_from([
        b"POST", b"GET", b" ", b"/mcp", b"HTTP/1.1", b"HTTP/1.0", b"\r\n", b"\n", b":", b": ",
        b"Content-Length", b"content-length", b"Transfer-Encoding", b"chunked", b"Expect",
        b"100-continue", b"Connection", b"close", b"X-A", b"v", b"\t", b"\x00", b"2", b"0",
        b"{}", b"\r\n\r\n", b"Host: x\r\n", b"Content-Length: 2\r\n"]), max_size=40),
        st.integers(min_value=0, max_value=60))
    def test_sameAsParser(self, tokens: list[bytes], cut: int) -> None:
        """
        For any bytes, in one piece or two, both ways answer alike.
        """
        data = b"".join(tokens)
        self.assertSame(data)
        self.assertSame(data[:cut], data[cut:])
        self.assertSame(b"POST /mcp HTTP/1.1\r\n" + data)


class DatelessTransport(WritesTransport):
    """
    Keeps each write apart; its value leaves out the Date header.
    """

    def value(self) -> bytes:
        return _DATE.sub(b"", super().value())


def serve(resource: Resource, requestFactory: Any, data: bytes) -> DatelessTransport:
    """
    Feed C{data} to a connection of a site serving C{resource} with
    requests made by C{requestFactory}.

    @return: the connection's transport.
    """
    site = BridgeSite(resource, reactor=MemoryReactorClock())
    site.requestFactory = requestFactory
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    transport = DatelessTransport()
    channel.makeConnection(transport)
    channel.dataReceived(data)
    return transport


class TwistedProcessRequest(BridgeRequest):
    """
    A L{BridgeRequest} processed by twisted.web's own C{process}.
    """

    process = Request.process


class ProcessTests(SynchronousTestCase):
    """
    L{BridgeRequest.process}'s short way for C{/mcp} serves a request as
    twisted.web's own does.
    """

    def exchange(self, requestFactory: Any, data: bytes) -> tuple[bytes, Any]:
        mirror = Mirror()
        return serve(mirror, requestFactory, data).value(), mirror.seen

    def test_sameAsTwisted(self) -> None:
        for data in [post(), post(target=b"/mcp?x=1"), post(target=b"/other"),
                     post(target=b"/mcp/"), post(target=b"/m%63p"), b"OPTIONS * HTTP/1.1\r\n\r\n"]:
            self.assertEqual(self.exchange(BridgeRequest, data),
                             self.exchange(TwistedProcessRequest, data), data)

    def test_headers(self) -> None:
        output, seen = self.exchange(BridgeRequest, post())
        self.assertIn("Date", seen[0]["headersOut"])
        self.assertIn("Server", seen[0]["headersOut"])
        self.assertEqual(seen[0]["postpath"], ["mcp"])

    def test_date(self) -> None:
        """
        The Date header is the time now, as twisted.web formats it.
        """
        before = datetimeToString(int(time.time()))
        value = httpDate()
        after = datetimeToString(int(time.time()))
        self.assertIn(value, (before, after))
        self.assertIs(httpDate(), httpDate())

    def test_failure(self) -> None:
        """
        A resource that raises gets twisted.web's 500, on the short way too.
        """
        class Broken(Resource):
            isLeaf = True

            def render(self, request: Any) -> bytes:
                raise RuntimeError("broken")
        transport = serve(Broken(), BridgeRequest, post())
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 500 "))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class TwistedHeadersRequest(BridgeRequest):
    """
    A L{BridgeRequest} that reads, sets and writes headers with
    twisted.web's own methods.
    """

    getHeader = Request.getHeader
    setHeader = Request.setHeader
    write = Request.write


class Answers(Resource):
    """
    Answers in many shapes, chosen by the path, and tells what it read of
    the request's headers.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        #: What writing after the end raised.
        self.late: list[str] = []
        #: The requests rendered.
        self.requests: list[Any] = []

    def render(self, request: Any) -> Any:
        self.requests.append(request)
        shape = request.getHeader(b"x-shape") or request.path.strip(b"/")
        read = [request.getHeader(name) for name in
                (b"accept", b"Accept", b"ACCEPT", b"x-missing", b"x-empty", "Accept", "x-a")]
        body = json.dumps([v.decode() if isinstance(v, bytes) else v for v in read]).encode()
        request.setHeader(b"x-read", b"yes")
        if shape == b"json":
            request.setHeader(b"content-type", b"application/json")
            return body
        if shape == b"untyped":  # twisted.web adds its default type
            return body
        if shape == b"streamed":  # no length: chunked
            request.setHeader(b"content-type", b"text/plain")
            request.write(body)
            request.write(b"more")
            request.finish()
            return NOT_DONE_YET
        if shape == b"late":  # headers set, the body written in pieces
            request.setHeader(b"content-type", b"text/plain")
            request.setHeader(b"content-length", b"%d" % (len(body) + 4))
            request.write(body)
            request.write(b"more")
            request.finish()
            return NOT_DONE_YET
        if shape == b"twice":  # written to after its end
            request.setHeader(b"content-type", b"text/plain")
            request.setHeader(b"content-length", b"2")
            request.write(b"ok")
            request.finish()
            try:
                request.write(b"again")
            except Exception as e:
                self.late.append(type(e).__name__)
            return NOT_DONE_YET
        if shape == b"nocontent":
            request.setResponseCode(204)
            request.setHeader(b"content-type", b"text/plain")
            return b"dropped"
        if shape == b"odd":  # values to clean, names of both types, repeats
            request.setHeader(b"content-type", b"text/plain")
            request.setHeader(b"x-broken", b"a\r\nb\nc")
            request.setHeader("X-Text", "caf\u00e9")
            request.setHeader(b"X-Twice", b"1")
            request.setHeader(b"x-twice", b"2")
            request.responseHeaders.addRawHeader(b"x-many", b"1")
            request.responseHeaders.addRawHeader(b"x-many", b"2")
            return body
        if shape == b"cookie":
            request.setHeader(b"content-type", b"text/plain")
            request.addCookie(b"k", b"v")
            return body
        if shape == b"etag":
            request.setHeader(b"content-type", b"text/plain")
            request.setETag(b"abc")
            request.setLastModified(1000000000)
            return body
        if shape == b"empty":  # as the bridge answers a POST of notifications
            request.setResponseCode(202)
            request.defaultContentType = None
            return b""
        if shape == b"coded":
            request.setResponseCode(429, b"Slow Down")
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"content-length", b"%d" % len(body))
            request.write(body)
            request.finish()
            return NOT_DONE_YET
        if shape == b"broken":
            raise RuntimeError("broken")
        return body


class AnswerTests(SynchronousTestCase):
    """
    L{BridgeRequest} reads request headers, sets response headers and
    writes answers by a shorter way than twisted.web's; what resources read
    and what goes on the wire must be the same.
    """

    def exchange(self, requestFactory: Any, data: bytes) -> tuple[bytes, list[bytes]]:
        self.answers = Answers()
        transport = serve(self.answers, requestFactory, data)
        return transport.value(), transport.writes

    def request(self, shape: bytes, method: bytes = b"GET", version: bytes = b"HTTP/1.1") -> bytes:
        return (method + b" /" + shape + b" " + version + b"\r\nHost: x\r\n"
                b"Accept: text/plain\r\naccept: application/json\r\nX-Empty:\r\n"
                b"X-A: 1\r\n\r\n")

    def test_sameAsTwisted(self) -> None:
        for shape in [b"json", b"untyped", b"streamed", b"late", b"twice", b"nocontent",
                      b"odd", b"cookie", b"etag"]:
            for method in [b"GET", b"HEAD"]:
                for version in [b"HTTP/1.1", b"HTTP/1.0"]:
                    data = self.request(shape, method, version)
                    ours, _ = self.exchange(BridgeRequest, data)
                    theirs, _ = self.exchange(TwistedHeadersRequest, data)
                    self.assertEqual(ours, theirs, data)
                    self.assertTrue(ours.startswith(b"HTTP/1."), ours)

    def test_headersRead(self) -> None:
        """
        A header is found under any spelling of its name, a repeated one
        gives its last value, and a name given as text gives text.
        """
        output, _ = self.exchange(BridgeRequest, self.request(b"json"))
        read = json.loads(output.split(b"\r\n\r\n", 1)[1])
        self.assertEqual(read, ["application/json"] * 3 + [None, "", "application/json", "1"])
        theirs, _ = self.exchange(TwistedHeadersRequest, self.request(b"json"))
        self.assertEqual(output, theirs)

    def test_writeAfterEnd(self) -> None:
        """
        Writing to an answer after its end raises, as with twisted.web.
        """
        self.exchange(BridgeRequest, self.request(b"twice"))
        self.assertEqual(self.answers.late, ["RuntimeError"])

    def test_oneWrite(self) -> None:
        """
        An answer of known length leaves in one write, head and body.
        """
        output, writes = self.exchange(BridgeRequest, self.request(b"json"))
        self.assertEqual(len(writes), 1)
        self.assertIn(b"\r\nContent-Length: ", writes[0])

    def test_cleaned(self) -> None:
        """
        A value with line breaks is cleaned as twisted.web cleans it.
        """
        output, _ = self.exchange(BridgeRequest, self.request(b"odd"))
        self.assertIn(b"\r\nX-Broken: a b c\r\n", output)
        self.assertIn(b"\r\nX-Twice: 2\r\n", output)


class FullRequest(BridgeRequest):
    """
    A L{BridgeRequest} made for every request: a site with its own request
    factory makes no L{LeanRequest}.
    """


#: Answer shapes, named in an X-Shape header.
SHAPES = [b"json", b"untyped", b"streamed", b"late", b"twice", b"nocontent", b"odd",
          b"cookie", b"etag", b"empty", b"coded", b"broken"]

#: The shapes a LeanRequest answers itself: the others hand over to a
#: full request.
LEAN_SHAPES = {b"json", b"twice", b"odd", b"coded"}


class LeanRequestTests(SynchronousTestCase):
    """
    A plain POST to C{/mcp} that arrives whole is served by a
    L{LeanRequest}, which answers as a L{BridgeRequest} (and twisted.web)
    would, handing over to a full request for anything it does not do.
    """

    def exchange(self, requestFactory: Any, data: bytes) -> tuple[bytes, Answers]:
        answers = Answers()
        transport = serve(answers, requestFactory, data)
        return transport.value(), answers

    def request(self, shape: bytes, *headers: bytes) -> bytes:
        return post(b"{}", b"Accept: text/plain", b"accept: application/json", b"X-Empty:",
                    b"X-A: 1", b"X-Shape: " + shape, *headers)

    def test_sameAsFull(self) -> None:
        for shape in SHAPES:
            data = self.request(shape)
            ours, answers = self.exchange(BridgeRequest, data)
            full, fullAnswers = self.exchange(FullRequest, data)
            theirs, _ = self.exchange(TwistedHeadersRequest, data)
            self.assertEqual(ours, full, shape)
            self.assertEqual(ours, theirs, shape)
            self.assertEqual(answers.late, fullAnswers.late)
            [request] = answers.requests
            self.assertEqual(isinstance(request, LeanRequest), shape in LEAN_SHAPES, shape)
            self.assertIsInstance(fullAnswers.requests[0], FullRequest)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 3)

    def test_oneWrite(self) -> None:
        """
        A JSON answer leaves in one write, and the request stays lean.
        """
        answers = Answers()
        transport = serve(answers, BridgeRequest, self.request(b"json"))
        self.assertEqual(len(transport.writes), 1)
        self.assertIsInstance(answers.requests[0], LeanRequest)
        self.assertTrue(transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n"))

    def test_notLean(self) -> None:
        """
        Only a POST to exactly C{/mcp}, of HTTP/1.1 and without a
        C{Connection} header, from a site making L{BridgeRequest}s, is
        served lean.
        """
        for data in [self.request(b"json", b"Connection: close"),
                     self.request(b"json", b"Connection: keep-alive"),
                     post(b"{}", b"X-Shape: json", target=b"/mcp?a=1"),
                     post(b"{}", b"X-Shape: json", target=b"/mcp/"),
                     post(b"{}", b"X-Shape: json", version=b"HTTP/1.0"),
                     b"PUT /mcp HTTP/1.1\r\nX-Shape: json\r\nContent-Length: 0\r\n\r\n"]:
            _, answers = self.exchange(BridgeRequest, data)
            self.assertFalse(isinstance(answers.requests[0], LeanRequest), data)
        _, answers = self.exchange(FullRequest, self.request(b"json"))
        self.assertNotIsInstance(answers.requests[0], LeanRequest)

    def test_connectionClose(self) -> None:
        """
        C{Connection: close} is answered as twisted.web answers it: the
        same bytes, the header echoed, and the connection closed.
        """
        data = self.request(b"json", b"Connection: close")
        closed = []
        for factory in [BridgeRequest, FullRequest, TwistedHeadersRequest]:
            answers = Answers()
            transport = serve(answers, factory, data)
            closed.append((transport.value(), transport.disconnecting))
        self.assertEqual(closed[0], closed[1])
        self.assertEqual(closed[0], closed[2])
        self.assertIn(b"\r\nConnection: close\r\n", closed[0][0])
        self.assertTrue(closed[0][1])

    def pending(self, requestFactory: Any = BridgeRequest,
                *headers: bytes) -> tuple[Any, Any, Slow]:
        slow = Slow()
        site = BridgeSite(slow, reactor=MemoryReactorClock())
        site.requestFactory = requestFactory
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(post(b"{}", *headers))
        return channel, transport, slow

    def test_cookies(self) -> None:
        """
        A request's cookies are read when it hands over, as twisted.web
        reads them.
        """
        for factory in [BridgeRequest, FullRequest]:
            _, _, slow = self.pending(factory, b"Cookie: a=1; b=2")
            request = slow.waiting.pop()
            self.assertEqual(request.received_cookies, {b"a": b"1", b"b": b"2"})

    def test_lost(self) -> None:
        """
        A connection lost while a lean request is pending fails its
        C{notifyFinish}; a write is dropped and C{finish} raises, as for
        twisted.web's requests.
        """
        outcomes = []
        for factory in [BridgeRequest, FullRequest]:
            channel, transport, slow = self.pending(factory)
            request = slow.waiting.pop()
            failures: list[Failure] = []
            request.notifyFinish().addErrback(failures.append)
            channel.connectionLost(Failure(ConnectionDone()))
            request.write(b"late")
            with self.assertRaises(RuntimeError):
                request.finish()
            outcomes.append(([f.type for f in failures], transport.value(),
                             request.finished, request.getClientAddress()))
        self.assertEqual(outcomes[0], outcomes[1])
        self.assertEqual(outcomes[0][0], [ConnectionDone])

    def test_lostThenHandedOver(self) -> None:
        """
        A request whose connection is gone can still hand over.
        """
        channel, transport, slow = self.pending()
        request = slow.waiting.pop()
        request.principal = b"someone"
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(request.received_cookies, {})  # not a LeanRequest attribute
        self.assertNotIsInstance(request, LeanRequest)
        self.assertEqual(request.principal, b"someone")
        self.assertIsNone(request.channel)
        self.assertEqual(request.getClientAddress(), transport.getPeer())

    def test_handedOverState(self) -> None:
        """
        What was set on a lean request is the full request's once it hands
        over, which then takes the lean one's place on the connection.
        """
        channel, transport, slow = self.pending()
        request = slow.waiting.pop()
        request.principal = b"someone"
        request.setHeader(b"x-set", b"before")
        notified: list[Any] = []
        request.notifyFinish().addCallback(notified.append)
        request.registerProducer(Slow(), True)  # not a LeanRequest method
        self.assertNotIsInstance(request, LeanRequest)
        self.assertIsInstance(channel.requests[0], BridgeRequest)
        self.assertEqual(request.principal, b"someone")
        request.unregisterProducer()
        request.write(b"{}")
        request.finish()
        self.assertEqual(notified, [None])
        self.assertTrue(request.finished)
        self.assertEqual(channel.requests, [])
        self.assertIn(b"\r\nX-Set: before\r\n", transport.value())
        self.assertIn(b"\r\nTransfer-Encoding: chunked\r\n", transport.value())

    def test_pipelined(self) -> None:
        """
        A request that arrives while a lean one is answered waits for it.
        """
        channel, transport, slow = self.pending()
        channel.dataReceived(post(b'{"n":2}'))
        self.assertEqual(len(slow.waiting), 1)
        for body in [b"1", b"2"]:
            request = slow.waiting.pop()
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"content-length", b"1")
            request.write(body)
            request.finish()
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 OK"), 2)
        self.assertTrue(transport.value().endswith(b"\r\n\r\n2"))
        self.assertFalse(transport.disconnecting)

    def test_finishTwice(self) -> None:
        channel, transport, slow = self.pending()
        request = slow.waiting.pop()
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"content-length", b"2")
        request.write(b"{}")
        request.finish()
        self.assertWarns(UserWarning, "Warning! request.finish called twice.", __file__,
                         lambda: request.finish())
        with self.assertRaises(AttributeError):
            request.channel
        self.assertIsInstance(request, LeanRequest)


class CountingTransport(StringTransport):
    """
    Counts how often it is asked for its addresses.
    """

    asked = 0

    def getPeer(self) -> Any:
        self.asked += 1
        return super().getPeer()

    def getHost(self) -> Any:
        self.asked += 1
        return super().getHost()


class AddressTests(SynchronousTestCase):
    def test_askedOnce(self) -> None:
        """
        A connection asks its transport for its two addresses once, however
        many requests it carries, and every request sees them.
        """
        mirror = Mirror()
        site = BridgeSite(mirror, reactor=MemoryReactorClock())
        peer = IPv4Address("TCP", "10.0.0.7", 40001)
        channel = site.buildProtocol(peer)
        transport = CountingTransport(peerAddress=peer)
        channel.makeConnection(transport)
        seen: list[Any] = []
        render = mirror.render

        def remember(request: Any) -> bytes:
            seen.append((request.getClientAddress(), request.getHost()))
            return render(request)
        mirror.render = remember  # type: ignore[method-assign]
        for _ in range(3):
            channel.dataReceived(post())
        self.assertEqual(seen, [(peer, transport.getHost())] * 3)
        self.assertEqual(transport.asked, 3)  # twice for the channel, once just now


class Slow(Resource):
    """
    Answers only when told to.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Any] = []

    def render(self, request: Any) -> Any:
        self.waiting.append(request)
        return NOT_DONE_YET


class KeepAliveTests(SynchronousTestCase):
    """
    The keep-alive timeout: one timer for the connection, not one per
    request, and no timeout while a request is being answered.
    """

    def setUp(self) -> None:
        self.resource = Slow()
        self.clock = MemoryReactorClock()
        site = BridgeSite(self.resource, keepaliveTimeout=60, reactor=self.clock)
        site.readTimeout = 0
        self.channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)

    def serve(self) -> None:
        self.channel.dataReceived(post())
        request = self.resource.waiting.pop()
        request.write(b"{}")
        request.finish()

    def test_oneTimer(self) -> None:
        self.serve()
        timers = list(self.clock.getDelayedCalls())
        for _ in range(5):
            self.serve()
        self.assertEqual([id(c) for c in self.clock.getDelayedCalls()], [id(c) for c in timers])
        self.assertFalse(self.transport.disconnecting)

    def test_idleClosed(self) -> None:
        """
        The connection closes once idle for the timeout after its last
        request.
        """
        self.serve()
        self.clock.advance(59)
        self.serve()
        self.clock.advance(59)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1.5)
        self.assertTrue(self.transport.disconnecting)

    def test_notWhileAnswering(self) -> None:
        """
        No idle timeout while a request is being answered; it starts again
        after.
        """
        self.channel.dataReceived(post())
        for _ in range(5):
            self.clock.advance(60)
        self.assertFalse(self.transport.disconnecting)
        request = self.resource.waiting.pop()
        request.write(b"{}")
        request.finish()
        self.test_idleClosed()

    def test_lostCancels(self) -> None:
        self.serve()
        self.channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
