"""
The C{mcpbridge} console script: the twistd plugin in the foreground, for
people who do not use twistd.

    mcpbridge --port tcp:3000 -- python -m mcp_server_time

is C{twistd --nodaemon --pidfile= mcpbridge --port tcp:3000 -- ...}.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> None:
    from twisted.scripts.twistd import run

    args = list(sys.argv[1:] if argv is None else argv)
    sys.argv = ["mcpbridge", "--nodaemon", "--pidfile=", "mcpbridge", *args]
    run()


if __name__ == "__main__":
    main()
