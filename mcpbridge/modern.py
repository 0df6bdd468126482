"""
The stateless protocol era (MCP 2026-07-28): which requests belong to it,
and the checks a request must pass before it reaches a child.

Every stateless POST carries its protocol version and client capabilities
in C{params._meta}, and mirrors its method, the name it targets and some of
its arguments in HTTP headers, so that gateways can route on headers alone.
The bridge checks that the two agree (a child behind stdio never sees the
headers), in the order the specification's reference server does, so the
first failure wins:

 1. the C{_meta} envelope is complete (400, -32602);
 2. C{MCP-Protocol-Version}, C{Mcp-Method} and C{Mcp-Name} match the body
    (400, -32020);
 3. the version is one the child speaks (400, -32022, listing them);
 4. C{Mcp-Param-*} headers match the arguments the tool's input schema
    marks with C{x-mcp-header} (400, -32020);
 5. methods this revision removed get 404, -32601.

Steps 1 and 2 need nothing but the request and the web layer runs them;
steps 3 to 5 come once the child's answer to C{server/discover} is known,
in L{mcpbridge.pool}, with the helpers here.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Iterator, Mapping, Optional

from twisted.web.iweb import IRequest

from . import jsonrpc
from .sessions import SESSION_VERSIONS, SessionError

#: Protocol versions of the stateless era the bridge serves.
MODERN_VERSIONS = ("2026-07-28",)

META = "io.modelcontextprotocol/"
PROTOCOL_VERSION = META + "protocolVersion"
CLIENT_CAPABILITIES = META + "clientCapabilities"
CLIENT_INFO = META + "clientInfo"
LOG_LEVEL = META + "logLevel"
SUBSCRIPTION_ID = META + "subscriptionId"

#: Methods of the session era that no longer exist in this one.
REMOVED_METHODS = frozenset({"initialize", "ping", "logging/setLevel",
                             "resources/subscribe", "resources/unsubscribe"})

#: The parameter each method's C{Mcp-Name} header mirrors.
NAMED_PARAMS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

#: Severity order of log levels (RFC 5424 names), least severe first.
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

#: HTTP status of a JSON-RPC error answered as a JSON body in this era.
ERROR_STATUS = {
    jsonrpc.PARSE_ERROR: 400,
    jsonrpc.INVALID_REQUEST: 400,
    jsonrpc.INVALID_PARAMS: 400,
    jsonrpc.HEADER_MISMATCH: 400,
    jsonrpc.MISSING_CAPABILITY: 400,
    jsonrpc.UNSUPPORTED_VERSION: 400,
    jsonrpc.METHOD_NOT_FOUND: 404,
}

_SENTINEL = re.compile(r"=\?base64\?(.*)\?=", re.S)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_TYPES = frozenset({"string", "integer", "boolean"})
_DECIMAL = re.compile(r"-?\d+(\.\d+)?")


def statusOf(message: jsonrpc.Message) -> int:
    """
    The HTTP status for answering C{message} as a JSON body.
    """
    error = message.obj.get("error")
    if isinstance(error, dict):
        return ERROR_STATUS.get(error.get("code"), 200)  # type: ignore[arg-type]
    return 200


def _header(request: IRequest, name: bytes, id: Any) -> Optional[str]:
    """
    The one value of header C{name}, or L{None}.

    @raise SessionError: 400, -32020 when the header is repeated.
    """
    values = request.requestHeaders.getRawHeaders(name)
    if not values:
        return None
    if len(values) > 1:
        raise SessionError(400, jsonrpc.HEADER_MISMATCH,
                           f"Bad Request: the {name.decode()} header appears more than once",
                           id=id)
    return values[0].decode("utf-8", "surrogateescape")


def isModern(request: IRequest, body: Any = None) -> bool:
    """
    Whether a request belongs to the stateless era: its
    C{MCP-Protocol-Version} names no session-era version, or, without that
    header, its body carries the stateless C{_meta} envelope and it names
    no session.
    """
    versions = request.requestHeaders.getRawHeaders(b"mcp-protocol-version")
    if versions:
        return any(v.decode("ascii", "replace") not in SESSION_VERSIONS for v in versions)
    if body is None or request.getHeader(b"mcp-session-id") is not None:
        return False
    meta = envelope(body)
    return meta is not None and PROTOCOL_VERSION in meta


def envelope(body: Any) -> Optional[dict[str, Any]]:
    """
    The C{params._meta} of a message, if it is an object.
    """
    if not isinstance(body, dict):
        return None
    params = body.get("params")
    if not isinstance(params, dict):
        return None
    meta = params.get("_meta")
    return meta if isinstance(meta, dict) else None


def checkRequest(request: IRequest, message: jsonrpc.Message) -> None:
    """
    Steps 1 and 2 of the checks above, for one stateless request.

    @raise SessionError: for the first check that fails.
    """
    ident = message.id
    headerVersion = _header(request, b"mcp-protocol-version", ident)
    headerMethod = _header(request, b"mcp-method", ident)
    headerName = _header(request, b"mcp-name", ident)

    meta = envelope(message.obj)
    if meta is None or PROTOCOL_VERSION not in meta or CLIENT_CAPABILITIES not in meta:
        missing = [k for k in (PROTOCOL_VERSION, CLIENT_CAPABILITIES)
                   if meta is None or k not in meta]
        raise SessionError(400, jsonrpc.INVALID_PARAMS,
                           f"Invalid params: params._meta must carry {' and '.join(missing)}",
                           id=ident)
    version = meta[PROTOCOL_VERSION]
    if not isinstance(version, str) or not isinstance(meta[CLIENT_CAPABILITIES], dict):
        raise SessionError(400, jsonrpc.INVALID_PARAMS,
                           "Invalid params: the protocol version in params._meta must be a "
                           "string and the client capabilities an object", id=ident)

    if headerVersion != version:
        raise SessionError(400, jsonrpc.HEADER_MISMATCH,
                           f"Bad Request: MCP-Protocol-Version header {headerVersion!r} does "
                           f"not match params._meta protocolVersion {version!r}", id=ident)
    method = message.method
    if headerMethod != method:
        raise SessionError(400, jsonrpc.HEADER_MISMATCH,
                           f"Bad Request: Mcp-Method header {headerMethod!r} does not match "
                           f"the method {method!r}", id=ident)
    named = NAMED_PARAMS.get(method or "")
    if named is not None:
        target = message.params.get(named)
        decoded = decodeHeaderValue(headerName) if headerName is not None else None
        if decoded is None or decoded != target:
            raise SessionError(400, jsonrpc.HEADER_MISMATCH,
                               f"Bad Request: Mcp-Name header {headerName!r} does not match "
                               f"params.{named} {target!r}", id=ident)


def removedMethod(message: jsonrpc.Message) -> Optional[SessionError]:
    """
    Step 5: the error for a method this era removed, or L{None}.
    """
    if message.method not in REMOVED_METHODS:
        return None
    return SessionError(404, jsonrpc.METHOD_NOT_FOUND,
                        f"Method not found: {message.method} does not exist in the "
                        f"stateless protocol era", id=message.id, data=message.method)


def decodeHeaderValue(value: str) -> Optional[str]:
    """
    A header value as sent: literal, or UTF-8 text wrapped as
    C{=?base64?<canonical base64>?=}.

    @return: the decoded text, or L{None} for a malformed wrapped value.
    """
    match = _SENTINEL.fullmatch(value)
    if match is None:
        return value
    payload = match.group(1)
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != payload:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def logLevelOf(message: jsonrpc.Message) -> Optional[int]:
    """
    The rank of the log level a stateless request asked for, or L{None}
    when it asked for no log messages.
    """
    meta = envelope(message.obj)
    level = meta.get(LOG_LEVEL) if meta is not None else None
    return LOG_LEVELS.index(level) if level in LOG_LEVELS else None


#: JSON Schema keywords whose value is a subschema, a list of them, or a
#: name → subschema map; anything else (C{default}, C{enum}, ...) is data.
_ONE_SCHEMA = frozenset({"additionalProperties", "items", "not", "if", "then", "else",
                         "contains", "propertyNames", "unevaluatedItems",
                         "unevaluatedProperties", "additionalItems"})
_SCHEMA_LIST = frozenset({"allOf", "anyOf", "oneOf", "prefixItems", "items"})
_SCHEMA_MAP = frozenset({"properties", "patternProperties", "$defs", "definitions",
                         "dependentSchemas"})


def _positions(schema: Any, path: Optional[tuple[str, ...]]) -> Iterator[
        tuple[Optional[tuple[str, ...]], dict[str, Any]]]:
    """
    Every subschema of C{schema}, with its path of C{properties} keys from
    the root, or L{None} once the path leaves a pure C{properties} chain.
    """
    if not isinstance(schema, dict):
        return
    yield path, schema
    for key, value in schema.items():
        if key in _SCHEMA_MAP and isinstance(value, dict):
            for name, sub in value.items():
                inner = path + (name,) if key == "properties" and path is not None else None
                yield from _positions(sub, inner)
        elif key in _SCHEMA_LIST and isinstance(value, list):
            for sub in value:
                yield from _positions(sub, None)
        elif key in _ONE_SCHEMA and isinstance(value, dict):
            yield from _positions(value, None)


def headerParameters(schema: Any) -> Optional[dict[str, tuple[tuple[str, ...], str]]]:
    """
    The arguments a tool mirrors in C{Mcp-Param-*} headers.

    @return: lower-cased header token → (argument path, declared type), or
        L{None} when an annotation is malformed (clients then send no
        headers for the tool, so nothing can be checked).
    """
    found: dict[str, tuple[tuple[str, ...], str]] = {}
    for path, sub in _positions(schema, ()):
        if "x-mcp-header" not in sub:
            continue
        token, kind = sub["x-mcp-header"], sub.get("type")
        if (not path or not isinstance(token, str) or not _TOKEN.fullmatch(token)
                or not isinstance(kind, str) or kind not in _HEADER_TYPES
                or token.lower() in found):
            return None
        found[token.lower()] = (path, kind)
    return found


def _render(value: Any) -> Optional[str]:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _argument(arguments: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(arguments, Mapping):
            return None
        arguments = arguments.get(key)
    return arguments


def checkParamHeaders(schema: Any, arguments: Any,
                      headers: Mapping[str, list[str]]) -> Optional[str]:
    """
    Step 4: do the C{Mcp-Param-*} headers of a C{tools/call} agree with
    its arguments?

    @param headers: lower-cased token (after C{mcp-param-}) → raw values.
    @return: L{None} when they agree, else what is wrong.
    """
    params = headerParameters(schema)
    if not params:
        return None
    for token, (path, kind) in params.items():
        values = headers.get(token)
        name = f"Mcp-Param-{token}"
        argument = ".".join(path)
        value = _argument(arguments, path)
        if values is not None and len(values) > 1:
            return f"the {name} header appears more than once"
        rendered = _render(value) if value is not None else None
        if rendered is None:
            if values is not None:
                return f"the {name} header is present but argument {argument!r} is not"
            continue
        if values is None:
            return f"the {name} header is missing but argument {argument!r} is present"
        decoded = decodeHeaderValue(values[0])
        if decoded is None:
            return f"the {name} header has a malformed =?base64?...?= value"
        if not _matches(kind, value, rendered, decoded):
            return f"the {name} header does not match argument {argument!r}"
    return None


def _matches(kind: str, value: Any, rendered: str, decoded: str) -> bool:
    """
    Integers compare by value (C{42} matches C{42.0}); the rest as text.
    """
    integral = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer())
    if kind == "integer" and integral and len(decoded) <= 400 and _DECIMAL.fullmatch(decoded):
        whole, _, fraction = decoded.partition(".")
        return (not fraction or set(fraction) == {"0"}) and int(whole) == int(value)
    return decoded == rendered


def paramHeaders(request: IRequest) -> dict[str, list[str]]:
    """
    The request's C{Mcp-Param-*} headers: lower-cased token → raw values.
    """
    found: dict[str, list[str]] = {}
    for name, values in request.requestHeaders.getAllRawHeaders():
        lower = name.lower()
        if lower.startswith(b"mcp-param-"):
            found.setdefault(lower[10:].decode("ascii", "replace"), []).extend(
                v.decode("utf-8", "surrogateescape") for v in values)
    return found
