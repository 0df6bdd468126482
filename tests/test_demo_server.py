"""
Tests for mcpbridge.demo_server, run as a real child process over pipes.

The test plays the MCP client directly (no bridge involved).  Every read has
a timeout, and each test kills the process it started if it is still alive.
Written with plain ``unittest`` so that both ``trial`` and ``pytest`` run them.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import unittest
from typing import Any, Dict, List, Optional

import mcpbridge

from .support import stop_piped, text_of

JSON = Dict[str, Any]
# Let the child import the very mcpbridge this test imported (source tree or install).
IMPORT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(mcpbridge.__file__)))
TIMEOUT = 10.0  # seconds allowed for any single expected message


class DemoProcess:
    """The demo server as a child process, with line reads that time out."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (IMPORT_ROOT, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcpbridge.demo_server"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.lines: "queue.Queue[Optional[bytes]]" = queue.Queue()
        self.stderr: List[bytes] = []
        self.pumps = [threading.Thread(target=self._pump_stdout, daemon=True),
                      threading.Thread(target=self._pump_stderr, daemon=True)]
        for pump in self.pumps:
            pump.start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)  # EOF marker

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def write_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: JSON) -> None:
        self.write_raw(json.dumps(message).encode("utf-8") + b"\n")

    def request(self, request_id: Any, method: str, params: Optional[JSON] = None) -> None:
        message: JSON = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def notify(self, method: str, params: Optional[JSON] = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params or {}})

    def recv(self, timeout: float = TIMEOUT) -> JSON:
        """Return the next message; fail on timeout, EOF or a malformed line."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout}s; stderr: {self.stderr!r}")
        if line is None:
            self.lines.put(None)
            raise AssertionError(f"server closed stdout; stderr: {self.stderr!r}")
        self.check_line(line)
        message: JSON = json.loads(line)
        return message

    @staticmethod
    def check_line(line: bytes) -> None:
        assert line.endswith(b"\n") and line.count(b"\n") == 1, line

    def recv_until(self, request_id: Any, timeout: float = TIMEOUT) -> List[JSON]:
        """Read messages up to and including the response to ``request_id``."""
        deadline = time.monotonic() + timeout
        seen: List[JSON] = []
        while True:
            message = self.recv(max(0.01, deadline - time.monotonic()))
            seen.append(message)
            if message.get("id") == request_id and "method" not in message:
                return seen

    def call(self, request_id: Any, method: str, params: Optional[JSON] = None) -> JSON:
        """Send a request and return its response (skipping notifications)."""
        self.request(request_id, method, params)
        return self.recv_until(request_id)[-1]

    def initialize(self, capabilities: Optional[JSON] = None,
                   version: str = "2025-11-25") -> JSON:
        response = self.call(0, "initialize", {
            "protocolVersion": version, "capabilities": capabilities or {},
            "clientInfo": {"name": "test", "version": "1"}})
        self.notify("notifications/initialized")
        return response

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def stop(self) -> None:
        """Kill the child if it is still running and release its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)
        for pump in self.pumps:
            pump.join(TIMEOUT)
        stop_piped(self.proc, TIMEOUT)


class DemoServerTests(unittest.TestCase):
    """The demo server, driven over its stdin/stdout like an MCP client would."""

    def setUp(self) -> None:
        self.server = DemoProcess()
        self.addCleanup(self.server.stop)

    def tool(self, request_id: Any, name: str, arguments: Optional[JSON] = None,
             **extra: Any) -> None:
        params: JSON = {"name": name, "arguments": arguments or {}, **extra}
        self.server.request(request_id, "tools/call", params)

    def test_initialize_and_tools_list(self) -> None:
        """initialize echoes a supported version, names the server and its
        capabilities, and tools/list lists every tool with an object schema."""
        response = self.server.initialize(version="2025-06-18")
        result = response["result"]
        self.assertEqual(result["protocolVersion"], "2025-06-18")
        self.assertEqual(result["serverInfo"]["name"], "mcpbridge-demo")
        self.assertEqual(result["serverInfo"]["version"], mcpbridge.__version__)
        self.assertEqual(result["capabilities"]["tools"], {"listChanged": False})
        for capability in ("logging", "resources", "prompts"):
            self.assertIn(capability, result["capabilities"])
        tools = self.server.call(1, "tools/list")["result"]["tools"]
        names = {tool["name"] for tool in tools}
        self.assertEqual(names, {"echo", "add", "countdown", "ask_llm", "ask_user",
                                 "whoami", "fail"})
        for tool in tools:
            self.assertEqual(tool["inputSchema"]["type"], "object")
            self.assertTrue(tool["description"])

    def test_unsupported_version_gets_latest(self) -> None:
        """A protocol version the server does not know is answered with 2025-11-25."""
        response = self.server.initialize(version="1999-01-01")
        self.assertEqual(response["result"]["protocolVersion"], "2025-11-25")

    def test_echo_and_ping(self) -> None:
        """echo returns its text unchanged (non-ASCII included) and ping returns {}."""
        self.server.initialize()
        self.tool(1, "echo", {"text": "héllo\u2028wörld"})
        response = self.server.recv_until(1)[-1]
        self.assertEqual(text_of(response), "héllo\u2028wörld")
        self.assertFalse(response["result"]["isError"])
        self.assertEqual(self.server.call(2, "ping")["result"], {})

    def test_add(self) -> None:
        """add returns the sum as text and as structuredContent."""
        self.server.initialize()
        self.tool("a", "add", {"a": 2, "b": 3.5})
        response = self.server.recv_until("a")[-1]
        self.assertEqual(text_of(response), "5.5")
        self.assertEqual(response["result"]["structuredContent"], {"sum": 5.5})

    def test_bad_tool_arguments_are_tool_errors(self) -> None:
        """Wrong argument types give an isError tool result (not a protocol error)."""
        self.server.initialize()
        self.tool(1, "add", {"a": "2", "b": 3})
        response = self.server.recv_until(1)[-1]
        self.assertTrue(response["result"]["isError"])

    def test_countdown_progress_before_result(self) -> None:
        """countdown sends one progress notification and one log message per step,
        all before its result."""
        self.server.initialize()
        self.tool(1, "countdown", {"steps": 3, "interval": 0.01},
                  _meta={"progressToken": "tok"})
        messages = self.server.recv_until(1)
        progress = [m["params"] for m in messages
                    if m.get("method") == "notifications/progress"]
        self.assertEqual([p["progress"] for p in progress], [1, 2, 3])
        for p in progress:
            self.assertEqual((p["progressToken"], p["total"]), ("tok", 3))
            self.assertTrue(p["message"])
        logs = [m for m in messages if m.get("method") == "notifications/message"]
        self.assertEqual(len(logs), 3)
        self.assertEqual(text_of(messages[-1]), "done after 3 steps")

    def test_set_level_filters_log_messages(self) -> None:
        """After logging/setLevel error, the countdown's info messages are not sent;
        without a progressToken no progress is sent either."""
        self.server.initialize()
        self.assertEqual(self.server.call(1, "logging/setLevel", {"level": "error"})["result"], {})
        self.tool(2, "countdown", {"steps": 2, "interval": 0.01})
        messages = self.server.recv_until(2)
        self.assertEqual(len(messages), 1, messages)
        self.assertEqual(text_of(messages[0]), "done after 2 steps")

    def test_ask_llm_round_trip(self) -> None:
        """ask_llm sends sampling/createMessage with a string id; the client's answer
        becomes the tool result."""
        self.server.initialize({"sampling": {}})
        self.tool(7, "ask_llm", {"question": "What is 6*7?"})
        request = self.server.recv()
        self.assertEqual(request["method"], "sampling/createMessage")
        self.assertIsInstance(request["id"], str)
        self.assertEqual(request["params"]["maxTokens"], 200)
        self.assertEqual(request["params"]["messages"], [
            {"role": "user", "content": {"type": "text", "text": "What is 6*7?"}}])
        self.server.send({"jsonrpc": "2.0", "id": request["id"], "result": {
            "role": "assistant", "content": {"type": "text", "text": "42"},
            "model": "test-model", "stopReason": "endTurn"}})
        response = self.server.recv_until(7)[-1]
        self.assertEqual(text_of(response), "42")
        self.assertFalse(response["result"]["isError"])

    def test_ask_llm_client_error(self) -> None:
        """A JSON-RPC error answer to the sampling request gives an isError result."""
        self.server.initialize({"sampling": {}})
        self.tool(1, "ask_llm", {"question": "?"})
        request = self.server.recv()
        self.server.send({"jsonrpc": "2.0", "id": request["id"],
                          "error": {"code": -1, "message": "user rejected"}})
        response = self.server.recv_until(1)[-1]
        self.assertTrue(response["result"]["isError"])
        self.assertIn("user rejected", text_of(response))

    def test_ask_llm_refused_without_sampling(self) -> None:
        """Without the sampling capability, ask_llm sends no request and returns
        an isError result saying so."""
        self.server.initialize({})
        self.tool(1, "ask_llm", {"question": "?"})
        messages = self.server.recv_until(1)
        self.assertEqual(len(messages), 1, messages)
        self.assertTrue(messages[0]["result"]["isError"])
        self.assertIn("sampling", text_of(messages[0]))

    def test_ask_user_round_trip(self) -> None:
        """ask_user sends elicitation/create and returns the action and content."""
        self.server.initialize({"elicitation": {}})
        self.tool(1, "ask_user", {"question": "Name?"})
        request = self.server.recv()
        self.assertEqual(request["method"], "elicitation/create")
        self.assertEqual(request["params"]["message"], "Name?")
        self.assertIn("answer", request["params"]["requestedSchema"]["properties"])
        self.server.send({"jsonrpc": "2.0", "id": request["id"], "result": {
            "action": "accept", "content": {"answer": "Ada"}}})
        response = self.server.recv_until(1)[-1]
        self.assertEqual(response["result"]["structuredContent"],
                         {"action": "accept", "content": {"answer": "Ada"}})

    def test_cancel_countdown(self) -> None:
        """notifications/cancelled stops a running countdown, which then sends no
        response, and the server keeps answering other requests."""
        self.server.initialize()
        self.tool(5, "countdown", {"steps": 100, "interval": 0.05},
                  _meta={"progressToken": 1})
        first = self.server.recv()
        self.assertEqual(first["method"], "notifications/progress")
        self.server.notify("notifications/cancelled", {"requestId": 5, "reason": "test"})
        time.sleep(0.3)  # several step intervals: a stray progress may still be in flight
        self.server.request(6, "ping")
        messages = self.server.recv_until(6)
        late = [m for m in messages if m.get("id") == 5]
        self.assertEqual(late, [])
        # Nothing more arrives for the cancelled call.
        self.assertRaises(AssertionError, self.server.recv, 0.5)

    def test_cancel_sampling_wait(self) -> None:
        """Cancelling a call waiting on sampling sends no response and forwards a
        notifications/cancelled for the server's own request."""
        self.server.initialize({"sampling": {}})
        self.tool(3, "ask_llm", {"question": "?"})
        request = self.server.recv()
        self.server.notify("notifications/cancelled", {"requestId": 3})
        forwarded = self.server.recv()
        self.assertEqual(forwarded["method"], "notifications/cancelled")
        self.assertEqual(forwarded["params"]["requestId"], request["id"])
        self.assertRaises(AssertionError, self.server.recv, 0.5)

    def test_concurrent_requests_out_of_order(self) -> None:
        """Requests overlap: echo and add, sent after a slow countdown and a pending
        sampling request, are answered first; the slow ones finish later."""
        self.server.initialize({"sampling": {}})
        self.tool(1, "countdown", {"steps": 5, "interval": 0.4})
        self.tool(2, "ask_llm", {"question": "?"})
        sampling = self.server.recv()
        self.assertEqual(sampling["method"], "sampling/createMessage")
        self.tool(3, "echo", {"text": "fast"})
        self.tool(4, "add", {"a": 1, "b": 1})
        order = [m["id"] for m in self.server.recv_until(4)
                 if "id" in m and "method" not in m]
        self.assertEqual(order, [3, 4])
        self.server.send({"jsonrpc": "2.0", "id": sampling["id"], "result": {
            "role": "assistant", "content": {"type": "text", "text": "late"},
            "model": "m"}})
        self.assertEqual(text_of(self.server.recv_until(2)[-1]), "late")
        self.assertEqual(text_of(self.server.recv_until(1)[-1]), "done after 5 steps")

    def test_whoami_and_fail(self) -> None:
        """whoami reports the child's own pid; fail is a tool-level error."""
        self.server.initialize()
        self.tool(1, "whoami")
        response = self.server.recv_until(1)[-1]
        self.assertEqual(response["result"]["structuredContent"], {"pid": self.server.proc.pid})
        self.tool(2, "fail")
        self.assertTrue(self.server.recv_until(2)[-1]["result"]["isError"])

    def test_resources_and_prompts(self) -> None:
        """Static resources can be listed, read and subscribed to; the prompt renders."""
        self.server.initialize()
        resources = self.server.call(1, "resources/list")["result"]["resources"]
        self.assertEqual(len(resources), 2)
        uri = resources[0]["uri"]
        contents = self.server.call(2, "resources/read", {"uri": uri})["result"]["contents"]
        self.assertEqual(contents[0]["uri"], uri)
        self.assertTrue(contents[0]["text"])
        self.assertEqual(self.server.call(3, "resources/subscribe", {"uri": uri})["result"], {})
        self.assertEqual(self.server.call(4, "resources/unsubscribe", {"uri": uri})["result"], {})
        missing = self.server.call(5, "resources/read", {"uri": "demo://nope"})
        self.assertEqual(missing["error"]["code"], -32602)
        prompts = self.server.call(6, "prompts/list")["result"]["prompts"]
        name = prompts[0]["name"]
        prompt = self.server.call(7, "prompts/get", {"name": name, "arguments": {"name": "Bob"}})
        self.assertIn("Bob", prompt["result"]["messages"][0]["content"]["text"])

    def test_protocol_errors(self) -> None:
        """Unknown methods give -32601, bad params -32602; unknown notifications
        and stray responses (unknown or null id) are ignored silently."""
        self.server.initialize()
        self.server.notify("notifications/whatever")
        self.server.send({"jsonrpc": "2.0", "id": "srv-999", "result": {}})
        self.server.send({"jsonrpc": "2.0", "id": None, "error": {"code": -1, "message": "x"}})
        self.server.request(0, "ping")
        self.assertEqual(self.server.recv(), {"jsonrpc": "2.0", "id": 0, "result": {}})
        self.assertEqual(self.server.call(1, "no/such/method")["error"]["code"], -32601)
        bad = self.server.call(2, "tools/call", {"name": "no-such-tool"})
        self.assertEqual(bad["error"]["code"], -32602)
        bad = self.server.call(3, "logging/setLevel", {"level": "loud"})
        self.assertEqual(bad["error"]["code"], -32602)
        bad = self.server.call(4, "tools/call", {"name": "echo", "arguments": [1]})
        self.assertEqual(bad["error"]["code"], -32602)

    def test_malformed_line(self) -> None:
        """A line that is not JSON gets a -32700 error with id null, and the
        server keeps working afterwards."""
        self.server.initialize()
        self.server.write_raw(b"{this is not json\n")
        error = self.server.recv()
        self.assertIsNone(error["id"])
        self.assertEqual(error["error"]["code"], -32700)
        self.server.write_raw(b"\xff\xfe\n")
        self.assertEqual(self.server.recv()["error"]["code"], -32700)
        self.assertEqual(self.server.call(1, "ping")["result"], {})

    def test_eof_exits_zero(self) -> None:
        """Closing stdin makes the server exit promptly with status 0, even with
        a tool call still running."""
        self.server.initialize()
        self.tool(1, "countdown", {"steps": 100, "interval": 0.1})
        start = time.monotonic()
        self.server.close_stdin()
        self.assertEqual(self.server.proc.wait(timeout=TIMEOUT), 0)
        self.assertLess(time.monotonic() - start, 5)


if __name__ == "__main__":
    unittest.main()
