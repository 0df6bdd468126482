"""
A tiny stdio MCP server (standard library only, session era) that tells what
it was started with, for the multi-server tests.

    python env_server.py [any arguments...]

It accepts any arguments and reports them.  Tools:

  - C{info}: a text result holding JSON C{{"pid", "argv", "cwd", "env"}}: its
    process id, C{sys.argv[1:]}, working directory and whole environment;
  - C{echo {text}}: the text back;
  - C{sleep {seconds}}: answers C{"slept"} after that long (on the reading
    thread, so the process answers nothing else meanwhile).

C{server/discover} (the stateless era) gets -32601, so the bridge treats it
as a session-era server.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

TOOLS = [{"name": name, "inputSchema": {"type": "object"}} for name in ("info", "echo", "sleep")]


def write(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def text(ident: Any, value: str) -> None:
    write({"jsonrpc": "2.0", "id": ident,
           "result": {"content": [{"type": "text", "text": value}], "isError": False}})


def main() -> None:
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if not isinstance(msg, dict):
            continue
        method, ident = msg.get("method"), msg.get("id")
        if method is None or ident is None:
            continue  # notifications and responses
        params = msg.get("params") or {}
        if method == "initialize":
            write({"jsonrpc": "2.0", "id": ident, "result": {
                "protocolVersion": params.get("protocolVersion", "2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "env-server", "version": "1"}}})
        elif method == "ping":
            write({"jsonrpc": "2.0", "id": ident, "result": {}})
        elif method == "tools/list":
            write({"jsonrpc": "2.0", "id": ident, "result": {"tools": TOOLS}})
        elif method == "tools/call":
            name = params.get("name")
            arguments = params.get("arguments") or {}
            if name == "info":
                text(ident, json.dumps({"pid": os.getpid(), "argv": sys.argv[1:],
                                        "cwd": os.getcwd(), "env": dict(os.environ)}))
            elif name == "echo":
                text(ident, str(arguments.get("text", "")))
            elif name == "sleep":
                time.sleep(float(arguments.get("seconds", 1)))
                text(ident, "slept")
            else:
                write({"jsonrpc": "2.0", "id": ident,
                       "error": {"code": -32602, "message": f"unknown tool {name!r}"}})
        else:
            write({"jsonrpc": "2.0", "id": ident,
                   "error": {"code": -32601, "message": f"unknown method {method!r}"}})


if __name__ == "__main__":
    main()
