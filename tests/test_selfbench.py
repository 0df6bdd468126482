"""
Tests for the self-contained benchmark in tests/bench/:

- C{echo_server.py}, the stdio MCP server it measures with, driven over its
  pipes (no bridge involved);
- C{selfbench.py --quick}, run once as a subprocess against a real bridge:
  every case must run, with no failed request and no child left behind.

No timing is asserted: the benchmark's figures depend on the machine.
Written with plain ``unittest`` so that both ``trial`` and ``pytest`` run
them; every read and every subprocess is bounded, and each test kills the
process it started if it is still running.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
import unittest
from typing import Any, Dict, Optional

from .support import ROOT, child_env, stop_piped, text_of

JSON = Dict[str, Any]
BENCH = os.path.join(ROOT, "tests", "bench")
ECHO_SERVER = os.path.join(BENCH, "echo_server.py")
SELFBENCH = os.path.join(BENCH, "selfbench.py")
TIMEOUT = 10.0  # seconds allowed for one answer of the echo server
SELFBENCH_TIMEOUT = 120.0


class EchoProcess:
    """echo_server.py as a child process, with line reads that time out."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, ECHO_SERVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        assert self.proc.stdout is not None
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.buffer = b""

    def send(self, message: JSON) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode("utf-8") + b"\n")

    def request(self, request_id: Any, method: str, params: Optional[JSON] = None) -> JSON:
        message: JSON = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return self.recv()

    def tool(self, request_id: Any, name: str, arguments: Optional[JSON] = None) -> JSON:
        return self.request(request_id, "tools/call", {"name": name, "arguments": arguments or {}})

    def recv(self, timeout: float = TIMEOUT) -> JSON:
        """The next line, decoded; fails on timeout or end of output."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self.selector.select(left):
                raise AssertionError(f"no answer within {timeout} s")
            data = os.read(self.proc.stdout.fileno(), 1 << 20)
            if not data:
                raise AssertionError("the echo server closed its stdout")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        message: JSON = json.loads(line)
        return message

    def stop(self) -> None:
        self.selector.close()
        stop_piped(self.proc, TIMEOUT)


class EchoServerTests(unittest.TestCase):
    """tests/bench/echo_server.py over its stdin and stdout."""

    def setUp(self) -> None:
        self.server = EchoProcess()
        self.addCleanup(self.server.stop)

    def initialize(self, version: str = "2025-11-25") -> JSON:
        reply = self.server.request(0, "initialize", {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}})
        self.server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return reply

    def test_initialize(self) -> None:
        """A supported protocol version is echoed; tools are announced."""
        reply = self.initialize("2025-06-18")
        self.assertEqual(reply["id"], 0)
        result = reply["result"]
        self.assertEqual(result["protocolVersion"], "2025-06-18")
        self.assertEqual(result["capabilities"], {"tools": {}})
        self.assertTrue(result["serverInfo"]["name"])

    def test_unknown_version_gets_latest(self) -> None:
        reply = self.initialize("1999-01-01")
        self.assertEqual(reply["result"]["protocolVersion"], "2025-11-25")

    def test_tools_list_and_ping(self) -> None:
        """tools/list has the three tools; ping answers {} (the notification got no answer)."""
        self.initialize()
        tools = self.server.request(1, "tools/list")["result"]["tools"]
        self.assertEqual({t["name"] for t in tools}, {"echo", "blob", "whoami"})
        reply = self.server.request("p", "ping")
        self.assertEqual(reply, {"jsonrpc": "2.0", "id": "p", "result": {}})

    def test_echo(self) -> None:
        """echo returns its text unchanged, quotes and non-ASCII included."""
        self.initialize()
        text = 'héllo "wörld" \\ \u2028 \U0001f600'
        reply = self.server.tool(7, "echo", {"text": text})
        self.assertEqual(reply["id"], 7)
        self.assertEqual(text_of(reply), text)

    def test_blob(self) -> None:
        """blob returns exactly `size` x characters (0 included)."""
        self.initialize()
        for request_id, size in enumerate((0, 1, 1_000_000), start=1):
            reply = self.server.tool(request_id, "blob", {"size": size})
            self.assertEqual(reply["id"], request_id)
            text = text_of(reply)
            self.assertEqual(len(text), size)
            self.assertEqual(text.count("x"), size)

    def test_blob_bad_size(self) -> None:
        self.initialize()
        for request_id, size in enumerate((-1, "10", True, 1.5), start=1):
            reply = self.server.tool(request_id, "blob", {"size": size})
            self.assertEqual(reply["error"]["code"], -32602, size)

    def test_whoami(self) -> None:
        self.initialize()
        self.assertEqual(text_of(self.server.tool(1, "whoami")), str(self.server.proc.pid))

    def test_unknown_method(self) -> None:
        self.initialize()
        reply = self.server.request(3, "resources/list")
        self.assertEqual(reply["id"], 3)
        self.assertEqual(reply["error"]["code"], -32601)

    def test_exit_on_eof(self) -> None:
        """Closing stdin ends the server, with status 0, after its pending answers."""
        self.initialize()
        self.server.send({"jsonrpc": "2.0", "id": 9, "method": "ping"})
        assert self.server.proc.stdin is not None
        self.server.proc.stdin.close()
        self.assertEqual(self.server.recv()["id"], 9)
        self.assertEqual(self.server.proc.wait(timeout=TIMEOUT), 0)


class SelfBenchTests(unittest.TestCase):
    """One run of selfbench.py --quick against a real bridge."""

    def test_quick_run(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="mcpbridge-selfbench-test-")
        self.addCleanup(tmp.cleanup)
        out = os.path.join(tmp.name, "results.json")
        with open(os.path.join(tmp.name, "output"), "w+b") as output:
            proc = subprocess.Popen(
                [sys.executable, SELFBENCH, "--quick", "--json", out, "--max-seconds", "100"],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                env=child_env(), cwd=ROOT)
            try:
                status = proc.wait(timeout=SELFBENCH_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.terminate()  # selfbench then stops its bridge
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
                status = None
            output.seek(0)
            text = output.read().decode("utf-8", "replace")
        self.assertEqual(status, 0, f"selfbench exited with {status}:\n{text[-6000:]}")
        with open(out) as f:
            results = json.load(f)
        cases = results["cases"]
        for name in ("latency", "direct", "throughput", "session_setup", "large_result",
                     "idle_memory", "leaks"):
            self.assertIn(name, cases)
            self.assertNotIn("failed", cases[name], name)
        self.assertEqual(results["failures"], [])
        self.assertEqual(results["errors"], 0)
        for name in ("latency", "direct", "throughput", "session_setup", "idle_memory"):
            self.assertEqual(cases[name]["errors"]["count"], 0, (name, cases[name]["errors"]))
        self.assertEqual(cases["latency"]["n"], results["options"]["latency_n"])
        self.assertGreater(cases["throughput"]["requests"], 0)
        setup = cases["session_setup"]
        self.assertEqual(setup["opened"], setup["sessions"])
        self.assertEqual(setup["distinct_child_pids"], setup["sessions"])
        large = cases["large_result"]
        self.assertTrue(large["ok"], large)
        self.assertEqual(large["length"], large["blob_bytes"])
        self.assertTrue(large["big_ok"], large)
        self.assertEqual(large["big_length"], large["big_bytes"])
        self.assertEqual(cases["idle_memory"]["opened"], cases["idle_memory"]["sessions"])
        leaks = cases["leaks"]
        self.assertEqual(leaks["sessions_with_known_child"], leaks["sessions"])
        self.assertEqual(leaks["delete_ok"], leaks["sessions"])
        self.assertEqual(leaks["left_after_delete"], 0, leaks)
        self.assertEqual(leaks["left_after_sigterm"], 0, leaks)
        self.assertFalse(leaks["sigkill_needed"])
        self.assertEqual(results["cleanup"]["killed"], [])
        self.assertIn("| case | figure | value |", text)
