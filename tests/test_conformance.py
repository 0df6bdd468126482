"""
The official MCP conformance suite (C{@modelcontextprotocol/conformance})
against a real bridge wrapping C{tests/fixtures/conformance_server.py}.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from .jstools import jsTools, packageBin
from .support import ROOT, Bridge

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "conformance_server.py")
_LINE = re.compile(r"^([✓✗])\s+(\S+):\s+(\d+) passed, (\d+) failed", re.M)


def runConformance(url: str, requirements: str) -> tuple[int, str, dict[str, bool]]:
    """
    Run C{conformance server} against C{url}.

    @return: its exit code, its output, and pass/fail per scenario.
    """
    node, js = jsTools()
    script = packageBin(js, "@modelcontextprotocol/conformance", "conformance")
    env = dict(os.environ, PATH=os.path.dirname(node) + os.pathsep + os.environ.get("PATH", ""))
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [node, script, "server", "--url", url, "--requirements", requirements, "-o", out],
            capture_output=True, text=True, timeout=900, env=env, cwd=out,
            stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    results = {m.group(2): m.group(1) == "✓" for m in _LINE.finditer(output)}
    return proc.returncode, output, results


class SessionEraConformanceTests(SynchronousTestCase):
    def test_requirements_2025_11_25(self) -> None:
        """
        Every scored scenario of C{--requirements 2025-11-25} passes through
        the bridge, C{dns-rebinding-protection} included, and the unscored
        ones that are run pass too.
        """
        jsTools()
        bridge = Bridge([sys.executable, FIXTURE]).start()
        self.addCleanup(bridge.stop)
        code, output, results = runConformance(bridge.url, "2025-11-25")
        failed = sorted(name for name, ok in results.items() if not ok)
        self.assertEqual(failed, [], output)
        self.assertEqual(code, 0, output)
        self.assertTrue(results.get("dns-rebinding-protection"), output)
        self.assertGreaterEqual(len(results), 30, output)
        self.assertIn("Total:", output)
