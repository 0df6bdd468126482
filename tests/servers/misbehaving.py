"""
A stdio MCP server (standard library only) that can misbehave on purpose,
for the bridge's fault-injection and large-message tests.

    python misbehaving.py [--exit-at-start CODE] [--no-initialize]
                          [--ignore-eof] [--grandchild] [--banner TEXT]
                          [--stderr-flood BYTES]

Tools: C{echo {text}}, C{blob {size}} (a text result of C{size} bytes),
C{crash {code}} (exits mid-call), C{hang} (never answers), C{garbage} (writes
a non-JSON line, then answers), C{huge_line {size}} (writes a line of
C{size} bytes that is not a valid message, then answers), C{pid}, C{env}, C{sleep {seconds}},
C{flood {count, size}} (that many log notifications of that size, then the result)
(its environment and working directory).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from stdio_rpc import error, messages, result, text


TOOLS = [{"name": n, "inputSchema": {"type": "object"}} for n in
         ("echo", "blob", "crash", "hang", "garbage", "huge_line", "pid", "env", "sleep", "flood")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exit-at-start", type=int, default=None)
    parser.add_argument("--no-initialize", action="store_true")
    parser.add_argument("--ignore-eof", action="store_true")
    parser.add_argument("--grandchild", action="store_true")
    parser.add_argument("--banner", default=None)
    parser.add_argument("--stderr-flood", type=int, default=0)
    args = parser.parse_args()

    if args.exit_at_start is not None:
        sys.stderr.write("misbehaving: exiting at start as asked\n")
        sys.exit(args.exit_at_start)
    if args.ignore_eof:
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    if args.grandchild:
        # A process of our own that ignores SIGTERM and outlives stdin EOF.
        subprocess.Popen([sys.executable, "-c",
                          "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                          " time.sleep(300)"], stdin=subprocess.DEVNULL)
    if args.banner:
        sys.stdout.write(args.banner + "\n")
        sys.stdout.flush()
    if args.stderr_flood:
        chunk = ("x" * 99 + "\n") * 100
        for _ in range(args.stderr_flood // len(chunk) + 1):
            sys.stderr.write(chunk)
        sys.stderr.flush()

    for msg in messages():
        method, ident = msg.get("method"), msg.get("id")
        if ident is None or method is None:
            continue
        params = msg.get("params") or {}
        if method == "initialize":
            if args.no_initialize:
                continue
            result(ident, {
                "protocolVersion": params.get("protocolVersion", "2025-03-26"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "misbehaving", "version": "1"}})
        elif method == "tools/list":
            result(ident, {"tools": TOOLS})
        elif method == "ping":
            result(ident, {})
        elif method == "tools/call":
            name = params.get("name")
            arguments = params.get("arguments") or {}
            if name == "echo":
                text(ident, str(arguments.get("text", "")))
            elif name == "blob":
                text(ident, "b" * int(arguments.get("size", 0)))
            elif name == "crash":
                sys.stderr.write("misbehaving: crashing as asked\n")
                sys.stderr.flush()
                os._exit(int(arguments.get("code", 3)))
            elif name == "hang":
                pass
            elif name == "flood":
                # Many large log messages before the result: the POST turns
                # into an SSE stream that a slow client may not keep up with.
                note = json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                                   "params": {"level": "info",
                                              "data": "f" * int(arguments.get("size", 1))}},
                                  separators=(",", ":")) + "\n"
                for _ in range(int(arguments.get("count", 1))):
                    sys.stdout.write(note)
                sys.stdout.flush()
                text(ident, "flooded")
            elif name == "sleep":
                time.sleep(float(arguments.get("seconds", 1)))
                text(ident, "slept")
            elif name == "garbage":
                sys.stdout.write("this is not JSON\n")
                text(ident, "after garbage")
            elif name == "huge_line":
                sys.stdout.write('{"jsonrpc":"2.0","id":' + json.dumps(ident) + ',"result":"'
                                 + "h" * int(arguments.get("size", 0)) + '"}\n')
                sys.stdout.flush()
            elif name == "pid":
                text(ident, str(os.getpid()))
            elif name == "env":
                text(ident, json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}))
            else:
                error(ident, -32602, f"unknown tool {name}")
        else:
            error(ident, -32601, f"unknown method {method}")
    if args.ignore_eof:
        time.sleep(300)


if __name__ == "__main__":
    main()
