"""
Unit tests of the bridge's HTTP front over in-memory connections: the gate
(authentication, CORS, rate limit, body size) and the site (request read
deadline, keep-alive timeout), with fake children and a fake clock.

Requests are raw bytes fed to a real L{BridgeChannel}, so what is tested is
what a client on the wire would see.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any, Optional

import attr
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mcpbridge import gate as gatemodule
from mcpbridge.gate import CORS, Credentials, CredentialError, Gate, RateLimiter, \
    readTokenFile
from mcpbridge.guard import OriginGuard
from mcpbridge.pool import MODERN, ChildPool, PoolConfig
from mcpbridge.sessions import SessionConfig
from mcpbridge.site import BridgeSite, LeanRequest
from mcpbridge.web import BridgeApp

from .fakes import WritesTransport, makeManager

KEY1, KEY2, TOKEN = "k-first-0123456789", "k-second-9876543210", "t-bearer-abcdef012345"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}}}


@attr.s(auto_attribs=True)
class Response:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


def parseResponse(data: bytes) -> Response:
    """
    One HTTP/1.1 response (Content-Length, chunked, or to the close).
    """
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {data[:300]!r}"
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.decode().strip().lower(), []).append(value.decode().strip())
    if headers.get("transfer-encoding") == ["chunked"]:
        body = b""
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            body, rest = body + rest[:n], rest[n + 2:]
    elif "content-length" in headers:
        body = rest[:int(headers["content-length"][0])]
    else:
        body = rest
    return Response(status, headers, body)


def rawRequest(method: str, path: str, body: bytes = b"",
               headers: Optional[dict[str, str]] = None) -> bytes:
    h = {"Host": "127.0.0.1:3000"}
    if body or method == "POST":
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in h.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def mcpHeaders(**extra: str) -> dict[str, str]:
    h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    h.update(extra)
    return h


class FrontTestCase(SynchronousTestCase):
    """
    A bridge with fake children behind a gate, in a L{BridgeSite}.
    """

    config = SessionConfig()

    def setUp(self) -> None:
        self.manager, self.spawner, self.clock = makeManager(attr.evolve(self.config))
        pool = ChildPool(MODERN, self.manager.command, PoolConfig(size=0), self.clock,
                         self.spawner, self.spawner.killpg)
        guard = OriginGuard(allowedOrigins=["https://app.example.com", "https://*.good.test"])
        self.app = BridgeApp.single(self.manager, guard, self.clock, pool)
        self.gate = Gate(self.app.resource(), guard, Credentials(),
                         RateLimiter(0, 0, self.clock), lean=self.app.renderMCP)
        self.site = BridgeSite(self.gate, reactor=self.clock)
        self.site.readTimeout = 10.0
        self.site.maxBodySize = 1000

    def connect(self, host: str = "127.0.0.1") -> tuple[Any, StringTransport]:
        address = IPv4Address("TCP", host, 40000)
        protocol = self.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport

    def send(self, data: bytes, host: str = "127.0.0.1") -> tuple[Response, StringTransport]:
        protocol, transport = self.connect(host)
        protocol.dataReceived(data)
        return parseResponse(transport.value()), transport

    def request(self, method: str, path: str = "/mcp", body: Any = b"",
                headers: Optional[dict[str, str]] = None, host: str = "127.0.0.1") -> Response:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        return self.send(rawRequest(method, path, body, headers), host)[0]

    def initialize(self, **headers: str) -> Response:
        """
        POST initialize; if a child starts, let it answer.
        """
        before = len(self.spawner.children)
        protocol, transport = self.connect()
        protocol.dataReceived(rawRequest("POST", "/mcp", json.dumps(INIT).encode(),
                                         mcpHeaders(**headers)))
        if len(self.spawner.children) > before:
            self.spawner.last.answerInitialize()
        return parseResponse(transport.value())


class AuthenticationTests(FrontTestCase):
    def setUp(self) -> None:
        super().setUp()
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"# tokens for the bridge\n\n  {TOKEN}  \n")
        self.tokenFile = path
        self.gate.credentials = Credentials([KEY1, KEY2], path)

    def assertRefused(self, response: Response, problem: str) -> None:
        self.assertEqual(response.status, 401)
        body = response.json()
        self.assertEqual(body["jsonrpc"], "2.0")
        self.assertIn(problem, body["error"]["message"])
        challenges = response.headers["www-authenticate"]
        self.assertTrue(any(c.startswith("Bearer realm=") for c in challenges), challenges)
        self.assertTrue(any(c.startswith("ApiKey ") and 'header="X-API-Key"' in c
                            for c in challenges), challenges)
        self.assertEqual(self.spawner.children, [], "a child started for a refused request")

    def test_noCredentials(self) -> None:
        """
        Without credentials every MCP endpoint answers 401, and no child
        starts.
        """
        self.assertRefused(self.initialize(), "no credentials")
        for method, path in [("GET", "/mcp"), ("DELETE", "/mcp"), ("GET", "/sse"),
                             ("POST", "/messages?session_id=x"), ("GET", "/status"),
                             ("POST", "/servers/x/mcp"), ("GET", "/nowhere")]:
            self.assertRefused(self.request(method, path, headers=mcpHeaders()),
                               "no credentials")

    def test_wrongCredentials(self) -> None:
        """
        A wrong key or token is refused; the bearer challenge says the token
        is invalid.  An API key is not a bearer token, nor the other way.
        """
        for headers in [{"X-API-Key": "nope"}, {"Authorization": "Bearer nope"},
                        {"X-API-Key": KEY1 + "x"}, {"Authorization": f"Bearer {KEY1}"},
                        {"X-API-Key": TOKEN}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": "Bearer"}, {"X-API-Key": ""}]:
            response = self.initialize(**headers)
            self.assertRefused(response, "invalid credentials")
            self.assertIn('error="invalid_token"', " ".join(response.headers["www-authenticate"]))

    def test_validCredentials(self) -> None:
        """
        Either API key, or the token from the file, lets a client in.
        """
        for headers in [{"X-API-Key": KEY1}, {"X-API-Key": KEY2},
                        {"Authorization": f"Bearer {TOKEN}"},
                        {"Authorization": f"bearer  {TOKEN}"}]:
            response = self.initialize(**headers)
            self.assertEqual(response.status, 200, (headers, response))
        self.assertEqual(len(self.spawner.children), 4)

    def test_openPaths(self) -> None:
        """
        /health, /ping and CORS preflights need no credentials.
        """
        self.assertEqual(self.request("GET", "/health").status, 200)
        ping = self.request("GET", "/ping")
        self.assertEqual((ping.status, ping.json()["status"]), (200, "ok"))
        preflight = self.request("OPTIONS", "/mcp", headers={
            "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key, content-type"})
        self.assertEqual(preflight.status, 204)

    def test_keysNeverLogged(self) -> None:
        """
        Neither the configured secrets nor what clients send appear in the
        log, whether the request was refused or let in.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.initialize(**{"X-API-Key": "guess-" + KEY1})
        self.initialize(**{"Authorization": f"Bearer {TOKEN}x"})
        self.initialize(**{"X-API-Key": KEY2})
        self.assertTrue(events)
        text = repr(events)
        for secret in (KEY1, KEY2, TOKEN):
            self.assertNotIn(secret, text)
        self.assertIn("invalid credentials", text)

    def test_everyKeyCompared(self) -> None:
        """
        A presented key is compared with every configured one (in constant
        time), however early it matches.
        """
        calls: list[Any] = []
        real = hmac.compare_digest

        def counting(a: Any, b: Any) -> bool:
            calls.append((a, b))
            return real(a, b)

        self.patch(gatemodule.hmac, "compare_digest", counting)
        self.gate.credentials = Credentials([KEY1, KEY2, "third-key"])
        self.assertEqual(self.initialize(**{"X-API-Key": KEY1}).status, 200)
        self.assertEqual(len(calls), 3)
        self.assertTrue(all(len(a) == len(b) == 32 for a, b in calls))

    def test_tokenFileReload(self) -> None:
        """
        The token file is read again on reload; a file that cannot be used
        leaves the tokens as they were.
        """
        credentials = self.gate.credentials
        with open(self.tokenFile, "w") as f:
            f.write("new-token-1\nnew-token-2\n")
        credentials.reload()
        self.assertEqual(self.initialize(Authorization="Bearer new-token-2").status, 200)
        self.assertEqual(self.initialize(Authorization=f"Bearer {TOKEN}").status, 401)
        os.unlink(self.tokenFile)
        self.assertRaises(CredentialError, credentials.reload)
        self.assertEqual(self.initialize(Authorization="Bearer new-token-1").status, 200)

    def test_sessionsBoundToCredential(self) -> None:
        """
        A session belongs to the credential that made it: another valid
        credential that knows its id gets 404, as for a session that does
        not exist, and the session's child never hears of it.
        """
        response = self.initialize(**{"X-API-Key": KEY1})
        sid = response.header("mcp-session-id")
        assert sid is not None
        child = self.spawner.last
        ping = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
        for other in ({"X-API-Key": KEY2}, {"Authorization": f"Bearer {TOKEN}"}):
            headers = mcpHeaders(**{"Mcp-Session-Id": sid}, **other)
            self.assertEqual(self.request("POST", "/mcp", ping, headers).status, 404)
            self.assertEqual(self.request("GET", "/mcp", b"", {
                **headers, "Accept": "text/event-stream"}).status, 404)
            self.assertEqual(self.request("DELETE", "/mcp", b"", headers).status, 404)
        self.assertNotIn(7, [m.get("id") for m in child.received()])
        self.assertIn(sid, self.manager.sessions)
        owner = mcpHeaders(**{"Mcp-Session-Id": sid, "X-API-Key": KEY1})
        protocol, transport = self.connect()
        protocol.dataReceived(rawRequest("POST", "/mcp", json.dumps(ping).encode(), owner))
        self.assertIn(7, [m.get("id") for m in child.received()])

    def test_sseSessionsBoundToCredential(self) -> None:
        """
        The same holds for HTTP+SSE sessions' message endpoint.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(rawRequest("GET", "/sse", b"", {
            "Accept": "text/event-stream", "X-API-Key": KEY1}))
        endpoint = next(line for line in transport.value().split(b"\n")
                        if line.startswith(b"data: /messages")).decode()[6:].strip()
        ping = {"jsonrpc": "2.0", "id": 8, "method": "ping"}
        other = self.request("POST", endpoint, ping, mcpHeaders(**{"X-API-Key": KEY2}))
        self.assertEqual(other.status, 404)
        mine = self.request("POST", endpoint, ping, mcpHeaders(**{"X-API-Key": KEY1}))
        self.assertEqual(mine.status, 202)

    def test_noneConfigured(self) -> None:
        """
        With no key and no token, no credentials are asked for.
        """
        self.gate.credentials = Credentials()
        self.assertEqual(self.initialize().status, 200)


class TokenFileTests(SynchronousTestCase):
    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_tokens(self) -> None:
        path = self.write("# comment\na\n\n  b \r\n#c\n")
        self.assertEqual(readTokenFile(path), ["a", "b"])

    def test_problems(self) -> None:
        """
        Each problem is one line naming the file, and never shows a token.
        """
        cases = {
            self.write("# only comments\n\n"): "no token in it",
            self.write("secret-one secret-two\n"): "must not contain white space",
            self.mktemp(): "cannot read it",
        }
        binary = self.mktemp()
        with open(binary, "wb") as f:
            f.write(b"\xff\xfe secret")
        cases[binary] = "not UTF-8"
        for path, problem in cases.items():
            e = self.assertRaises(CredentialError, readTokenFile, path)
            self.assertIn(path, str(e))
            self.assertIn(problem, str(e))
            self.assertNotIn("secret", str(e))
            self.assertNotIn("\n", str(e))


class CORSTests(FrontTestCase):
    PREFLIGHT = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers":
                     "content-type, mcp-protocol-version, mcp-param-city"}

    def test_preflightAllowed(self) -> None:
        """
        A preflight from an allowed origin (loopback by default, or a
        configured one or pattern) is answered with everything MCP clients
        send allowed.
        """
        for origin in ["http://localhost:5173", "http://127.0.0.1:8080",
                       "https://app.example.com", "https://x.good.test"]:
            r = self.request("OPTIONS", "/mcp", headers={"Origin": origin, **self.PREFLIGHT})
            self.assertEqual(r.status, 204, origin)
            self.assertEqual(r.header("access-control-allow-origin"), origin)
            self.assertEqual(r.header("vary"), "Origin")
            self.assertEqual(r.header("access-control-max-age"), "600")
            methods = r.header("access-control-allow-methods") or ""
            self.assertEqual({m.strip() for m in methods.split(",")},
                             {"GET", "POST", "DELETE", "OPTIONS"})
            allowed = {h.strip().lower()
                       for h in (r.header("access-control-allow-headers") or "").split(",")}
            for name in ["content-type", "accept", "authorization", "x-api-key",
                         "mcp-session-id", "mcp-protocol-version", "mcp-method", "mcp-name",
                         "last-event-id", "mcp-param-city"]:
                self.assertIn(name, allowed)
            self.assertIsNone(r.header("access-control-allow-credentials"))

    def test_preflightRefused(self) -> None:
        """
        A preflight from any other origin gets 403 and no CORS headers.
        """
        for origin in ["https://evil.example", "http://localhost.evil.test",
                       "https://app.example.com.evil.test", "null"]:
            r = self.request("OPTIONS", "/mcp", headers={"Origin": origin, **self.PREFLIGHT})
            self.assertEqual(r.status, 403, origin)
            self.assertIsNone(r.header("access-control-allow-origin"))
            self.assertIn("--allow-origin", r.json()["error"]["message"])

    def test_credentialsAndMaxAge(self) -> None:
        self.gate.cors = CORS(allowCredentials=True, maxAge=30)
        r = self.request("OPTIONS", "/mcp", headers={"Origin": "http://localhost:1",
                                                     **self.PREFLIGHT})
        self.assertEqual(r.header("access-control-allow-credentials"), "true")
        self.assertEqual(r.header("access-control-max-age"), "30")
        r = self.initialize(Origin="http://localhost:1")
        self.assertEqual(r.header("access-control-allow-credentials"), "true")

    def test_plainOptions(self) -> None:
        """
        An OPTIONS that is no preflight says which methods there are.
        """
        r = self.request("OPTIONS", "/mcp")
        self.assertEqual(r.status, 204)
        self.assertEqual(r.header("allow"), "GET, POST, DELETE, OPTIONS")

    def test_responseHeaders(self) -> None:
        """
        An allowed cross-origin request's answer names its origin and
        exposes the session id; a refused origin's answer does neither.
        """
        r = self.initialize(Origin="https://app.example.com")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("access-control-allow-origin"), "https://app.example.com")
        exposed = {h.strip().lower()
                   for h in (r.header("access-control-expose-headers") or "").split(",")}
        self.assertIn("mcp-session-id", exposed)
        self.assertIsNotNone(r.header("mcp-session-id"))
        refused = self.initialize(Origin="https://evil.example")
        self.assertEqual(refused.status, 403)
        self.assertIsNone(refused.header("access-control-allow-origin"))
        self.assertEqual(len(self.spawner.children), 1)

    def test_refusalsReadable(self) -> None:
        """
        A page of an allowed origin can read the bridge's refusals (401).
        """
        self.gate.credentials = Credentials([KEY1])
        r = self.initialize(Origin="http://localhost:5173")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.header("access-control-allow-origin"), "http://localhost:5173")


class RateLimitTests(FrontTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.gate.limiter = RateLimiter(2.0, 3, self.clock)

    def test_burstThenRefused(self) -> None:
        """
        A client gets its burst, then 429 with Retry-After; the bucket
        refills with time.
        """
        codes = [self.request("GET", "/status").status for _ in range(4)]
        self.assertEqual(codes, [200, 200, 200, 429])
        refused = self.request("GET", "/status")
        self.assertEqual(refused.header("retry-after"), "1")
        self.assertIn("--rate-limit", refused.json()["error"]["message"])
        self.clock.advance(0.5)
        self.assertEqual(self.request("GET", "/status").status, 200)
        self.assertEqual(self.request("GET", "/status").status, 429)

    def test_perClient(self) -> None:
        """
        Each client address has its own bucket; /health and /ping are not
        counted.
        """
        for _ in range(3):
            self.assertEqual(self.request("GET", "/status", host="10.0.0.1").status, 200)
        self.assertEqual(self.request("GET", "/status", host="10.0.0.1").status, 429)
        self.assertEqual(self.request("GET", "/status", host="10.0.0.2").status, 200)
        for _ in range(10):
            self.assertEqual(self.request("GET", "/health", host="10.0.0.1").status, 200)
            self.assertEqual(self.request("GET", "/ping", host="10.0.0.1").status, 200)

    def test_retryAfter(self) -> None:
        limiter = RateLimiter(0.1, 1, self.clock)
        self.assertIsNone(limiter.take("a"))
        self.assertEqual(limiter.take("a"), 10)
        self.clock.advance(5)
        self.assertEqual(limiter.take("a"), 5)

    def test_defaultBurst(self) -> None:
        self.assertEqual(RateLimiter(5, 0, self.clock).burst, 10)
        self.assertEqual(RateLimiter(0.2, 0, self.clock).burst, 1)

    def test_forgetsIdleClients(self) -> None:
        """
        The table of clients stays bounded: clients whose buckets filled up
        again are forgotten.
        """
        limiter = RateLimiter(1.0, 1, self.clock, maxClients=10)
        for n in range(10):
            limiter.take(f"c{n}")
        self.clock.advance(2)
        limiter.take("new")
        self.assertEqual(len(limiter._buckets), 1)

    def test_off(self) -> None:
        limiter = RateLimiter(0, 0, self.clock)
        self.assertTrue(all(limiter.take("a") is None for _ in range(1000)))


class BodySizeTests(FrontTestCase):
    def test_declaredTooLarge(self) -> None:
        """
        A body over the limit gets 413 with a JSON-RPC error, and no child
        starts.
        """
        body = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"x":"' \
            + b"a" * 1200 + b'"}}'
        response, transport = self.send(rawRequest("POST", "/mcp", body, mcpHeaders()))
        self.assertEqual(response.status, 413)
        self.assertIn("1000 bytes", response.json()["error"]["message"])
        self.assertEqual(self.spawner.children, [])

    def test_chunkedTooLarge(self) -> None:
        """
        A chunked body that grows over the limit is refused the same way,
        and what arrived is not kept.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(rawRequest("POST", "/mcp", b"", {
            **mcpHeaders(), "Transfer-Encoding": "chunked"}).replace(
                b"Content-Length: 0\r\n", b""))
        for _ in range(5):
            protocol.dataReceived(b"190\r\n" + b"x" * 400 + b"\r\n")
        request = protocol.requests[-1]
        self.assertTrue(request.tooLarge)
        self.assertEqual(request.content.getvalue(), b"")
        protocol.dataReceived(b"0\r\n\r\n")
        self.assertEqual(parseResponse(transport.value()).status, 413)

    def test_atTheLimit(self) -> None:
        """
        A body of exactly the limit is served.
        """
        body = json.dumps(INIT).encode()
        body += b" " * (1000 - len(body))
        self.assertEqual(len(body), 1000)
        protocol, transport = self.connect()
        protocol.dataReceived(rawRequest("POST", "/mcp", body, mcpHeaders()))
        self.spawner.last.answerInitialize()
        self.assertEqual(parseResponse(transport.value()).status, 200)


class ReadTimeoutTests(FrontTestCase):
    def test_slowRequest(self) -> None:
        """
        A request that trickles in, byte by byte, is cut off at the read
        deadline with 408, however often it sends.
        """
        protocol, transport = self.connect()
        data = rawRequest("GET", "/health")
        for n in range(9):
            protocol.dataReceived(data[n:n + 1])
            self.clock.advance(1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1.5)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(parseResponse(transport.value()).status, 408)

    def test_silentConnection(self) -> None:
        """
        A connection that never sends anything is closed at the deadline.
        """
        protocol, transport = self.connect()
        self.clock.advance(10.5)
        self.assertTrue(transport.disconnecting)

    def test_stuckClientAborted(self) -> None:
        """
        A client that does not even read the 408 loses its connection soon
        after.
        """
        protocol, transport = self.connect()
        self.clock.advance(10.5)
        self.assertTrue(transport.disconnecting)
        aborted: list[bool] = []
        self.patch(transport, "abortConnection", lambda: aborted.append(True))
        self.clock.advance(4.9)
        self.assertEqual(aborted, [])
        self.clock.advance(0.1)
        self.assertEqual(aborted, [True])

    def test_servedInTime(self) -> None:
        """
        A request that arrives whole in time is served, and the deadline
        starts again with the next request on the connection.
        """
        protocol, transport = self.connect()
        self.clock.advance(9)
        protocol.dataReceived(rawRequest("GET", "/health"))
        self.assertEqual(parseResponse(transport.value()).status, 200)
        self.clock.advance(5)
        self.assertFalse(transport.disconnecting)
        transport.clear()
        protocol.dataReceived(b"GET /ping HTTP/1.1\r\n")
        self.clock.advance(10.5)
        self.assertTrue(transport.disconnecting)

    def test_longResponseNotCut(self) -> None:
        """
        Once the request is whole, its answer may take as long as it takes
        (an SSE stream, a slow tool call).
        """
        protocol, transport = self.connect()
        protocol.dataReceived(rawRequest("POST", "/mcp", json.dumps(INIT).encode(),
                                         mcpHeaders()))
        self.clock.advance(25)  # the read deadline is 10 s; the child's start 30
        self.assertFalse(transport.disconnecting)
        self.spawner.last.answerInitialize()
        self.assertEqual(parseResponse(transport.value()).status, 200)

    def test_keepaliveTimeout(self) -> None:
        """
        An idle kept-alive connection closes after the keep-alive timeout.
        """
        site = BridgeSite(self.gate, keepaliveTimeout=30, reactor=self.clock)
        site.readTimeout = 0
        protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(rawRequest("GET", "/ping"))
        self.clock.advance(29)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(2)
        self.assertTrue(transport.disconnecting)


class WriteTests(FrontTestCase):
    """
    A response's status line, headers and first piece of body go to the
    transport in one write.
    """

    def connectRecording(self) -> tuple[Any, WritesTransport]:
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        protocol = self.site.buildProtocol(address)
        transport = WritesTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport

    def call(self, meta: Optional[dict[str, Any]] = None) -> tuple[Any, Any, Any, Any]:
        """
        Open a session, then POST a tool call in it on a recording
        connection.

        @return: the call, the session's child, the connection and its
            transport.
        """
        sid = self.initialize().header("mcp-session-id")
        assert sid is not None
        child = self.spawner.last
        protocol, transport = self.connectRecording()
        params: dict[str, Any] = {"name": "t", "arguments": {}}
        if meta:
            params["_meta"] = meta
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
        protocol.dataReceived(rawRequest("POST", "/mcp", json.dumps(call).encode(),
                                         mcpHeaders(**{"Mcp-Session-Id": sid})))
        self.sid = sid
        return call, child, protocol, transport

    def test_jsonAnswerOneWrite(self) -> None:
        protocol, transport = self.connectRecording()
        protocol.dataReceived(rawRequest("POST", "/mcp", json.dumps(INIT).encode(),
                                         mcpHeaders()))
        self.spawner.last.answerInitialize()
        self.assertEqual(len(transport.writes), 1)
        response = parseResponse(transport.writes[0])
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json()["id"], 1)

    def assertNotJoined(self, transport: WritesTransport, size: int) -> None:
        """
        The large piece left with the headers in one call, but as a piece
        of its own: nothing joined it to them (which would copy it).
        """
        self.assertEqual(len(transport.pieces), 1)
        self.assertTrue(transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n"))
        large = max(transport.pieces[0], key=len)
        self.assertGreater(len(large), size)
        self.assertFalse(large.startswith(b"HTTP/"))

    def test_callServedLean(self) -> None:
        """
        A tool call answered with JSON is served from start to end by a
        L{LeanRequest}, without handing over to a full request; one whose
        answer becomes an event stream hands over.
        """
        for meta, lean in [(None, True), ({"progressToken": "p"}, False)]:
            call, child, protocol, transport = self.call(meta)
            session = self.manager.get(self.sid)
            assert session is not None
            [stream] = session.streams.values()
            assert stream.connection is not None
            request = stream.connection.request
            self.assertIsInstance(request, LeanRequest)
            if meta:
                child.send({"jsonrpc": "2.0", "method": "notifications/progress",
                            "params": {"progressToken": "p", "progress": 1}})
            child.answer(call, {"content": []})
            self.assertEqual(isinstance(request, LeanRequest), lean)
            self.assertTrue(request.finished)
            self.assertEqual(parseResponse(b"".join(transport.writes)).status, 200)

    def test_largeAnswerNotJoined(self) -> None:
        call, child, protocol, transport = self.call()
        child.answer(call, {"content": [{"type": "text", "text": "x" * 100000}]})
        self.assertNotJoined(transport, 100000)
        self.assertEqual(parseResponse(b"".join(transport.writes)).json()["id"], 7)

    def test_streamHeadersWithFirstEvent(self) -> None:
        """
        An event stream's headers leave with its first event; later events
        are written as they come.
        """
        call, child, protocol, transport = self.call({"progressToken": "p"})
        self.assertEqual(transport.writes, [])
        child.send({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": "p", "progress": 1}})
        self.assertEqual(len(transport.writes), 1)
        first = transport.writes[0]
        self.assertIn(b"200 OK", first)
        self.assertIn(b"text/event-stream", first)
        self.assertIn(b"notifications/progress", first)
        child.send({"jsonrpc": "2.0", "id": 7, "result": {"content": []}})
        self.assertGreater(len(transport.writes), 1)
        self.assertNotIn(b"HTTP/1.1", b"".join(transport.writes[1:]))
        self.assertIn(b'"id": 7', b"".join(transport.writes[1:]).replace(b'"id":7', b'"id": 7'))

    def test_largeFirstEventNotJoined(self) -> None:
        call, child, protocol, transport = self.call({"progressToken": "p"})
        child.send({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": "p", "progress": 1, "message": "y" * 100000}})
        self.assertNotJoined(transport, 100000)
        self.assertIn(b"text/event-stream", transport.writes[0])

    def test_clientGoneCancels(self) -> None:
        """
        A client that goes away before its answer cancels the answer: the
        stream lets go of the connection, and the answer, when it comes,
        is not written.
        """
        call, child, protocol, transport = self.call()
        session = self.manager.get(self.sid)
        assert session is not None
        [stream] = session.streams.values()
        self.assertIsNotNone(stream.connection)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertIsNone(stream.connection)
        child.answer(call, {"content": []})
        self.assertEqual(transport.writes, [])

    def test_emptyBody(self) -> None:
        """
        An answer without a body still goes out (202 for a notification).
        """
        response = self.initialize()
        sid = response.header("mcp-session-id")
        assert sid is not None
        protocol, transport = self.connectRecording()
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        protocol.dataReceived(rawRequest("POST", "/mcp", json.dumps(note).encode(),
                                         mcpHeaders(**{"Mcp-Session-Id": sid})))
        self.assertEqual(parseResponse(b"".join(transport.writes)).status, 202)


class SessionStreamsTests(FrontTestCase):
    config = SessionConfig(maxStreams=2)

    def test_maxStreams(self) -> None:
        """
        A session may have so many streams open; one more gets 429 with
        Retry-After, and once one ends another may open.
        """
        response = self.initialize()
        sid = response.header("mcp-session-id")
        assert sid is not None
        child = self.spawner.last
        transports = []
        for n in range(2):
            protocol, transport = self.connect()
            call = {"jsonrpc": "2.0", "id": 10 + n, "method": "tools/call",
                    "params": {"name": "slow", "arguments": {}}}
            protocol.dataReceived(rawRequest("POST", "/mcp", json.dumps(call).encode(),
                                             mcpHeaders(**{"Mcp-Session-Id": sid})))
            transports.append(transport)
        call = {"jsonrpc": "2.0", "id": 12, "method": "tools/call",
                "params": {"name": "slow", "arguments": {}}}
        refused = self.request("POST", "/mcp", call, mcpHeaders(**{"Mcp-Session-Id": sid}))
        self.assertEqual(refused.status, 429)
        self.assertEqual(refused.header("retry-after"), "1")
        self.assertEqual(refused.json()["id"], 12)
        self.assertNotIn(12, [m.get("id") for m in child.received()])
        child.answer(child.received()[-1], {"content": []})
        accepted_protocol, accepted = self.connect()
        accepted_protocol.dataReceived(rawRequest(
            "POST", "/mcp", json.dumps(call).encode(), mcpHeaders(**{"Mcp-Session-Id": sid})))
        self.assertIn(12, [m.get("id") for m in child.received()])


class BadInputTests(FrontTestCase):
    """
    Inputs the fuzzers of tests/test_fuzz.py found mishandled, each now a
    4xx with a JSON-RPC error and no logged traceback.
    """

    def assertJSONError(self, response: Response, status: int) -> Any:
        self.assertEqual(response.status, status, response)
        self.assertEqual(response.header("content-type"), "application/json")
        body = response.json()
        self.assertEqual(body["jsonrpc"], "2.0")
        self.assertIsInstance(body["error"]["code"], int)
        return body

    def test_badBodies(self) -> None:
        """
        Nesting too deep, NaN and Infinity, and bodies not in UTF-8 are
        parse errors; an invalid message's id is echoed only if it is one.
        """
        self.site.maxBodySize = 0
        for body in [b"[" * 100000, b'{"jsonrpc":"2.0","id":NaN,"method":"ping"}',
                     b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":-Infinity}}',
                     json.dumps(INIT).encode("utf-16"), b"\xef\xbb\xbf" + json.dumps(INIT).encode(),
                     b'{"jsonrpc":"2.0","id":1,"method":"\xff"}']:
            body = self.assertJSONError(self.request("POST", "/mcp", body, mcpHeaders()), 400)
            self.assertEqual(body["error"]["code"], -32700)
        for bad in ["false", "1.5", "[]", "{}"]:
            response = self.request("POST", "/mcp", f'{{"jsonrpc":"1.0","id":{bad}}}'.encode(),
                                    mcpHeaders())
            self.assertIsNone(self.assertJSONError(response, 400)["id"])
        response = self.request("POST", "/mcp", b'{"jsonrpc":"1.0","id":"x\\ud800"}',
                                mcpHeaders())
        self.assertEqual(self.assertJSONError(response, 400)["id"], "x\ud800")
        self.assertEqual(self.spawner.children, [])

    def test_hugeLastEventId(self) -> None:
        sid = self.initialize().header("mcp-session-id")
        assert sid is not None
        response = self.request("GET", "/mcp", b"", {
            "Accept": "text/event-stream", "Mcp-Session-Id": sid,
            "Last-Event-ID": "1." + "1" * 5000})
        self.assertIn("Last-Event-ID", self.assertJSONError(response, 400)["error"]["message"])

    def test_noRoute(self) -> None:
        """
        A path or method without a route gets a JSON-RPC error, not
        Klein's HTML page.
        """
        response = self.request("PUT", "/mcp", b"{}", mcpHeaders())
        self.assertJSONError(response, 405)
        self.assertEqual(response.header("allow"), "DELETE, GET, POST")
        self.assertJSONError(self.request("GET", "/nowhere"), 404)
        self.assertJSONError(self.request("GET", "/servers/a/b/c"), 404)
        self.assertJSONError(self.request("GET", "/messages"), 405)

    def test_head(self) -> None:
        """
        HEAD is answered only where a GET changes nothing: a HEAD /sse or
        /mcp opens no session.
        """
        for path in ["/sse", "/mcp", "/servers/x/sse"]:
            response, _ = self.send(rawRequest("HEAD", path, b"", {
                "Accept": "text/event-stream"}))
            self.assertEqual(response.status, 405)
        self.assertEqual(self.manager.count, 0)
        self.assertEqual(self.spawner.children, [])
        response, _ = self.send(rawRequest("HEAD", "/health"))
        self.assertEqual(response.status, 200)

    def test_unroutableURL(self) -> None:
        """
        A path that is not UTF-8 once decoded, or a Host that werkzeug
        cannot route, is a 400 with a JSON-RPC error, on every path.
        """
        self.assertJSONError(self.request("GET", "/servers/%ff/mcp"), 400)
        for host in ["a..b", "x" * 64 + ".test"]:
            for path, status in [("/health", 400), ("/status", 400), ("/mcp", 421)]:
                # /mcp does not go through the router; its Host check refuses.
                response, _ = self.send(rawRequest("GET", path, b"", {"Host": host}))
                self.assertJSONError(response, status)
        response, _ = self.send(b"GET /health HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n")
        self.assertJSONError(response, 400)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_lastEventIdFromTheFuture(self) -> None:
        """
        A Last-Event-ID beyond the last event sent is refused: the events
        that come next would carry numbers the client says it has seen.
        """
        sid = self.initialize().header("mcp-session-id")
        assert sid is not None
        response = self.request("GET", "/mcp", b"", {
            "Accept": "text/event-stream", "Mcp-Session-Id": sid, "Last-Event-ID": "0.999"})
        self.assertIn("never sent", self.assertJSONError(response, 400)["error"]["message"])
