"""
The MCP Inspector CLI (C{@modelcontextprotocol/inspector}, C{--cli}) against
a real bridge, in each protocol era it can negotiate over Streamable HTTP.

How the Inspector (2.12.0, with C{@modelcontextprotocol/client} 2.3.1)
picks the era (C{--protocol-era}):

  - C{legacy} (its default for an ad-hoc URL): the 2025 handshake only,
    C{initialize} without C{Mcp-Protocol-Version}, then
    C{Mcp-Session-Id}-bound requests.
  - C{modern}: pins 2026-07-28.  The first POST is C{server/discover} (with
    C{Mcp-Protocol-Version: 2026-07-28}, C{Mcp-Method: server/discover} and
    the C{_meta} envelope); unless its result lists 2026-07-28 in
    C{supportedVersions} the run fails (exit 1), with no fallback.
  - C{auto}: the same C{server/discover} probe; a result offering
    2026-07-28 means the stateless era.  Any 4xx or JSON-RPC error that
    gives no modern evidence (e.g. HTTP 400 with C{-32022} and
    C{data.supported} listing only 2025 versions) falls back to a plain
    C{initialize} on the same URL; 401/403, 5xx, network errors, and a
    C{-32022} listing only modern versions other than 2026-07-28 fail.

The fixture (C{tests/fixtures/conformance_server.py}) serves both eras, so
C{modern} and C{auto} must both end up in 2026-07-28 through the bridge; the
demo server knows only the session era, so C{auto} must fall back to it.

The checks live in mixins that ask for a URL, so the same assertions can be
pointed at another server (e.g. the fixture served by the SDK itself).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Optional, Sequence

from twisted.trial.unittest import SynchronousTestCase

from .jstools import jsTools, packageBin
from .support import ROOT, Bridge

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "conformance_server.py")
DEMO = [sys.executable, "-m", "mcpbridge.demo_server"]

MODERN = "2026-07-28"
SESSION_ERA = "2025-11-25"
SIMPLE_TEXT = "This is a simple text response for testing."

#: Seconds for one Inspector run; its own connect timeout is below that.
INSPECTOR_TIMEOUT = 120
CONNECT_TIMEOUT_MS = 60000

#: Variables that would point the Inspector at state outside its scratch HOME.
_INSPECTOR_STATE_VARS = ("MCP_CATALOG_PATH", "MCP_CLIENT_CONFIG_PATH", "MCP_OAUTH_CALLBACK_URL")


class InspectorRun:
    """
    One finished Inspector CLI run.

    @ivar argv: its command line.
    @ivar code: its exit status (0 ok, 1 error, 4 unreachable, 5 tool error).
    @ivar stdout: with C{--format json}, one C{{"result": ...}} object.
    @ivar stderr: on failure, one C{{"error": {"code", "message"}}} object.
    @ivar result: the C{result} member of C{stdout}, or L{None}.
    """

    def __init__(self, argv: Sequence[str], code: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
        self.result: Any = None
        try:
            parsed = json.loads(stdout)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            self.result = parsed.get("result")

    def __str__(self) -> str:
        return (f"inspector {' '.join(self.argv[2:])}\nexit status: {self.code}\n"
                f"stdout: {self.stdout[-4000:]}\nstderr: {self.stderr[-4000:]}")


def _text(data: Any) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data or ""


def runInspector(url: str, era: str, method: str, *args: str) -> InspectorRun:
    """
    Run C{inspector --cli URL --transport http --protocol-era ERA --method
    METHOD ARGS... --format json} with a scratch HOME and working directory.
    """
    node, js = jsTools()
    script = packageBin(js, "@modelcontextprotocol/inspector", "inspector")
    argv = [node, script, "--cli", url, "--transport", "http", "--protocol-era", era,
            "--connect-timeout", str(CONNECT_TIMEOUT_MS), "--method", method, *args,
            "--format", "json"]
    with tempfile.TemporaryDirectory(prefix="mcpbridge-inspector-") as home:
        env = {k: v for k, v in os.environ.items() if k not in _INSPECTOR_STATE_VARS}
        env.update(HOME=home, PATH=os.path.dirname(node) + os.pathsep + env.get("PATH", ""))
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=home,
                                  stdin=subprocess.DEVNULL, timeout=INSPECTOR_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"{' '.join(argv)} did not finish within {INSPECTOR_TIMEOUT} s"
                                 f"\nstdout: {_text(e.stdout)}\nstderr: {_text(e.stderr)}")
    return InspectorRun(argv, proc.returncode, proc.stdout, proc.stderr)


class _InspectorChecks:
    """
    Shared helpers: run the Inspector and assert on what it returned.
    Mixed into a L{SynchronousTestCase}.
    """

    assertEqual: Any
    assertIn: Any
    assertIsInstance: Any
    assertFalse: Any

    #: The bridge the URL leads to, if any: its log goes into failure messages.
    bridge: Optional[Bridge] = None

    def context(self, run: InspectorRun) -> str:
        text = str(run)
        if self.bridge is not None:
            text += f"\nbridge log (tail):\n{self.bridge.current_log()[-3000:]}"
        return text

    def succeed(self, url: str, era: str, method: str,
                *args: str) -> tuple[InspectorRun, dict[str, Any]]:
        """Run the Inspector, assert it exited 0 with a result; return that."""
        run = runInspector(url, era, method, *args)
        self.assertEqual(run.code, 0, self.context(run))
        self.assertIsInstance(run.result, dict, self.context(run))
        return run, run.result

    def checkEra(self, url: str, era: str, expected: str) -> None:
        """C{--method initialize} reports the negotiated protocol version."""
        run, result = self.succeed(url, era, "initialize")
        self.assertEqual(result.get("protocolVersion"), expected, self.context(run))

    def checkToolListed(self, url: str, era: str, tool: str) -> None:
        run, result = self.succeed(url, era, "tools/list")
        names = [t.get("name") for t in result.get("tools", [])]
        self.assertIn(tool, names, self.context(run))

    def checkToolText(self, url: str, era: str, tool: str, expected: str, *args: str) -> None:
        run, result = self.succeed(url, era, "tools/call", "--tool-name", tool, *args)
        blocks = [(c.get("type"), c.get("text")) for c in result.get("content", [])]
        self.assertEqual(blocks, [("text", expected)], self.context(run))
        self.assertFalse(result.get("isError"), self.context(run))


class DualEraChecks(_InspectorChecks):
    """
    The Inspector against a server that serves both eras (the fixture):
    C{modern} and C{auto} both speak 2026-07-28.
    """

    def fixtureURL(self) -> str:
        raise NotImplementedError

    def test_modern_tools_list(self) -> None:
        """C{--protocol-era modern}: C{tools/list} lists C{test_simple_text}."""
        self.checkToolListed(self.fixtureURL(), "modern", "test_simple_text")

    def test_modern_tools_call(self) -> None:
        """C{--protocol-era modern}: C{tools/call test_simple_text} returns its text."""
        self.checkToolText(self.fixtureURL(), "modern", "test_simple_text", SIMPLE_TEXT)

    def test_auto_negotiates_modern(self) -> None:
        """
        C{--protocol-era auto} settles on 2026-07-28 (its C{server/discover}
        probe succeeds) rather than falling back to C{initialize}.
        """
        self.checkEra(self.fixtureURL(), "auto", MODERN)

    def test_auto_tools_list(self) -> None:
        """C{--protocol-era auto}: C{tools/list} lists C{test_simple_text}."""
        self.checkToolListed(self.fixtureURL(), "auto", "test_simple_text")

    def test_auto_tools_call(self) -> None:
        """C{--protocol-era auto}: C{tools/call test_simple_text} returns its text."""
        self.checkToolText(self.fixtureURL(), "auto", "test_simple_text", SIMPLE_TEXT)

    def test_legacy_tools_call(self) -> None:
        """
        Control: C{--protocol-era legacy} (plain C{initialize}) calls
        C{test_simple_text} in the session era.
        """
        url = self.fixtureURL()
        self.checkEra(url, "legacy", SESSION_ERA)
        self.checkToolText(url, "legacy", "test_simple_text", SIMPLE_TEXT)


class SessionOnlyChecks(_InspectorChecks):
    """
    The Inspector against a server that knows only the session era (the
    demo server): C{auto} falls back to C{initialize} and works.
    """

    def demoURL(self) -> str:
        raise NotImplementedError

    def test_auto_falls_back_to_session_era(self) -> None:
        """
        C{--protocol-era auto}: the C{server/discover} probe gives no modern
        evidence, the Inspector falls back to C{initialize} (2025-11-25), then
        lists the tools and calls C{echo}.
        """
        url = self.demoURL()
        self.checkEra(url, "auto", SESSION_ERA)
        self.checkToolListed(url, "auto", "echo")
        self.checkToolText(url, "auto", "echo", "hello inspector", "--tool-arg",
                           "text=hello inspector")


class _BridgeMixin:
    addCleanup: Any
    bridge: Optional[Bridge] = None

    def startBridge(self, command: Sequence[str], options: Sequence[str] = ()) -> Bridge:
        jsTools()
        bridge = Bridge(command, options).start()
        self.addCleanup(bridge.stop)
        self.bridge = bridge
        return bridge


class FixtureThroughBridgeTests(_BridgeMixin, DualEraChecks, SynchronousTestCase):
    """The Inspector against a bridge wrapping the dual-era fixture."""

    def fixtureURL(self) -> str:
        return self.startBridge([sys.executable, FIXTURE]).url


class DemoThroughBridgeTests(_BridgeMixin, SessionOnlyChecks, SynchronousTestCase):
    """The Inspector against a bridge wrapping the session-era demo server."""

    def demoURL(self) -> str:
        return self.startBridge(DEMO, ["--env", f"PYTHONPATH={ROOT}"]).url
