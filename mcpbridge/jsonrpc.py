"""
JSON-RPC 2.0 message handling: classification, error objects and the
standard codes.  Messages travel as the exact bytes they arrived as, beside
their parsed form, so the bridge never re-serialises a body it only routes.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional, Union

# Standard JSON-RPC codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Implementation-defined server errors used by the bridge (-32000 .. -32099).
CONNECTION_CLOSED = -32000
REQUEST_TIMEOUT = -32001
SERVER_UNAVAILABLE = -32002
MESSAGE_TOO_LARGE = -32003

# Errors of the stateless era (2026-07-28).
HEADER_MISMATCH = -32020
MISSING_CAPABILITY = -32021
UNSUPPORTED_VERSION = -32022

JSONId = Union[str, int]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(obj: Any) -> bytes:
    """
    Serialise C{obj} compactly as UTF-8 JSON (no newlines, ever).  A string
    with a lone surrogate (from a C{\\ud800} escape) is written escaped.
    """
    try:
        return _dumps(obj).encode("utf-8")
    except UnicodeEncodeError:
        return _dumpsAscii(obj).encode("ascii")


_dumpsAscii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def _noConstant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_strictDecode = json.JSONDecoder(parse_constant=_noConstant).decode


def loads(data: bytes) -> Any:
    """
    Parse a client's JSON strictly: UTF-8 only (no BOM, no UTF-16), no
    C{NaN} or C{Infinity}, and nesting a parser can handle.

    @raise ValueError: for anything else, with a one-line reason.
    """
    try:
        return _strictDecode(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"the body is not UTF-8 ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


class Message:
    """
    One JSON-RPC message: its wire bytes and its parsed object.

    @ivar raw: the message exactly as it should be written (no newline).
    @ivar obj: the parsed JSON object.
    @ivar head: what the properties read: the object itself, or for a
        L{LargeResponse} only its top-level id and kind.
    """

    __slots__ = ("raw", "obj", "head")

    def __init__(self, raw: bytes, obj: dict[str, Any]) -> None:
        self.raw = raw
        self.obj = obj
        self.head = obj

    @classmethod
    def fromObject(cls, obj: dict[str, Any]) -> "Message":
        """
        Build a message from an object, serialising it once.
        """
        return cls(dumps(obj), obj)

    @property
    def method(self) -> Optional[str]:
        m = self.head.get("method")
        return m if isinstance(m, str) else None

    @property
    def id(self) -> Any:
        return self.head.get("id")

    @property
    def hasMethod(self) -> bool:
        return "method" in self.head

    @property
    def hasId(self) -> bool:
        return "id" in self.head

    @property
    def isRequest(self) -> bool:
        return "method" in self.head and "id" in self.head

    @property
    def isResponse(self) -> bool:
        head = self.head
        return "method" not in head and "id" in head and ("result" in head or "error" in head)

    @property
    def params(self) -> dict[str, Any]:
        p = self.head.get("params")
        return p if isinstance(p, dict) else {}

    @property
    def progressToken(self) -> Any:
        """
        The C{params._meta.progressToken} of a request, or L{None}.
        """
        meta = self.params.get("_meta")
        if isinstance(meta, dict):
            return meta.get("progressToken")
        return None

    def __repr__(self) -> str:
        return f"<Message {self.raw[:120]!r}>"


class LargeResponse(Message):
    """
    A large response from a child, read only as far as its id: the bridge
    passes its bytes on untouched, and the client parses them anyway, so
    the whole object is parsed only if something asks for it.
    """

    __slots__ = ("_parsed",)

    def __init__(self, raw: bytes, id: Any) -> None:
        self.raw = raw
        self.head = {"id": id, "result": None}
        self._parsed: Optional[dict[str, Any]] = None

    @property
    def obj(self) -> dict[str, Any]:  # type: ignore[override]
        if self._parsed is None:
            self._parsed = json.loads(self.raw)
        return self._parsed


#: Lines at least this long that plainly begin as a response (the order the
#: SDKs write: jsonrpc, id, then result or error) become L{LargeResponse}s.
LARGE_LINE = 256 * 1024
_RESPONSE_HEAD = re.compile(
    rb'\{\s*"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*(-?[0-9]{1,18}|"[^"\\]{0,200}")'
    rb'\s*,\s*"(?:result|error)"\s*:')


def validId(value: Any) -> bool:
    """
    Whether C{value} may be a request id: a string or an integer (not a bool).
    """
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def checkClientMessage(obj: Any) -> Optional[str]:
    """
    Check the shape of one message sent by an HTTP client.

    @return: L{None} when it is a well-formed request, notification or
        response, else a sentence saying what is wrong.
    """
    if not isinstance(obj, dict):
        return "a JSON-RPC message must be a JSON object"
    if obj.get("jsonrpc") != "2.0":
        return 'the "jsonrpc" member must be "2.0"'
    if "method" in obj:
        if not isinstance(obj["method"], str):
            return 'the "method" member must be a string'
        if "id" in obj and not validId(obj["id"]):
            return "a request id must be a string or an integer"
        if "params" in obj and not isinstance(obj["params"], (dict, list)):
            return 'the "params" member must be an object or an array'
        return None
    if "id" in obj and ("result" in obj or "error" in obj):
        if obj["id"] is not None and not validId(obj["id"]):
            return "a response id must be a string, an integer or null"
        return None
    return "not a JSON-RPC request, notification or response"


def errorObject(code: int, message: str, data: Any = None) -> dict[str, Any]:
    """
    A JSON-RPC error member.
    """
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return err


def errorResponse(id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    """
    A JSON-RPC error response for request C{id}.
    """
    return {"jsonrpc": "2.0", "id": id, "error": errorObject(code, message, data)}


def errorMessage(id: Any, code: int, message: str, data: Any = None) -> Message:
    """
    L{errorResponse} as a L{Message}.
    """
    return Message.fromObject(errorResponse(id, code, message, data))


def cancelledNotification(requestId: Any, reason: str) -> Message:
    """
    A C{notifications/cancelled} for C{requestId}.
    """
    return Message.fromObject(
        {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": requestId, "reason": reason},
        }
    )


def parseLine(line: bytes) -> list[Message]:
    """
    Parse one line from a child's stdout into messages (a batch gives several).

    @raise ValueError: when the line is not JSON or holds no JSON-RPC object.
    """
    if len(line) >= LARGE_LINE:
        head = _RESPONSE_HEAD.match(line)
        if head is not None:
            return [LargeResponse(line, json.loads(head.group(1)))]
    try:
        obj = json.loads(line)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if isinstance(obj, dict):
        return [Message(line, obj)]
    if isinstance(obj, list) and obj and all(isinstance(o, dict) for o in obj):
        return [Message.fromObject(o) for o in obj]
    raise ValueError("not a JSON-RPC object or batch")


_LEADING_ID = re.compile(rb'^\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d+)')
_TRAILING_ID = re.compile(rb',\s*"id"\s*:\s*(-?\d+)\s*\}\s*$')


def withId(message: Message, newId: Any) -> Message:
    """
    C{message} (whose id is an integer) with its top-level id replaced.

    A large response is not serialised again when its id sits where it
    provably belongs to the top-level object: first (after C{"jsonrpc"}) or
    last, as the SDKs write it.
    """
    obj = dict(message.obj)
    obj["id"] = newId
    old = message.obj.get("id")
    raw = message.raw
    if isinstance(old, int) and len(raw) > 4096:
        encoded = dumps(newId)
        offset = len(raw) - 96
        for match, shift in ((_LEADING_ID.match(raw, 0, 96), 0),
                             (_TRAILING_ID.search(raw[offset:]), offset)):
            if match is not None and int(match.group(1)) == old:
                start, end = match.span(1)
                return Message(raw[:start + shift] + encoded + raw[end + shift:], obj)
    return Message.fromObject(obj)
