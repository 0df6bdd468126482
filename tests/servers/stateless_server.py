"""
A stdio MCP server (standard library only) of the stateless era
(2026-07-28) that serves requests concurrently, for the bridge's pool tests
over real processes.

    python stateless_server.py

It answers C{server/discover} (it speaks only 2026-07-28), C{tools/list} and
C{tools/call}; each C{tools/call} runs in a thread of its own, and one lock
keeps the lines written to stdout whole.  It exits on stdin EOF.

Tools: C{delay {ms, tag}} (after C{ms} milliseconds, a text result
C{{"tag", "pid", "id"}} where C{id} is the request id this process saw),
C{hang} (never answers), C{crash {code}} (exits at once), C{cancelled} (a
JSON list of C{{"requestId", "reason"}}, one per C{notifications/cancelled}
received so far), C{pid}.

C{subscriptions/listen} is acknowledged with
C{notifications/subscriptions/acknowledged} and then left open.  A
cancelled request is never answered.
"""

from __future__ import annotations

import json
import os
import threading
import time

from stdio_rpc import error, messages, result, write

VERSION = "2026-07-28"
SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
TOOLS = [{"name": n, "inputSchema": {"type": "object"}}
         for n in ("delay", "hang", "crash", "cancelled", "pid")]

_lock = threading.Lock()
_cancelled: list[dict] = []       # every notifications/cancelled, in order
_cancelledIds: set[str] = set()   # json.dumps of the ids cancelled


def answer(ident: object, value: dict) -> None:
    with _lock:
        if json.dumps(ident) in _cancelledIds:
            return
    result(ident, value)


def text(ident: object, value: str) -> None:
    answer(ident, {"content": [{"type": "text", "text": value}], "isError": False})


def call(ident: object, name: object, arguments: dict) -> None:
    """
    One C{tools/call}, in a thread of its own.
    """
    if name == "delay":
        time.sleep(float(arguments.get("ms", 0)) / 1000.0)
        text(ident, json.dumps({"tag": arguments.get("tag"), "pid": os.getpid(), "id": ident}))
    elif name == "hang":
        pass
    elif name == "crash":
        os._exit(int(arguments.get("code", 3)))
    elif name == "cancelled":
        with _lock:
            seen = list(_cancelled)
        text(ident, json.dumps(seen))
    elif name == "pid":
        text(ident, str(os.getpid()))
    else:
        error(ident, -32602, f"unknown tool {name}")


def main() -> None:
    for msg in messages():
        method, ident = msg.get("method"), msg.get("id")
        params = msg.get("params") or {}
        if method == "notifications/cancelled":
            with _lock:
                _cancelled.append({"requestId": params.get("requestId"),
                                   "reason": params.get("reason")})
                _cancelledIds.add(json.dumps(params.get("requestId")))
            continue
        if ident is None or method is None:
            continue
        if method == "server/discover":
            result(ident, {
                "supportedVersions": [VERSION], "capabilities": {"tools": {}},
                "serverInfo": {"name": "stateless-server", "version": "1"}})
        elif method == "tools/list":
            result(ident, {"tools": TOOLS})
        elif method == "tools/call":
            threading.Thread(target=call, daemon=True,
                             args=(ident, params.get("name"), params.get("arguments") or {})
                             ).start()
        elif method == "subscriptions/listen":
            write({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
                   "params": {"_meta": {SUBSCRIPTION_ID: ident}}})
        else:
            error(ident, -32601, f"unknown method {method}")


if __name__ == "__main__":
    main()
