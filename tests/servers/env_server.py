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

from stdio_rpc import error, messages, result, text

TOOLS = [{"name": name, "inputSchema": {"type": "object"}} for name in ("info", "echo", "sleep")]


def main() -> None:
    for msg in messages():
        method, ident = msg.get("method"), msg.get("id")
        if method is None or ident is None:
            continue  # notifications and responses
        params = msg.get("params") or {}
        if method == "initialize":
            result(ident, {
                "protocolVersion": params.get("protocolVersion", "2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "env-server", "version": "1"}})
        elif method == "ping":
            result(ident, {})
        elif method == "tools/list":
            result(ident, {"tools": TOOLS})
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
                error(ident, -32602, f"unknown tool {name!r}")
        else:
            error(ident, -32601, f"unknown method {method!r}")


if __name__ == "__main__":
    main()
