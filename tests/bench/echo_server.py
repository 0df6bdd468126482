#!/usr/bin/env python3
"""
A minimal stdio MCP server for benchmarking mcpbridge (standard library only).

It speaks newline-delimited JSON-RPC 2.0 on stdin/stdout, with unbuffered
binary I/O (``os.read``/``os.write`` on descriptors 0 and 1), so the time a
request spends here is as small and as constant as Python allows:

- ``initialize``: echoes the requested ``protocolVersion`` when it is one of
  2025-11-25, 2025-06-18, 2025-03-26 or 2024-11-05 (2025-11-25 otherwise),
  with capabilities ``{"tools": {}}``;
- ``ping``: ``{}``;
- ``tools/list``: the three tools below;
- ``tools/call``:
  - ``echo`` returns ``arguments.text`` as one text content;
  - ``blob`` returns one text content of ``arguments.size`` ``"x"`` characters
    (the response line is assembled from bytes, not JSON-encoded);
  - ``whoami`` returns this process's pid as text;
- any other method: JSON-RPC error -32601.

Notifications (and responses from the client) get no answer.  The server
exits, with status 0, when stdin reaches end of file.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List, Optional

JSON = Dict[str, Any]

SUPPORTED_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
LATEST_VERSION = SUPPORTED_VERSIONS[0]
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
#: The largest blob served (1 GiB): a typo in a size must not eat the machine.
MAX_BLOB = 1 << 30
READ_SIZE = 1 << 16

TOOLS: List[JSON] = [
    {"name": "echo", "description": "Return the given text unchanged.",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                     "required": ["text"]}},
    {"name": "blob", "description": "Return a text of `size` 'x' characters.",
     "inputSchema": {"type": "object",
                     "properties": {"size": {"type": "integer", "minimum": 0}},
                     "required": ["size"]}},
    {"name": "whoami", "description": "Return this server process's pid.",
     "inputSchema": {"type": "object", "properties": {}}},
]


def dumps(message: Any) -> bytes:
    """Compact JSON, as bytes."""
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


def write_all(data: bytes) -> None:
    """Write all of C{data} to stdout (descriptor 1), unbuffered."""
    view = memoryview(data)
    while view:
        written = os.write(1, view)
        view = view[written:]


def result_line(request_id: Any, result: JSON) -> bytes:
    return dumps({"jsonrpc": "2.0", "id": request_id, "result": result}) + b"\n"


def error_line(request_id: Any, code: int, message: str) -> bytes:
    return dumps({"jsonrpc": "2.0", "id": request_id,
                  "error": {"code": code, "message": message}}) + b"\n"


def text_line(request_id: Any, text: str) -> bytes:
    return result_line(request_id, {"content": [{"type": "text", "text": text}]})


def blob_line(request_id: Any, size: int) -> bytes:
    """
    The response to C{blob}: built from byte strings, since JSON-encoding a
    text of many megabytes would cost far more than the bridge's share.
    """
    return (b'{"jsonrpc":"2.0","id":' + dumps(request_id)
            + b',"result":{"content":[{"type":"text","text":"'
            + b"x" * size + b'"}]}}\n')


def call_tool(request_id: Any, params: JSON) -> bytes:
    name = params.get("name")
    arguments = params.get("arguments") or {}
    if not isinstance(arguments, dict):
        return error_line(request_id, INVALID_PARAMS, "arguments must be an object")
    if name == "echo":
        text = arguments.get("text")
        if not isinstance(text, str):
            return error_line(request_id, INVALID_PARAMS, "echo needs a string 'text'")
        return text_line(request_id, text)
    if name == "blob":
        size = arguments.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_BLOB:
            return error_line(request_id, INVALID_PARAMS,
                              f"blob needs an integer 'size' from 0 to {MAX_BLOB}")
        return blob_line(request_id, size)
    if name == "whoami":
        return text_line(request_id, str(os.getpid()))
    return error_line(request_id, INVALID_PARAMS, f"unknown tool: {name!r}")


def handle(message: Any) -> Optional[bytes]:
    """The answer line to one decoded message, or None when none is due."""
    if not isinstance(message, dict):
        return error_line(None, INVALID_REQUEST, "expected a JSON-RPC object")
    if "id" not in message or "method" not in message:
        return None  # a notification, or a response to us: nothing to say
    request_id = message["id"]
    method = message["method"]
    params = message.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return error_line(request_id, INVALID_PARAMS, "params must be an object")
    if method == "tools/call":
        return call_tool(request_id, params)
    if method == "initialize":
        requested = params.get("protocolVersion")
        version = requested if requested in SUPPORTED_VERSIONS else LATEST_VERSION
        return result_line(request_id, {
            "protocolVersion": version, "capabilities": {"tools": {}},
            "serverInfo": {"name": "mcpbridge-bench-echo", "version": "1.0"}})
    if method == "ping":
        return result_line(request_id, {})
    if method == "tools/list":
        return result_line(request_id, {"tools": TOOLS})
    return error_line(request_id, METHOD_NOT_FOUND, f"method not found: {method}")


def handle_line(line: bytes) -> Optional[bytes]:
    if not line.strip():
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return error_line(None, PARSE_ERROR, "parse error")
    return handle(message)


def main() -> int:
    pending = b""
    while True:
        try:
            data = os.read(0, READ_SIZE)
        except InterruptedError:  # pragma: no cover - retried by Python anyway
            continue
        if not data:
            break  # stdin EOF: done
        pending += data
        if b"\n" not in data:
            continue
        *lines, pending = pending.split(b"\n")
        out = [answer for answer in map(handle_line, lines) if answer is not None]
        if out:
            try:
                write_all(b"".join(out))
            except BrokenPipeError:
                return 0
    if pending.strip():
        answer = handle_line(pending)
        if answer is not None:
            try:
                write_all(answer)
            except BrokenPipeError:
                return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
