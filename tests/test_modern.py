"""
Unit tests of the stateless protocol era (MCP 2026-07-28) and of
C{--stateless}: the pure helpers of L{mcpbridge.modern}, the validation
ladder over in-memory HTTP (StubTreq) against a L{ChildPool} of fake
children, C{Mcp-Param-*} checks against the child's tool schemas, a server
that only speaks the session era, and the session-era pool.
"""

from __future__ import annotations

import json
import signal
from typing import Any, Optional

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from mcpbridge import modern
from mcpbridge.guard import OriginGuard
from mcpbridge.jsonrpc import Message
from mcpbridge.pool import MODERN, SESSION, ChildPool, PoolConfig
from mcpbridge.web import BridgeApp

from .fakes import FakeChild, StubHTTP, makeManager, parseSSE

URL = "http://127.0.0.1:3000/mcp"
ACCEPT = "application/json, text/event-stream"
VERSION = "2026-07-28"
PV = "io.modelcontextprotocol/protocolVersion"
CAPS = "io.modelcontextprotocol/clientCapabilities"
INFO = "io.modelcontextprotocol/clientInfo"
_UNSET: Any = object()

REGION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
}
WEATHER_TOOL: dict[str, Any] = {"name": "weather", "inputSchema": REGION_SCHEMA}

# Helpers.

def envelope(version: Any = VERSION, caps: Any = _UNSET) -> dict[str, Any]:
    """
    A complete stateless C{_meta} envelope.
    """
    return {PV: version, CAPS: {"sampling": {}} if caps is _UNSET else caps,
            INFO: {"name": "t", "version": "1"}}


def modernRequest(id: Any, method: str, params: Optional[dict[str, Any]] = None,
                  meta: Any = _UNSET) -> dict[str, Any]:
    """
    A stateless request; C{meta} replaces the envelope (L{None} leaves it out).
    """
    p = dict(params or {})
    if meta is _UNSET:
        p["_meta"] = envelope()
    elif meta is not None:
        p["_meta"] = meta
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": p}


def toolCall(id: Any, name: str = "weather", arguments: Optional[dict[str, Any]] = None,
             meta: Any = _UNSET) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    return modernRequest(id, "tools/call", params, meta)


def routingHeaders(body: Any) -> dict[str, Any]:
    """
    The headers a conforming client sends with a stateless C{body}.
    """
    headers: dict[str, Any] = {}
    if not isinstance(body, dict):
        return {"MCP-Protocol-Version": VERSION}
    params: dict[str, Any] = body["params"] if isinstance(body.get("params"), dict) else {}
    meta: dict[str, Any] = params["_meta"] if isinstance(params.get("_meta"), dict) else {}
    headers["MCP-Protocol-Version"] = meta.get(PV, VERSION)
    if "method" in body:
        headers["Mcp-Method"] = body["method"]
    named = modern.NAMED_PARAMS.get(body.get("method", ""))
    if named is not None and isinstance(params.get(named), str):
        headers["Mcp-Name"] = params[named]
    return headers




def dummyRequest(headers: dict[str, list[str]]) -> Any:
    """
    A bare request carrying C{headers}, for the helpers that read them.
    """
    request = DummyRequest([b"mcp"])
    for name, values in headers.items():
        for value in values:
            request.requestHeaders.addRawHeader(name.encode(), value.encode())
    return request


def message(obj: dict[str, Any]) -> Message:
    return Message.fromObject(obj)


class HTTPCase(StubHTTP, SynchronousTestCase):
    """
    Requests over StubTreq to C{self.app}, which subclasses build.
    """

    http: Any  # a StubTreq, whose methods mypy cannot see
    spawner: Any

    def request(self, method: str, body: Any = None, headers: Optional[dict[str, Any]] = None,
                accept: str = ACCEPT, routing: bool = True) -> "Deferred[Any]":
        """
        Send a request; a POST gets the routing headers of its body unless
        C{routing} is false; a header given as L{None} is left out.
        """
        h: dict[str, Any] = {"Accept": accept, "Content-Type": "application/json"}
        if routing and method == "POST":
            h.update(routingHeaders(body))
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        d: Deferred[Any] = self.http.request(method, URL, data=data, headers=h)
        self.http.flush()
        return d

    def post(self, body: Any, headers: Optional[dict[str, Any]] = None,
             routing: bool = True) -> "Deferred[Any]":
        return self.request("POST", body, headers, routing=routing)

    def assertError(self, d: "Deferred[Any]", status: int, code: int,
                    id: Any) -> dict[str, Any]:
        """
        The request got C{status} with a JSON-RPC error C{code} answering
        request C{id}; return the error member.
        """
        response, body = self.respond(d)
        self.assertEqual(response.code, status, body)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        obj = json.loads(body)
        self.assertEqual(obj["jsonrpc"], "2.0")
        self.assertEqual(obj["id"], id)
        self.assertEqual(obj["error"]["code"], code, obj)
        self.assertIsInstance(obj["error"]["message"], str)
        error: dict[str, Any] = obj["error"]
        return error

    def assertNoSessionId(self, response: Any) -> None:
        self.assertIsNone(response.headers.getRawHeaders("mcp-session-id"))

    def startModernPool(self) -> None:
        """
        A fake manager, spawner and clock, and C{self.pool}: a started modern
        pool of size 1 whose one child, C{self.child}, has not answered yet.
        """
        self.manager, self.spawner, self.clock = makeManager()
        self.pool = ChildPool(MODERN, self.manager.command, PoolConfig(size=1), self.clock,
                              self.spawner, self.spawner.killpg)
        self.pool.startService()
        self.addCleanup(self.pool.stopService)
        self.assertEqual(len(self.spawner.children), 1)
        self.child = self.spawner.last

    def serve(self, pool: ChildPool, stateless: Optional[ChildPool] = None) -> None:
        """C{self.app} and C{self.http}: the bridge's routes over C{pool}."""
        self.app = BridgeApp.single(self.manager, OriginGuard(), self.clock, pool,
                                    stateless=stateless)
        self.http = StubTreq(self.app.resource())


def received(child: FakeChild, method: str) -> list[dict[str, Any]]:
    """
    The messages of C{method} the bridge wrote to C{child}.
    """
    return [m for m in child.received() if m.get("method") == method]


# 1. Pure helpers.

class DecodeHeaderValueTests(SynchronousTestCase):
    def test_literal(self) -> None:
        """
        A value without the sentinel is taken literally, base64-looking or
        not.
        """
        self.assertEqual(modern.decodeHeaderValue("eu-west"), "eu-west")
        self.assertEqual(modern.decodeHeaderValue("SGVsbG8="), "SGVsbG8=")
        self.assertEqual(modern.decodeHeaderValue(""), "")

    def test_canonicalBase64(self) -> None:
        """
        C{=?base64?<canonical base64>?=} decodes to its UTF-8 text.
        """
        self.assertEqual(modern.decodeHeaderValue("=?base64?SGVsbG8=?="), "Hello")
        self.assertEqual(modern.decodeHeaderValue("=?base64?w6l0w6k=?="), "\u00e9t\u00e9")
        self.assertEqual(modern.decodeHeaderValue("=?base64??="), "")

    def test_badPadding(self) -> None:
        """
        A wrapped payload missing its padding is malformed: L{None}.
        """
        self.assertIsNone(modern.decodeHeaderValue("=?base64?SGVsbG8?="))

    def test_badCharacters(self) -> None:
        """
        A wrapped payload with characters outside the base64 alphabet is
        malformed: L{None}.
        """
        self.assertIsNone(modern.decodeHeaderValue("=?base64?SGVs!!!bG8=?="))
        self.assertIsNone(modern.decodeHeaderValue("=?base64?SGVs bG8=?="))

    def test_nonCanonical(self) -> None:
        """
        A payload whose trailing bits are not zero (it does not re-encode to
        itself) is malformed: L{None}.
        """
        self.assertIsNone(modern.decodeHeaderValue("=?base64?SGVsbG9=?="))

    def test_missingSuffixIsLiteral(self) -> None:
        """
        Without the closing C{?=} the sentinel does not apply and the value
        is literal.
        """
        self.assertEqual(modern.decodeHeaderValue("=?base64?SGVsbG8="), "=?base64?SGVsbG8=")

    def test_nonUTF8(self) -> None:
        """
        A canonical payload that is not UTF-8 text is malformed: L{None}.
        """
        self.assertIsNone(modern.decodeHeaderValue("=?base64?/w==?="))
        self.assertIsNone(modern.decodeHeaderValue("=?base64?wyg=?="))


class ParamHeaderTests(SynchronousTestCase):
    """
    L{modern.checkParamHeaders} against the conformance table
    (docs/conformance.md section 3.4) and the SDK's rules.
    """

    def check(self, arguments: Any, headers: dict[str, list[str]],
              schema: Any = REGION_SCHEMA) -> Optional[str]:
        return modern.checkParamHeaders(schema, arguments, headers)

    def test_base64Accepted(self) -> None:
        """
        A canonical base64 header matching the argument is accepted.
        """
        self.assertIsNone(self.check({"region": "Hello"}, {"region": ["=?base64?SGVsbG8=?="]}))

    def test_badPaddingRejected(self) -> None:
        """
        Bad base64 padding is a mismatch even though it would decode to the
        argument.
        """
        self.assertIsNotNone(self.check({"region": "Hello"}, {"region": ["=?base64?SGVsbG8?="]}))

    def test_badCharactersRejected(self) -> None:
        """
        Characters outside base64 in a wrapped value are a mismatch.
        """
        self.assertIsNotNone(self.check({"region": "Hello"},
                                        {"region": ["=?base64?SGVs!!!bG8=?="]}))

    def test_literalAccepted(self) -> None:
        """
        Without the sentinel, the header is compared literally.
        """
        self.assertIsNone(self.check({"region": "SGVsbG8="}, {"region": ["SGVsbG8="]}))
        self.assertIsNone(self.check({"region": "=?base64?SGVsbG8="},
                                     {"region": ["=?base64?SGVsbG8="]}))

    def test_literalMismatch(self) -> None:
        """
        A literal header that differs from the argument (case counts) is a
        mismatch.
        """
        self.assertIsNotNone(self.check({"region": "eu"}, {"region": ["us"]}))
        self.assertIsNotNone(self.check({"region": "eu"}, {"region": ["EU"]}))

    def test_headerOmitted(self) -> None:
        """
        An argument present while its header is omitted is a mismatch.
        """
        self.assertIsNotNone(self.check({"region": "test-value"}, {}))

    def test_headerWithoutArgument(self) -> None:
        """
        A header present while its argument is absent, or null, is a
        mismatch.
        """
        self.assertIsNotNone(self.check({}, {"region": ["eu"]}))
        self.assertIsNotNone(self.check({"region": None}, {"region": ["eu"]}))
        self.assertIsNotNone(self.check(None, {"region": ["eu"]}))

    def test_bothAbsent(self) -> None:
        """
        No argument (or a null one) and no header agree.
        """
        self.assertIsNone(self.check({}, {}))
        self.assertIsNone(self.check({"region": None}, {}))

    def test_duplicatedHeader(self) -> None:
        """
        A header given twice is a mismatch, even with equal values.
        """
        self.assertIsNotNone(self.check({"region": "eu"}, {"region": ["eu", "eu"]}))

    def test_unknownHeadersIgnored(self) -> None:
        """
        C{Mcp-Param-*} headers no property declares pass through unchecked.
        """
        self.assertIsNone(self.check({"region": "eu"}, {"region": ["eu"], "other": ["x"]}))

    def test_integerNumeric(self) -> None:
        """
        Integer properties compare by value: C{42} matches C{"42"} and
        C{"42.0"}, not C{"42.5"}, C{"43"} or C{"4.2e1"}.
        """
        schema = {"type": "object",
                  "properties": {"count": {"type": "integer", "x-mcp-header": "Count"}}}
        for header in ("42", "42.0", "42.000"):
            self.assertIsNone(self.check({"count": 42}, {"count": [header]}, schema), header)
        self.assertIsNone(self.check({"count": 42.0}, {"count": ["42"]}, schema))
        self.assertIsNone(self.check({"count": -7}, {"count": ["-7.0"]}, schema))
        for header in ("42.5", "43", "4.2e1", " 42"):
            self.assertIsNotNone(self.check({"count": 42}, {"count": [header]}, schema), header)

    def test_booleanRendering(self) -> None:
        """
        Booleans render as C{true}/C{false}, exactly.
        """
        schema = {"type": "object",
                  "properties": {"dry": {"type": "boolean", "x-mcp-header": "Dry-Run"}}}
        self.assertIsNone(self.check({"dry": True}, {"dry-run": ["true"]}, schema))
        self.assertIsNone(self.check({"dry": False}, {"dry-run": ["false"]}, schema))
        self.assertIsNotNone(self.check({"dry": True}, {"dry-run": ["True"]}, schema))
        self.assertIsNotNone(self.check({"dry": False}, {"dry-run": ["0"]}, schema))

    def test_nestedProperty(self) -> None:
        """
        An annotation on a nested property (a chain of C{properties}) names
        the argument at that path.
        """
        schema = {"type": "object", "properties": {"where": {
            "type": "object",
            "properties": {"zone": {"type": "string", "x-mcp-header": "Zone"}}}}}
        self.assertEqual(modern.headerParameters(schema), {"zone": (("where", "zone"), "string")})
        self.assertIsNone(self.check({"where": {"zone": "z1"}}, {"zone": ["z1"]}, schema))
        self.assertIsNotNone(self.check({"where": {"zone": "z1"}}, {"zone": ["z2"]}, schema))
        self.assertIsNotNone(self.check({"where": {"zone": "z1"}}, {}, schema))
        self.assertIsNotNone(self.check({"zone": "z1"}, {"zone": ["z1"]}, schema))

    def test_invalidTokenNotValidated(self) -> None:
        """
        An annotation that is not an HTTP token makes the schema invalid:
        nothing is validated.
        """
        schema = {"type": "object",
                  "properties": {"region": {"type": "string", "x-mcp-header": "Bad Name"}}}
        self.assertIsNone(modern.headerParameters(schema))
        self.assertIsNone(self.check({"region": "eu"}, {"bad name": ["us"]}, schema))
        self.assertIsNone(self.check({"region": "eu"}, {}, schema))

    def test_objectPropertyNotValidated(self) -> None:
        """
        An annotation on an object-typed property makes the schema invalid:
        nothing is validated, not even its valid siblings.
        """
        schema = {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "where": {"type": "object", "x-mcp-header": "Where"}}}
        self.assertIsNone(modern.headerParameters(schema))
        self.assertIsNone(self.check({"region": "eu"}, {"region": ["us"]}, schema))

    def test_duplicateTokenNotValidated(self) -> None:
        """
        Two annotations equal but for case make the schema invalid: nothing
        is validated.
        """
        schema = {"type": "object", "properties": {
            "a": {"type": "string", "x-mcp-header": "Region"},
            "b": {"type": "string", "x-mcp-header": "REGION"}}}
        self.assertIsNone(modern.headerParameters(schema))
        self.assertIsNone(self.check({"a": "x", "b": "y"}, {"region": ["z"]}, schema))

    def test_unreachableAnnotationNotValidated(self) -> None:
        """
        An annotation off a pure C{properties} chain (here under C{anyOf})
        makes the schema invalid: nothing is validated.
        """
        schema = {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"}},
            "anyOf": [{"properties": {"b": {"type": "string", "x-mcp-header": "B"}}}]}
        self.assertIsNone(modern.headerParameters(schema))
        self.assertIsNone(self.check({"region": "eu"}, {"region": ["us"]}, schema))

    def test_typeListNotValidated(self) -> None:
        """
        An annotation on a property whose C{type} is a list (C{["string",
        "null"]}) is invalid, as in the SDK: nothing is validated, and
        nothing raises.
        """
        schema = {"type": "object", "properties": {
            "region": {"type": ["string", "null"], "x-mcp-header": "Region"}}}
        self.assertIsNone(modern.headerParameters(schema))
        self.assertIsNone(self.check({"region": "eu"}, {"region": ["us"]}, schema))


    def test_hugeIntegerMismatch(self) -> None:
        """
        An integer argument too large for a float (a client can send one)
        is compared, not crashed on: C{"1"} does not match it.
        """
        schema = {"type": "object",
                  "properties": {"count": {"type": "integer", "x-mcp-header": "Count"}}}
        self.assertIsNotNone(self.check({"count": 10 ** 400}, {"count": ["1"]}, schema))
        self.assertIsNone(self.check({"count": 10 ** 400}, {"count": [str(10 ** 400)]}, schema))


    def test_instanceDataIsNotAnnotation(self) -> None:
        """
        An C{x-mcp-header} key inside instance data (C{examples}, C{default},
        C{const}) is data, not an annotation (the SDK never walks into it):
        the real annotation is still validated.
        """
        schema = {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "opts": {"type": "object", "default": {"x-mcp-header": "literal data"}}}}
        self.assertEqual(modern.headerParameters(schema), {"region": (("region",), "string")})
        self.assertIsNotNone(self.check({"region": "eu"}, {"region": ["us"]}, schema))


    def test_paramHeaders(self) -> None:
        """
        L{modern.paramHeaders} collects C{Mcp-Param-*} headers by lower-cased
        token, whatever the case of their names, keeping every value.
        """
        request = dummyRequest({"Mcp-Param-Region": ["eu"], "MCP-PARAM-region": ["us"],
                                "mcp-param-Dry-Run": ["true"], "Mcp-Method": ["tools/call"]})
        self.assertEqual(modern.paramHeaders(request),
                         {"region": ["eu", "us"], "dry-run": ["true"]})


class StatusOfTests(SynchronousTestCase):
    def status(self, code: Any) -> int:
        return modern.statusOf(message({"jsonrpc": "2.0", "id": 1,
                                        "error": {"code": code, "message": "x"}}))

    def test_errors(self) -> None:
        """
        Errors map as the SDK's ERROR_CODE_HTTP_STATUS: the request-shape
        and envelope errors 400, method not found 404.
        """
        for code in (-32700, -32600, -32602, -32020, -32021, -32022):
            self.assertEqual(self.status(code), 400, code)
        self.assertEqual(self.status(-32601), 404)

    def test_otherErrors(self) -> None:
        """
        Any other error, internal errors included, is 200.
        """
        for code in (-32603, -32000, -32001, 1, 0):
            self.assertEqual(self.status(code), 200, code)

    def test_result(self) -> None:
        """
        A result is 200.
        """
        self.assertEqual(modern.statusOf(message({"jsonrpc": "2.0", "id": 1, "result": {}})),
                         200)


class IsModernTests(SynchronousTestCase):
    def isModern(self, headers: dict[str, list[str]], body: Any = None) -> bool:
        return modern.isModern(dummyRequest(headers), body)

    def test_noHeaderNoBody(self) -> None:
        """
        Without a version header or a body, a request is of the session era.
        """
        self.assertFalse(self.isModern({}))

    def test_sessionVersionHeader(self) -> None:
        """
        A session-era version header means the session era, whatever the
        body carries.
        """
        for version in ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"):
            self.assertFalse(self.isModern({"MCP-Protocol-Version": [version]},
                                           modernRequest(1, "tools/list")), version)

    def test_modernHeader(self) -> None:
        """
        C{2026-07-28}, or any version the session era does not know
        (C{v999}), means the stateless era.
        """
        self.assertTrue(self.isModern({"MCP-Protocol-Version": [VERSION]}))
        self.assertTrue(self.isModern({"mcp-protocol-version": ["v999"]}))

    def test_modernHeaderIgnoresSession(self) -> None:
        """
        A stateless version header wins over an C{Mcp-Session-Id}.
        """
        self.assertTrue(self.isModern({"MCP-Protocol-Version": [VERSION],
                                       "Mcp-Session-Id": ["abc"]}))

    def test_envelopeWithoutHeader(self) -> None:
        """
        Without a version header, a body carrying the stateless envelope
        and no session id means the stateless era.
        """
        self.assertTrue(self.isModern({}, modernRequest(1, "tools/list")))

    def test_envelopeWithSession(self) -> None:
        """
        An C{Mcp-Session-Id} keeps an enveloped body without version header
        in the session era.
        """
        self.assertFalse(self.isModern({"Mcp-Session-Id": ["abc"]},
                                       modernRequest(1, "tools/list")))

    def test_noEnvelope(self) -> None:
        """
        Without a version header, a body without the envelope (initialize,
        a batch, a C{_meta} without the protocol version) is of the session
        era.
        """
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25"}}
        self.assertFalse(self.isModern({}, init))
        self.assertFalse(self.isModern({}, [modernRequest(1, "tools/list")]))
        self.assertFalse(self.isModern({}, modernRequest(1, "tools/list", meta={CAPS: {}})))


# 2. The ladder over HTTP.

DISCOVER_RESULT = {"supportedVersions": [VERSION], "capabilities": {"tools": {}},
                   "serverInfo": {"name": "fake", "version": "1"}}


class ModernCase(HTTPCase):
    """
    A bridge whose modern pool has one ready child, C{self.child}.
    """

    def setUp(self) -> None:
        self.startModernPool()
        self.discover = self.child.received()[0]
        self.child.answer(self.discover, DISCOVER_RESULT)
        self.assertIs(self.pool.speaks, True)
        self.serve(self.pool)

    def forwarded(self) -> list[dict[str, Any]]:
        """
        What the bridge wrote to the child after priming it.
        """
        return self.child.received()[1:]


class PrimingTests(ModernCase):
    def test_discoverEnvelope(self) -> None:
        """
        The pool primes its child with C{server/discover} carrying a full
        stateless envelope (never an invalid first frame), under an
        integer id of its own.
        """
        self.assertEqual(self.discover["method"], "server/discover")
        self.assertIsInstance(self.discover["id"], int)
        meta = self.discover["params"]["_meta"]
        self.assertEqual(meta[PV], VERSION)
        self.assertIsInstance(meta[CAPS], dict)
        self.assertEqual(self.pool.versions, (VERSION,))


class EnvelopeTests(ModernCase):
    """
    Rung 1: the C{_meta} envelope, checked before the headers.
    """

    def test_missingMeta(self) -> None:
        """
        A request without C{params._meta} gets 400, -32602 echoing its id,
        even with no C{Mcp-Method} header, and never reaches the child.
        """
        body = modernRequest(101, "server/discover", meta=None)
        d = self.post(body, {"Mcp-Method": None})
        self.assertError(d, 400, -32602, 101)
        self.assertEqual(self.forwarded(), [])

    def test_missingParams(self) -> None:
        """
        A request without C{params} at all gets 400, -32602.
        """
        body = {"jsonrpc": "2.0", "id": "p", "method": "tools/list"}
        self.assertError(self.post(body), 400, -32602, "p")

    def test_missingProtocolVersion(self) -> None:
        """
        C{_meta} without the protocol version: 400, -32602, before the
        header rung (whose C{Mcp-Method} is wrong here too).
        """
        body = modernRequest(102, "server/discover", meta={CAPS: {}})
        d = self.post(body, {"MCP-Protocol-Version": VERSION, "Mcp-Method": "tools/list"})
        self.assertError(d, 400, -32602, 102)
        self.assertEqual(self.forwarded(), [])

    def test_missingClientCapabilities(self) -> None:
        """
        C{_meta} without the client capabilities: 400, -32602, before the
        header rung.
        """
        body = modernRequest(104, "server/discover", meta={PV: VERSION})
        d = self.post(body, {"Mcp-Method": None})
        self.assertError(d, 400, -32602, 104)
        self.assertEqual(self.forwarded(), [])

    def test_clientInfoOptional(self) -> None:
        """
        C{clientInfo} is optional: a request without it reaches the child.
        """
        body = modernRequest(103, "server/discover", meta={PV: VERSION, CAPS: {}})
        d = self.post(body)
        [sent] = self.forwarded()
        self.child.answer(sent, DISCOVER_RESULT)
        response, raw = self.respond(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(raw)["id"], 103)


class HeaderTests(ModernCase):
    """
    Rung 2: C{MCP-Protocol-Version}, C{Mcp-Method} and C{Mcp-Name} against
    the body.
    """

    def assertReachesChild(self, d: "Deferred[Any]", clientId: Any) -> dict[str, Any]:
        """
        The request was forwarded; answer it and check the client's 200.
        """
        sent = self.forwarded()[-1]
        self.child.answer(sent, {"ok": True})
        response, raw = self.respond(d)
        self.assertEqual(response.code, 200, raw)
        self.assertEqual(json.loads(raw), {"jsonrpc": "2.0", "id": clientId,
                                           "result": {"ok": True}})
        return sent

    def test_versionHeaderMismatch(self) -> None:
        """
        Header C{2026-07-28} with C{_meta} version C{v999}: 400, -32020 (the
        header rung comes before the version rung).
        """
        body = modernRequest(302, "server/discover", meta=envelope("v999"))
        d = self.post(body, {"MCP-Protocol-Version": VERSION})
        self.assertError(d, 400, -32020, 302)
        self.assertEqual(self.forwarded(), [])

    def test_versionHeaderAbsent(self) -> None:
        """
        An enveloped body without C{MCP-Protocol-Version} is stateless
        (no session id), and the absent header is a mismatch: 400, -32020.
        """
        body = modernRequest(5, "tools/list")
        d = self.post(body, {"MCP-Protocol-Version": None})
        self.assertError(d, 400, -32020, 5)
        self.assertEqual(self.forwarded(), [])

    def test_methodMissing(self) -> None:
        """
        No C{Mcp-Method}: 400, -32020.
        """
        d = self.post(modernRequest(1, "tools/list"), {"Mcp-Method": None})
        self.assertError(d, 400, -32020, 1)
        self.assertEqual(self.forwarded(), [])

    def test_methodDifferent(self) -> None:
        """
        C{Mcp-Method} naming another method: 400, -32020.
        """
        d = self.post(modernRequest(1, "tools/list"), {"Mcp-Method": "prompts/list"})
        self.assertError(d, 400, -32020, 1)
        self.assertEqual(self.forwarded(), [])

    def test_methodValueCaseSensitive(self) -> None:
        """
        Header values compare case-sensitively: C{TOOLS/LIST} is a
        mismatch.
        """
        d = self.post(modernRequest("x", "tools/list"), {"Mcp-Method": "TOOLS/LIST"})
        self.assertError(d, 400, -32020, "x")
        self.assertEqual(self.forwarded(), [])

    def test_headerNamesCaseInsensitive(self) -> None:
        """
        Header names compare case-insensitively: C{mcp-method} and
        C{MCP-METHOD} are accepted.
        """
        for i, name in enumerate(("mcp-method", "MCP-METHOD")):
            d = self.post(modernRequest(i, "tools/list"), {"Mcp-Method": None, name: "tools/list"},
                          routing=True)
            sent = self.assertReachesChild(d, i)
            self.assertEqual(sent["method"], "tools/list")

    def test_nameMissing(self) -> None:
        """
        tools/call without C{Mcp-Name}: 400, -32020.
        """
        d = self.post(toolCall(3, "test_simple_text"), {"Mcp-Name": None})
        self.assertError(d, 400, -32020, 3)
        self.assertEqual(self.forwarded(), [])

    def test_nameWrong(self) -> None:
        """
        tools/call with another tool's C{Mcp-Name}: 400, -32020.
        """
        d = self.post(toolCall(3, "test_simple_text"), {"Mcp-Name": "wrong_tool_name"})
        self.assertError(d, 400, -32020, 3)
        self.assertEqual(self.forwarded(), [])

    def test_nameBase64(self) -> None:
        """
        A base64-wrapped C{Mcp-Name} is decoded before comparing, and
        accepted.
        """
        d = self.post(toolCall(3, "Hello"), {"Mcp-Name": "=?base64?SGVsbG8=?="})
        sent = self.assertReachesChild(d, 3)
        self.assertEqual(sent["params"]["name"], "Hello")

    def test_nameBase64Malformed(self) -> None:
        """
        A malformed base64 C{Mcp-Name} matches nothing: 400, -32020.
        """
        d = self.post(toolCall(3, "Hello"), {"Mcp-Name": "=?base64?SGVsbG8?="})
        self.assertError(d, 400, -32020, 3)

    def test_resourceReadName(self) -> None:
        """
        For resources/read, C{Mcp-Name} mirrors C{params.uri}.
        """
        body = modernRequest(9, "resources/read", {"uri": "test://static-text"})
        self.assertError(self.post(body, {"Mcp-Name": "test://other"}), 400, -32020, 9)
        self.assertReachesChild(self.post(body), 9)

    def test_duplicatedVersionHeader(self) -> None:
        """
        A repeated C{MCP-Protocol-Version}, even with equal values: 400,
        -32020.
        """
        d = self.post(modernRequest(8, "tools/list"),
                      {"MCP-Protocol-Version": [VERSION, VERSION]})
        self.assertError(d, 400, -32020, 8)
        self.assertEqual(self.forwarded(), [])

    def test_duplicatedMethodHeader(self) -> None:
        """
        A repeated C{Mcp-Method}: 400, -32020.
        """
        d = self.post(modernRequest(8, "tools/list"), {"Mcp-Method": ["tools/list"] * 2})
        self.assertError(d, 400, -32020, 8)


class VersionTests(ModernCase):
    def test_unsupportedVersion(self) -> None:
        """
        C{v999} in both header and C{_meta}: 400, -32022 with the supported
        versions and the exact requested value, and nothing reaches the
        child.
        """
        body = modernRequest(301, "server/discover", meta=envelope("v999"))
        error = self.assertError(self.post(body), 400, -32022, 301)
        self.assertEqual(error["data"], {"supported": [VERSION], "requested": "v999"})
        self.assertEqual(self.forwarded(), [])


class RemovedMethodTests(ModernCase):
    def test_removedMethods(self) -> None:
        """
        initialize, ping, logging/setLevel, resources/subscribe and
        resources/unsubscribe in the stateless style: 404, -32601, answered
        by the bridge; nothing is written to the child.
        """
        params: dict[str, dict[str, Any]] = {
            "initialize": {"protocolVersion": VERSION, "capabilities": {},
                           "clientInfo": {"name": "t", "version": "1"}},
            "ping": {}, "logging/setLevel": {"level": "debug"},
            "resources/subscribe": {"uri": "test://x"},
            "resources/unsubscribe": {"uri": "test://x"}}
        for method, p in params.items():
            error = self.assertError(self.post(modernRequest(500, method, p)), 404, -32601, 500)
            self.assertIn(method, error["message"])
        self.assertEqual(self.forwarded(), [])


class ShapeTests(ModernCase):
    def test_notification(self) -> None:
        """
        A notification: 202 with an empty body, and nothing to the child.
        """
        body = {"jsonrpc": "2.0", "method": "notifications/initialized",
                "params": {"_meta": envelope()}}
        response, raw = self.respond(self.post(body))
        self.assertEqual((response.code, raw), (202, b""))
        self.assertNoSessionId(response)
        self.assertEqual(self.forwarded(), [])

    def test_batch(self) -> None:
        """
        A batch: 400, -32600, nothing to the child.
        """
        body = [modernRequest(1, "tools/list"), modernRequest(2, "tools/list")]
        d = self.post(body, {"Mcp-Method": "tools/list"})
        self.assertError(d, 400, -32600, None)
        self.assertEqual(self.forwarded(), [])

    def test_response(self) -> None:
        """
        A body that is a JSON-RPC response: 400, -32600 echoing its id.
        """
        body = {"jsonrpc": "2.0", "id": 4, "result": {}}
        self.assertError(self.post(body), 400, -32600, 4)
        self.assertEqual(self.forwarded(), [])

    def test_getAndDelete(self) -> None:
        """
        GET and DELETE of the stateless era: 405 with C{Allow: POST}.
        """
        for method in ("GET", "DELETE"):
            d = self.request(method, headers={"MCP-Protocol-Version": VERSION},
                             accept="text/event-stream")
            response, raw = self.respond(d)
            self.assertEqual(response.code, 405, method)
            self.assertEqual(response.headers.getRawHeaders("allow"), ["POST"])
            self.assertEqual(json.loads(raw)["error"]["code"], -32600)
        self.assertEqual(self.forwarded(), [])

    def test_noSessionId(self) -> None:
        """
        A stateless answer carries no C{Mcp-Session-Id}; one the client
        sends is ignored (no session is looked up or created).
        """
        d = self.post(modernRequest(1, "tools/list"), {"Mcp-Session-Id": "not-a-session"})
        [sent] = self.forwarded()
        self.child.answer(sent, {"tools": []})
        response, raw = self.respond(d)
        self.assertEqual(response.code, 200)
        self.assertNoSessionId(response)
        self.assertEqual(json.loads(raw)["result"], {"tools": []})
        self.assertEqual(self.manager.count, 0)
        self.assertEqual(len(self.spawner.children), 1)

    def test_errorsNoSessionId(self) -> None:
        """
        Errors of the stateless era carry no C{Mcp-Session-Id} either.
        """
        d = self.post(modernRequest(1, "tools/list"), {"Mcp-Method": None})
        response, _ = self.respond(d)
        self.assertEqual(response.code, 400)
        self.assertNoSessionId(response)


class ChildAnswerTests(ModernCase):
    def test_idRewritten(self) -> None:
        """
        The child sees the bridge's integer id, not the client's; the
        answer comes back with the client's id, as JSON.
        """
        d = self.post(modernRequest("client-1", "tools/list"))
        [sent] = self.forwarded()
        self.assertIsInstance(sent["id"], int)
        self.assertNotEqual(sent["id"], self.discover["id"])
        self.assertEqual(sent["params"], modernRequest("client-1", "tools/list")["params"])
        self.child.answer(sent, {"tools": []})
        response, raw = self.respond(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        self.assertEqual(json.loads(raw), {"jsonrpc": "2.0", "id": "client-1",
                                           "result": {"tools": []}})

    def assertChildError(self, code: int, status: int) -> None:
        d = self.post(modernRequest(77, "unknown/method"))
        sent = self.forwarded()[-1]
        self.child.send({"jsonrpc": "2.0", "id": sent["id"],
                         "error": {"code": code, "message": "m", "data": "unknown/method"}})
        response, raw = self.respond(d)
        self.assertEqual(response.code, status, code)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        self.assertEqual(json.loads(raw), {"jsonrpc": "2.0", "id": 77, "error": {
            "code": code, "message": "m", "data": "unknown/method"}})

    def test_methodNotFound404(self) -> None:
        """
        A child's -32601 answered before anything else: 404, JSON.
        """
        self.assertChildError(-32601, 404)

    def test_invalidParams400(self) -> None:
        """
        A child's -32602: 400, JSON.
        """
        self.assertChildError(-32602, 400)

    def test_internalError200(self) -> None:
        """
        A child's -32603: 200, JSON.
        """
        self.assertChildError(-32603, 200)

    def test_progressSwitchesToSSE(self) -> None:
        """
        A progress notification before the answer switches to SSE (with
        C{X-Accel-Buffering: no}); the events carry the client's progress
        token, not the bridge's, then the result with the client's id, and
        the stream ends.
        """
        d = self.post(toolCall("c-9", "slow", {}, meta=dict(envelope(),
                                                             progressToken="tok-A")))
        [sent] = self.forwarded()
        bridgeToken = sent["params"]["_meta"]["progressToken"]
        self.assertNotEqual(bridgeToken, "tok-A")
        for n in (1, 2):
            self.child.send({"jsonrpc": "2.0", "method": "notifications/progress",
                             "params": {"progressToken": bridgeToken, "progress": n,
                                        "total": 3}})
        response, chunks, done = self.stream(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/event-stream"])
        self.assertEqual(response.headers.getRawHeaders("x-accel-buffering"), ["no"])
        self.assertNoSessionId(response)
        self.child.answer(sent, {"content": []})
        self.http.flush()
        self.successResultOf(done)
        events = [e["data"] for e in parseSSE(b"".join(chunks)) if "data" in e]
        self.assertEqual(events[:2], [
            {"jsonrpc": "2.0", "method": "notifications/progress",
             "params": {"progressToken": "tok-A", "progress": n, "total": 3}}
            for n in (1, 2)])
        self.assertEqual(events[2], {"jsonrpc": "2.0", "id": "c-9", "result": {"content": []}})
        self.assertEqual(len(events), 3)


# 3. Mcp-Param-* end to end.

class ParamHeaderHTTPTests(ModernCase):
    def callWeather(self, id: Any, region: Any,
                    header: Optional[Any] = _UNSET) -> "Deferred[Any]":
        headers = {"Mcp-Param-Region": region if header is _UNSET else header}
        return self.post(toolCall(id, "weather", {"region": region}), headers)

    def answerToolsList(self, tools: list[dict[str, Any]]) -> None:
        fetch = self.child.last()
        self.assertEqual(fetch["method"], "tools/list")
        self.assertEqual(fetch["params"]["_meta"][PV], VERSION)
        self.child.answer(fetch, {"tools": tools})

    def primeTools(self) -> None:
        """
        A first, matching call, which makes the pool learn the tools.
        """
        d = self.callWeather(1, "eu")
        self.answerToolsList([WEATHER_TOOL])
        call = self.child.last()
        self.assertEqual(call["method"], "tools/call")
        self.child.answer(call, {"content": []})
        self.assertEqual(self.respond(d)[0].code, 200)

    def calls(self) -> list[dict[str, Any]]:
        return received(self.child, "tools/call")

    def test_fetchesToolsFirst(self) -> None:
        """
        The first tools/call with arguments waits while the pool asks the
        child for tools/list; it is forwarded once the schemas are known.
        """
        d = self.callWeather(1, "eu")
        self.assertEqual(self.calls(), [])
        self.assertEqual(len(received(self.child, "tools/list")), 1)
        self.assertNoResult(d)
        self.answerToolsList([WEATHER_TOOL])
        [call] = self.calls()
        self.assertEqual(call["params"]["arguments"], {"region": "eu"})
        self.child.answer(call, {"content": []})
        response, raw = self.respond(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(raw)["id"], 1)

    def test_matchingHeaderReachesChild(self) -> None:
        """
        Once the schemas are known, a matching (here base64) header reaches
        the child without another tools/list.
        """
        self.primeTools()
        d = self.callWeather(2, "Hello", "=?base64?SGVsbG8=?=")
        self.assertEqual(self.calls()[-1]["params"]["arguments"], {"region": "Hello"})
        self.assertEqual(len(received(self.child, "tools/list")), 1)
        self.child.answer(self.calls()[-1], {"content": []})
        self.assertEqual(self.respond(d)[0].code, 200)

    def test_mismatchRefused(self) -> None:
        """
        A header that does not match the argument: 400, -32020 echoing the
        id, and the call never reaches the child.
        """
        self.primeTools()
        self.assertError(self.callWeather(2, "eu", "us"), 400, -32020, 2)
        self.assertError(self.callWeather(3, "Hello", "=?base64?SGVsbG8?="), 400, -32020, 3)
        self.assertEqual(len(self.calls()), 1)

    def test_missingRefused(self) -> None:
        """
        An annotated argument without its header: 400, -32020, never
        forwarded.
        """
        self.primeTools()
        self.assertError(self.callWeather(2, "test-value", None), 400, -32020, 2)
        self.assertEqual(len(self.calls()), 1)

    def test_firstCallMismatchRefused(self) -> None:
        """
        The call that made the pool fetch tools/list is itself checked.
        """
        d = self.callWeather(1, "eu", "us")
        self.answerToolsList([WEATHER_TOOL])
        self.assertError(d, 400, -32020, 1)
        self.assertEqual(self.calls(), [])

    def test_listChangedRefetches(self) -> None:
        """
        C{notifications/tools/list_changed} from the child forgets the
        schemas: the next call with arguments fetches tools/list again
        and is checked against the new schema.
        """
        self.primeTools()
        self.child.send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        d = self.callWeather(2, "eu", None)
        self.assertEqual(len(received(self.child, "tools/list")), 2)
        self.assertNoResult(d)
        self.answerToolsList([{"name": "weather", "inputSchema": {
            "type": "object", "properties": {"region": {"type": "string"}}}}])
        call = self.calls()[-1]
        self.assertEqual(call["params"]["arguments"], {"region": "eu"})
        self.child.answer(call, {"content": []})
        self.assertEqual(self.respond(d)[0].code, 200)

    def test_typeListSchemaForwarded(self) -> None:
        """
        A tool whose annotated property has C{"type": ["string", "null"]}
        has an invalid annotation: its calls are forwarded unchecked (the
        pool does not wedge).
        """
        d = self.callWeather(1, "eu", "us")
        self.answerToolsList([{"name": "weather", "inputSchema": {
            "type": "object", "properties": {
                "region": {"type": ["string", "null"], "x-mcp-header": "Region"}}}}])
        [call] = self.calls()
        self.child.answer(call, {"content": []})
        self.assertEqual(self.respond(d)[0].code, 200)


    def test_hugeIntegerRefused(self) -> None:
        """
        A client sending an integer argument too large for a float gets
        400, -32020 (its header does not match), and the pool keeps
        serving.
        """
        count = {"type": "object",
                 "properties": {"count": {"type": "integer", "x-mcp-header": "Count"}}}
        d = self.post(toolCall(1, "counter", {"count": 1}), {"Mcp-Param-Count": "1"})
        self.answerToolsList([{"name": "counter", "inputSchema": count}])
        self.child.answer(self.calls()[-1], {"content": []})
        self.assertEqual(self.respond(d)[0].code, 200)
        d = self.post(toolCall(2, "counter", {"count": 10 ** 400}), {"Mcp-Param-Count": "1"})
        self.assertError(d, 400, -32020, 2)
        d = self.post(modernRequest(3, "tools/list"))
        self.child.answer(self.child.last(), {"tools": []})
        self.assertEqual(self.respond(d)[0].code, 200)


# 4. A server that speaks only the session era.

class LegacyOnlyTests(HTTPCase):
    def setUp(self) -> None:
        self.startModernPool()
        self.serve(self.pool)

    def probe(self) -> None:
        """
        The child refuses server/discover, then answers initialize with
        C{2025-06-18}.
        """
        discover = self.child.received()[0]
        self.assertEqual(discover["method"], "server/discover")
        self.child.send({"jsonrpc": "2.0", "id": discover["id"],
                         "error": {"code": -32601, "message": "Method not found"}})
        [init] = received(self.child, "initialize")
        self.assertNotEqual(init["id"], discover["id"])
        self.child.answer(init, {"protocolVersion": "2025-06-18", "capabilities": {},
                                 "serverInfo": {"name": "old", "version": "1"}})

    def assertUnsupported(self, d: "Deferred[Any]", id: Any) -> None:
        error = self.assertError(d, 400, -32022, id)
        self.assertEqual(error["data"], {"supported": ["2025-06-18", "2025-03-26", "2024-11-05"],
                                         "requested": VERSION})

    def test_unsupported(self) -> None:
        """
        After the probe, a stateless request gets 400, -32022 listing the
        session-era versions the server speaks and the version requested.
        """
        self.probe()
        self.assertIs(self.pool.speaks, False)
        self.assertUnsupported(self.post(modernRequest(1, "tools/list")), 1)

    def test_waitsForProbe(self) -> None:
        """
        A request arriving while the probe runs waits for it, then gets
        the same -32022, and is never written to the child.
        """
        d = self.post(modernRequest("early", "tools/list"))
        self.assertNoResult(d)
        self.probe()
        self.assertUnsupported(d, "early")
        self.assertEqual(received(self.child, "tools/list"), [])

    def test_probeChildStopped(self) -> None:
        """
        The probe child is stopped (stdin closed, then SIGTERM) and not
        replaced.
        """
        self.probe()
        self.assertTrue(self.child.transport.stdinClosed)
        self.assertEqual(self.pool.members, [])
        self.clock.advance(self.manager.command.stdinGrace + 0.1)
        self.assertIn(signal.SIGTERM, self.child.groupSignals)
        self.assertTrue(self.child.exited)
        self.clock.advance(60)
        self.assertEqual(len(self.spawner.children), 1)


# 5. --stateless: the session era without sessions.

INIT_RESULT = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
               "serverInfo": {"name": "fake", "version": "1"}}


def initializeRequest(id: Any, version: str = "2025-11-25") -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {"sampling": {}},
                       "clientInfo": {"name": "t", "version": "1"}}}


def sessionCall(id: Any, name: str = "echo") -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": {}}}


class StatelessSessionTests(HTTPCase):
    def setUp(self) -> None:
        self.manager, self.spawner, self.clock = makeManager()
        command = self.manager.command
        self.modern = ChildPool(MODERN, command, PoolConfig(size=0), self.clock,
                                self.spawner, self.spawner.killpg)
        self.pool = ChildPool(SESSION, command, PoolConfig(size=1), self.clock,
                              self.spawner, self.spawner.killpg)
        self.modern.startService()
        self.pool.startService()
        self.addCleanup(self.modern.stopService)
        self.addCleanup(self.pool.stopService)
        self.assertEqual(len(self.spawner.children), 1)
        self.child = self.spawner.last
        self.init = self.child.received()[0]
        self.assertEqual(self.init["method"], "initialize")
        self.child.answer(self.init, INIT_RESULT)
        self.assertEqual(self.child.received()[1:],
                         [{"jsonrpc": "2.0", "method": "notifications/initialized"}])
        self.serve(self.modern, stateless=self.pool)

    def sessionPost(self, body: Any, version: Optional[str] = "2025-11-25") -> "Deferred[Any]":
        return self.post(body, {"MCP-Protocol-Version": version}, routing=False)

    def test_initializeFromPool(self) -> None:
        """
        A client's initialize is answered by the bridge from the pool's
        own initialize result, with the client's id and no
        C{Mcp-Session-Id}; nothing reaches the child, no session exists.
        """
        d = self.sessionPost(initializeRequest("init-1"), None)
        response, raw = self.respond(d)
        self.assertEqual(response.code, 200)
        self.assertNoSessionId(response)
        self.assertEqual(json.loads(raw), {"jsonrpc": "2.0", "id": "init-1",
                                           "result": INIT_RESULT})
        self.assertEqual(len(self.child.received()), 2)
        self.assertEqual(self.manager.count, 0)
        self.assertEqual(len(self.spawner.children), 1)

    def test_initializeOlderVersion(self) -> None:
        """
        A client asking an older session version than the server's gets
        that version.
        """
        d = self.sessionPost(initializeRequest(1, "2025-03-26"), None)
        result = json.loads(self.respond(d)[1])["result"]
        self.assertEqual(result["protocolVersion"], "2025-03-26")
        self.assertEqual(result["serverInfo"], INIT_RESULT["serverInfo"])

    def test_toolsCallWithoutSession(self) -> None:
        """
        tools/call without a session id reaches a pool child under a
        rewritten id and comes back with the client's id.
        """
        d = self.sessionPost(sessionCall(1))
        sent = self.child.last()
        self.assertEqual(sent["method"], "tools/call")
        self.assertIsInstance(sent["id"], int)
        self.assertNotEqual(sent["id"], 1)
        self.child.answer(sent, {"content": [{"type": "text", "text": "hi"}]})
        response, raw = self.respond(d)
        self.assertEqual(response.code, 200)
        self.assertNoSessionId(response)
        self.assertEqual(json.loads(raw), {"jsonrpc": "2.0", "id": 1, "result": {
            "content": [{"type": "text", "text": "hi"}]}})

    def test_serverRequestRoundTrip(self) -> None:
        """
        A server-to-client request from the child during a call goes on
        that call's SSE stream under a bridge id; the client's POSTed
        answer (202) reaches the child with the child's own id; then the
        result arrives with the client's id.
        """
        d = self.sessionPost(sessionCall("call-1"))
        sent = self.child.last()
        sampling = {"jsonrpc": "2.0", "id": 0, "method": "sampling/createMessage",
                    "params": {"messages": [], "maxTokens": 5}}
        self.child.send(sampling)
        response, chunks, done = self.stream(d)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/event-stream"])
        [event] = [e["data"] for e in parseSSE(b"".join(chunks)) if "data" in e]
        bridgeId = event["id"]
        self.assertNotIn(bridgeId, (0, "call-1"))
        self.assertEqual(event, dict(sampling, id=bridgeId))
        answer = {"jsonrpc": "2.0", "id": bridgeId,
                  "result": {"role": "assistant", "content": {"type": "text", "text": "x"}}}
        response2, raw2 = self.respond(self.sessionPost(answer))
        self.assertEqual((response2.code, raw2), (202, b""))
        self.assertEqual(self.child.last(), dict(answer, id=0))
        self.child.answer(sent, {"content": []})
        self.http.flush()
        self.successResultOf(done)
        events = [e["data"] for e in parseSSE(b"".join(chunks)) if "data" in e]
        self.assertEqual(events[-1], {"jsonrpc": "2.0", "id": "call-1", "result": {"content": []}})

    def test_getAndDelete(self) -> None:
        """
        GET and DELETE: 405 with C{Allow: POST}; there are no streams or
        sessions to open or end.
        """
        for method in ("GET", "DELETE"):
            d = self.request(method, headers={"MCP-Protocol-Version": "2025-11-25"},
                             accept="text/event-stream")
            response, _ = self.respond(d)
            self.assertEqual(response.code, 405, method)
            self.assertEqual(response.headers.getRawHeaders("allow"), ["POST"])
