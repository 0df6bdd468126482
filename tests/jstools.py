"""
Where the tests find Node 22 and the JavaScript tools (the MCP conformance
suite, the TypeScript SDK, the Inspector).

C{tests/run} installs them under C{tests/js/node_modules} and exports
C{MCPBRIDGE_NODE} and C{MCPBRIDGE_JS}.  A test that needs them and cannot
find them fails under CI (C{CI} set) and is skipped elsewhere, with the
reason.
"""

from __future__ import annotations

import os
from typing import Optional

from twisted.trial.unittest import SkipTest

from .support import ROOT

_FALLBACK_JS = [os.path.join(ROOT, "tests", "js", "node_modules"), "/tmp/n22/node_modules"]


def _nodeIn(js: str) -> Optional[str]:
    for arch in ("x64", "arm64"):
        candidate = os.path.join(js, f"node-linux-{arch}", "bin", "node")
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def jsTools() -> tuple[str, str]:
    """
    The Node 22 binary and the node_modules folder holding the JS tools.

    @raise SkipTest: when they are missing outside CI.
    @raise AssertionError: when they are missing under CI.
    """
    node = os.environ.get("MCPBRIDGE_NODE")
    js = os.environ.get("MCPBRIDGE_JS")
    if not (node and js):
        for candidate in _FALLBACK_JS:
            found = _nodeIn(candidate)
            if found:
                node, js = found, candidate
                break
    if node and js and os.access(node, os.X_OK) and os.path.isdir(js):
        return node, js
    reason = "Node 22 and the JS test tools are not installed; run tests/run"
    if os.environ.get("CI"):
        raise AssertionError(reason)
    raise SkipTest(reason)


def packageBin(js: str, package: str, name: Optional[str] = None) -> str:
    """
    The entry script of a package's command (run it with Node 22).
    """
    import json

    with open(os.path.join(js, package, "package.json")) as f:
        bins = json.load(f)["bin"]
    if isinstance(bins, str):
        return os.path.join(js, package, bins)
    return os.path.join(js, package, bins[name or package.rsplit("/", 1)[-1]])
