"""
What the standard-library stdio test servers (C{env_server.py},
C{stateless_server.py}, C{misbehaving.py}) share: JSON-RPC messages read
from stdin and written to stdout, one a line.

The servers run as scripts (C{python tests/servers/NAME.py}), so Python puts
this directory first on C{sys.path} and they import this file as
C{stdio_rpc}.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, Iterator

_lock = threading.Lock()


def messages() -> Iterator[dict[str, Any]]:
    """Each JSON object read from stdin until EOF; other lines are skipped."""
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict):
            yield msg


def write(obj: dict[str, Any]) -> None:
    """One message on stdout, whole even when several threads write."""
    line = json.dumps(obj, separators=(",", ":")) + "\n"
    with _lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def result(ident: Any, value: dict[str, Any]) -> None:
    write({"jsonrpc": "2.0", "id": ident, "result": value})


def text(ident: Any, value: str) -> None:
    """A tool call's result: one text item."""
    result(ident, {"content": [{"type": "text", "text": value}], "isError": False})


def error(ident: Any, code: int, message: str) -> None:
    write({"jsonrpc": "2.0", "id": ident, "error": {"code": code, "message": message}})
