"""
The bridge's protections over real processes: authentication (with the
official Python SDK client), limits on request bodies, rates and slow
clients, as a real ``twistd -n mcpbridge`` enforces them on the wire.

Each test starts its own bridge on a free 127.0.0.1 port; at cleanup every
process that was below it must be gone.  Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import tempfile
import time
from typing import Any, Dict, List

from tests import support
from tests.support import (
    FEATURE_SERVER, HOST, PYTHON_CLIENT, Bridge, http_request, run_json, wait_until)

DEMO = [sys.executable, "-m", "mcpbridge.demo_server"]
CLIENT_TIMEOUT = 60.0
JSON_HEADERS = {"accept": "application/json, text/event-stream",
                "content-type": "application/json"}
KEY_A, KEY_B = "key-a-7f3c9e51d2b84a06", "key-b-0d9e2c4b7a6f1e38"
TOKEN = "tok-5b8e1f0c3d7a9264e1"


def initialize_body(id: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "security-test", "version": "1"}}}).encode()


class SecurityTestCase(support.BridgeTestCase):
    def sdk(self, bridge: Bridge, headers: Dict[str, str], scenario: str = "basic",
            transport: str = "http") -> tuple[int, Any, str]:
        url = bridge.url if transport == "http" else bridge.base + "/sse"
        rc, result, stdout, stderr = run_json(
            [sys.executable, PYTHON_CLIENT, "--transport", transport, scenario, url],
            timeout=CLIENT_TIMEOUT, env={"MCPBRIDGE_CLIENT_HEADERS": json.dumps(headers)})
        return rc, result, stderr

    def assert_sdk_ok(self, bridge: Bridge, headers: Dict[str, str], **kw: Any) -> None:
        rc, result, stderr = self.sdk(bridge, headers, **kw)
        self.assertEqual(rc, 0, f"{result}\n{stderr[-3000:]}\n{bridge.current_log()[-3000:]}")


class AuthenticationTests(SecurityTestCase):
    def setUp(self) -> None:
        self.tokens = tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False)
        self.tokens.write(f"# bridge tokens\n{TOKEN}\n")
        self.tokens.close()
        self.addCleanup(os.unlink, self.tokens.name)

    def start(self, *options: str, env: Dict[str, str] | None = None) -> Bridge:
        return self.start_bridge([sys.executable, FEATURE_SERVER],
                                 ["--bearer-token-file", self.tokens.name, *options], env=env)

    def test_sdk_clients(self) -> None:
        """
        The official SDK client gets in with either API key or the bearer
        token, over Streamable HTTP and HTTP+SSE; without, it is refused
        with 401, and the bridge starts no child for it.
        """
        bridge = self.start("--api-key", KEY_A, "--api-key", KEY_B, "--pool-size", "0")
        self.assert_sdk_ok(bridge, {"X-API-Key": KEY_A})
        self.assert_sdk_ok(bridge, {"X-API-Key": KEY_B}, transport="sse")
        self.assert_sdk_ok(bridge, {"Authorization": f"Bearer {TOKEN}"})
        self.assertTrue(wait_until(lambda: not bridge.children(), 10), bridge.children())
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
            for transport in ("http", "sse"):
                rc, result, stderr = self.sdk(bridge, headers, transport=transport)
                self.assertNotEqual(rc, 0, result)
                # The SDK shows the bridge's JSON-RPC error (HTTP+SSE: the status).
                self.assertRegex(f"{result} {stderr}", "Unauthorized|401")
        self.assertEqual(bridge.children(), [])
        status, headers, body = http_request(bridge.port, "POST", "/mcp", initialize_body(),
                                             JSON_HEADERS)
        self.assertEqual(status, 401)
        self.assertIn('realm="mcpbridge"', headers["www-authenticate"])
        self.assertEqual(json.loads(body)["error"]["code"], -32600)
        for path in ("/health", "/ping"):
            self.assertEqual(http_request(bridge.port, "GET", path)[0], 200, path)
        self.assertEqual(bridge.children(), [])
        log = bridge.current_log()
        for secret in (KEY_A, KEY_B, TOKEN):
            self.assertNotIn(secret, log)
        self.assertIn("refused POST /mcp from 127.0.0.1: no credentials", log)

    def test_environment_key(self) -> None:
        """
        MCP_PROXY_API_KEY sets the keys (commas separate several), and the
        log names the variable, never its value.
        """
        bridge = self.start(env={"MCP_PROXY_API_KEY": f"{KEY_A},{KEY_B}"})
        for key in (KEY_A, KEY_B):
            status, _, _ = http_request(bridge.port, "POST", "/mcp", initialize_body(),
                                        {**JSON_HEADERS, "x-api-key": key})
            self.assertEqual(status, 200)
        status, _, _ = http_request(bridge.port, "POST", "/mcp", initialize_body(),
                                    JSON_HEADERS)
        self.assertEqual(status, 401)
        log = bridge.current_log()
        self.assertIn("MCP_PROXY_API_KEY", log)
        self.assertNotIn(KEY_A, log)

    def test_token_file_reload(self) -> None:
        """
        SIGHUP reads the token file again: a new token works at once, a
        removed one stops working; an unreadable file keeps the tokens.
        """
        bridge = self.start()
        auth = {**JSON_HEADERS, "authorization": f"Bearer {TOKEN}"}
        self.assertEqual(http_request(bridge.port, "POST", "/mcp", initialize_body(),
                                      auth)[0], 200)
        with open(self.tokens.name, "w") as f:
            f.write("tok-new-1\n")
        os.kill(bridge.pid, signal.SIGHUP)
        new = {**JSON_HEADERS, "authorization": "Bearer tok-new-1"}
        self.assertTrue(wait_until(lambda: http_request(
            bridge.port, "POST", "/mcp", initialize_body(), new)[0] == 200, 10))
        self.assertEqual(http_request(bridge.port, "POST", "/mcp", initialize_body(),
                                      auth)[0], 401)
        with open(self.tokens.name, "w") as f:
            f.write("# nothing\n")
        os.kill(bridge.pid, signal.SIGHUP)
        self.assertTrue(wait_until(lambda: "no token in it" in bridge.current_log(), 10),
                        bridge.current_log()[-2000:])
        self.assertEqual(http_request(bridge.port, "POST", "/mcp", initialize_body(),
                                      new)[0], 200)
        self.assertNotIn("tok-new-1", bridge.current_log())

    def test_bad_token_file(self) -> None:
        """
        A token file that cannot be read stops the start with one line and
        exit status 2.
        """
        rc, out = run_twistd(["--bearer-token-file", "/nonexistent/tokens", "--", *DEMO])
        self.assertEqual(rc, 2, out)
        self.assertEqual(out.strip().splitlines(),
                         [line for line in out.strip().splitlines() if "mcpbridge:" in line])
        self.assertIn("--bearer-token-file /nonexistent/tokens: cannot read it", out)


def run_twistd(args: List[str], timeout: float = 30.0) -> tuple[int, str]:
    """
    Run twistd mcpbridge with C{args} until it exits (it is expected to).
    """
    import subprocess

    proc = subprocess.run([support.TWISTD, "-n", "--pidfile=", "mcpbridge",
                           "--port", f"tcp:{support.free_port()}:interface={HOST}", *args],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                          env=support.child_env(), cwd=tempfile.gettempdir())
    return proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")


class LimitTests(SecurityTestCase):
    def test_body_too_large(self) -> None:
        """
        A body over --max-body-size gets 413 and a JSON-RPC error, and starts
        no child; the same connection can go on; a body under it is served.
        """
        bridge = self.start_bridge(DEMO, ["--max-body-size", "64K", "--pool-size", "0"])
        big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                          "params": {"pad": "x" * 100_000}}).encode()
        status, _, body = http_request(bridge.port, "POST", "/mcp", big, JSON_HEADERS)
        self.assertEqual(status, 413, body)
        self.assertIn("65536 bytes", json.loads(body)["error"]["message"])
        self.assertEqual(bridge.children(), [])
        status, _, _ = http_request(bridge.port, "POST", "/mcp", initialize_body(),
                                    JSON_HEADERS)
        self.assertEqual(status, 200)

    def test_rate_limit(self) -> None:
        """
        Over --rate-limit a client gets 429 with Retry-After; /health is
        not counted.
        """
        bridge = self.start_bridge(DEMO, ["--rate-limit", "1", "--rate-burst", "5"])
        codes = []
        for _ in range(8):
            status, headers, _ = http_request(bridge.port, "GET", "/status")
            codes.append((status, headers.get("retry-after")))
        self.assertEqual(codes[:5], [(200, None)] * 5)
        self.assertIn((429, "1"), codes[5:])
        self.assertEqual(http_request(bridge.port, "GET", "/health")[0], 200)

    def test_slowloris(self) -> None:
        """
        Many connections that send half a request each do not stop a normal
        client from being served, and are closed (408) at --read-timeout.
        """
        bridge = self.start_bridge(DEMO, ["--read-timeout", "3", "--pool-size", "0"])
        slow: List[socket.socket] = []
        try:
            for n in range(300):
                s = socket.create_connection((HOST, bridge.port), timeout=5)
                s.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n")
                slow.append(s)
            started = time.monotonic()
            for n in range(5):
                status, _, _ = http_request(bridge.port, "POST", "/mcp", initialize_body(n),
                                            JSON_HEADERS, timeout=5)
                self.assertEqual(status, 200)
            self.assertLess(time.monotonic() - started, 5.0)
            # Keep trickling: it does not keep a connection alive.
            for s in slow[:50]:
                s.sendall(b"X-Slow: 1\r\n")
            deadline = time.monotonic() + 10
            closed = 0
            for s in slow:
                s.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    data = s.recv(4096)
                except OSError:
                    continue
                if data.startswith(b"HTTP/1.1 408") or data == b"":
                    closed += 1
            self.assertEqual(closed, len(slow))
        finally:
            for s in slow:
                s.close()
        status, _, _ = http_request(bridge.port, "GET", "/health")
        self.assertEqual(status, 200)
