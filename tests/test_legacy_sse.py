"""
The deprecated HTTP+SSE transport (protocol 2024-11-05, SPEC.md section 3)
over real processes: a real bridge (``twistd -n mcpbridge``) in front of a
real stdio MCP server, driven by the OFFICIAL SDK clients and by raw
``http.client`` where a client cannot do what is tested.

The contract under test:

* ``GET /sse`` opens an event stream and starts one new child for it; the
  first event is ``event: endpoint`` with ``/messages?session_id=<32 hex>``
  (``/servers/NAME/...`` for a named server);
* client messages are POSTed there (202, empty body); every server message
  (responses, progress, log messages, sampling/elicitation/roots requests)
  comes back as ``event: message`` on the stream; unknown session 404,
  malformed JSON 400;
* closing the stream ends the session and stops the child (its process
  group too); a child that exits ends the stream; SIGTERM to the bridge
  stops every child.

* clients: ``tests/clients/python_client.py --transport sse SCENARIO URL``
  (``mcp.client.sse.sse_client``) and ``tests/clients/ts_client.mjs
  --transport sse URL`` (``SSEClientTransport``);
* servers: ``tests/servers/feature_server.py`` and, for crashes,
  ``tests/servers/misbehaving.py``.

Each test starts its own bridge on a free 127.0.0.1 port (with
``--pool-size 0``, so that every process below the bridge belongs to an SSE
session) and checks at cleanup that nothing it started outlives it.  Every
wait is bounded.  Plain ``unittest`` so that both trial and pytest run them.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import socket
import sys
import time
import unittest
import uuid
from typing import Any, Dict, List, Optional, Tuple

from tests.jstools import jsTools
from tests.support import (
    FEATURE_SERVER, HOST, PYTHON_CLIENT, ROOT, TS_CLIENT, Bridge, BridgeTestCase, http_request,
    read_sse_event, run_json, snapshot, still_alive, wait_until)

MISBEHAVING = os.path.join(ROOT, "tests", "servers", "misbehaving.py")

CLIENT_TIMEOUT = 60.0  # seconds for one client script
GONE_TIMEOUT = 10.0  # seconds for processes to be gone after a close or SIGTERM
EVENT_TIMEOUT = 10.0  # seconds for one expected SSE event
#: Short stop graces, so a child that lingers is stopped quickly.
FAST_STOP = ["--stdin-grace", "0.5", "--term-grace", "1"]
#: No stateless pool: every process below the bridge is an SSE session's.
NO_POOL = ["--pool-size", "0"]
#: The feature server behind a shell that leaves a grandchild (sleep 600) in
#: the child's process group: the checks must see that one go too.
WITH_GRANDCHILD = ["/bin/sh", "-c",
                   f"sleep 600 & exec {shlex.quote(sys.executable)} {shlex.quote(FEATURE_SERVER)}"]

ENDPOINT = re.compile(r"(?P<path>(?:/servers/[^/?]+)?/messages)\?session_id=(?P<id>[0-9a-f]{32})")


# ------------------------------------------------------------ raw client ---

def _health_pids(health: Any) -> List[int]:
    """Every C{"pid"} anywhere in a /health report."""
    found: List[int] = []
    if isinstance(health, dict):
        for key, value in health.items():
            if key == "pid" and isinstance(value, int):
                found.append(value)
            else:
                found.extend(_health_pids(value))
    elif isinstance(health, list):
        for value in health:
            found.extend(_health_pids(value))
    return found


def _sse_counts(health: Dict[str, Any]) -> Dict[str, Any]:
    """C{{server label: sse_sessions}} of a /health report."""
    return {name: s.get("sse_sessions") for name, s in (health.get("servers") or {}).items()}


class StreamEnded(Exception):
    """The SSE stream ended while an event was expected."""


class RawSSE:
    """
    One HTTP+SSE connection over C{http.client}: the GET stream and POSTs
    to the endpoint it announces.  Each read is bounded by the socket
    timeout and by the caller's deadline.

    @ivar status: the GET's status.
    @ivar endpoint: the data of the C{endpoint} event (path and query).
    @ivar session_id: the endpoint's C{session_id}.
    @ivar seen: every C{message} event received so far, parsed.
    """

    def __init__(self, port: int, path: str = "/sse",
                 headers: Optional[Dict[str, str]] = None, timeout: float = EVENT_TIMEOUT) -> None:
        self.port = port
        self.timeout = timeout
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
        self.conn.request("GET", path, headers={"accept": "text/event-stream", **(headers or {})})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}
        self.endpoint: Optional[str] = None
        self.session_id: Optional[str] = None
        self.seen: List[Dict[str, Any]] = []
        self.ended = False
        self.ids = 100

    def open(self, testcase: unittest.TestCase) -> "RawSSE":
        """Check the stream's headers and read its C{endpoint} event."""
        if self.status != 200:
            testcase.fail(f"GET /sse: {self.status} {self.response.read(2000)!r}")
        testcase.assertEqual(self.headers.get("content-type", "").split(";")[0].strip(),
                             "text/event-stream")
        first = self.next_event(time.monotonic() + EVENT_TIMEOUT)
        testcase.assertIsNotNone(first, "the stream ended before the endpoint event")
        assert first is not None
        testcase.assertEqual(first["event"], "endpoint", first)
        match = ENDPOINT.fullmatch(first["data"])
        testcase.assertTrue(match, f"endpoint event data {first['data']!r}")
        assert match is not None
        self.endpoint, self.session_id = first["data"], match.group("id")
        return self

    def next_event(self, deadline: float) -> Optional[Dict[str, Any]]:
        """
        The next event as C{{"event", "data", "id"}}, or L{None} at the
        end of the stream; comments are skipped.

        @raise TimeoutError: when C{deadline} or the socket timeout passes.
        """
        event = read_sse_event(self.response, deadline)
        if event is None:
            self.ended = True
        return event

    def next_message(self, deadline: float) -> Dict[str, Any]:
        """
        The next C{message} event's JSON-RPC message.

        @raise StreamEnded: at the end of the stream.
        """
        while True:
            event = self.next_event(deadline)
            if event is None:
                raise StreamEnded(f"the stream ended; messages so far: {self.seen}")
            if event["event"] == "message" and event["data"]:
                message = json.loads(event["data"])
                self.seen.append(message)
                return message

    def response_to(self, ident: Any, timeout: float = EVENT_TIMEOUT
                    ) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
        """Read messages until the response to C{ident}: (it, those before)."""
        deadline = time.monotonic() + timeout
        before: List[Dict[str, Any]] = []
        while True:
            message = self.next_message(deadline)
            if message.get("id") == ident and "method" not in message:
                return message, before
            before.append(message)

    def read_to_end(self, timeout: float) -> List[Dict[str, Any]]:
        """
        Every message until the stream ends.

        @raise TimeoutError: if it has not ended within C{timeout}.
        """
        deadline = time.monotonic() + timeout
        messages: List[Dict[str, Any]] = []
        while True:
            event = self.next_event(deadline)
            if event is None:
                return messages
            if event["event"] == "message" and event["data"]:
                messages.append(json.loads(event["data"]))

    def quiet_for(self, seconds: float) -> Optional[Dict[str, Any]]:
        """The next event if one comes within C{seconds}, else L{None}."""
        assert self.conn.sock is not None
        self.conn.sock.settimeout(seconds)
        try:
            return self.next_event(time.monotonic() + seconds + 1)
        except (TimeoutError, socket.timeout):
            return None
        finally:
            if self.conn.sock is not None:
                self.conn.sock.settimeout(self.timeout)

    def post_raw(self, body: bytes, session_id: Optional[str] = None,
                 headers: Optional[Dict[str, str]] = None,
                 path: Optional[str] = None) -> Tuple[int, Dict[str, str], bytes]:
        """POST C{body} to the endpoint (or to C{path}, or for another session id)."""
        assert self.endpoint is not None and self.session_id is not None
        target = (path or self.endpoint.split("?")[0]) + \
            f"?session_id={session_id or self.session_id}"
        return http_request(self.port, "POST", target, body,
                            {"content-type": "application/json", **(headers or {})})

    def post(self, message: Dict[str, Any]) -> Tuple[int, bytes]:
        status, _, body = self.post_raw(json.dumps(message).encode())
        return status, body

    def request(self, testcase: unittest.TestCase, method: str,
                params: Optional[Dict[str, Any]] = None, ident: Any = None,
                timeout: float = EVENT_TIMEOUT) -> Dict[str, Any]:
        """
        POST a request (expecting 202; the body is checked by
        L{LifecycleTests.test_post_answer_is_202} alone);
        its response from the stream.
        """
        if ident is None:
            self.ids += 1
            ident = self.ids
        message: Dict[str, Any] = {"jsonrpc": "2.0", "id": ident, "method": method}
        if params is not None:
            message["params"] = params
        status, body = self.post(message)
        testcase.assertEqual(status, 202, f"POST {method}: {body[:500]!r}")
        return self.response_to(ident, timeout)[0]

    def initialize(self, testcase: unittest.TestCase) -> Dict[str, Any]:
        """The handshake: initialize (id 1), then notifications/initialized."""
        result = self.request(testcase, "initialize", {
            "protocolVersion": "2024-11-05", "capabilities": {},
            "clientInfo": {"name": "mcpbridge-raw-sse", "version": "1"}}, ident=1)
        testcase.assertIn("result", result, result)
        status, body = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        testcase.assertEqual(status, 202, f"POST notifications/initialized: {body[:500]!r}")
        return result

    def call(self, testcase: unittest.TestCase, tool: str, ident: Any = None,
             **arguments: Any) -> Dict[str, Any]:
        return self.request(testcase, "tools/call", {"name": tool, "arguments": arguments}, ident)

    def close(self) -> None:
        """Cut the connection, as a client that goes away."""
        if self.conn.sock is not None:
            try:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conn.close()


def _text(response: Dict[str, Any]) -> str:
    return "".join(c.get("text", "") for c in response["result"]["content"])


# ------------------------------------------------------------- the tests ---

class SSETestCase(BridgeTestCase):
    """Bridges without a stateless pool, stopped and checked for leaks at cleanup."""

    bridge_options = NO_POOL

    def open_sse(self, bridge: Bridge, path: str = "/sse") -> RawSSE:
        sse = RawSSE(bridge.port, path)
        self.addCleanup(sse.close)
        return sse.open(self)

    def assert_no_children(self, bridge: Bridge, why: str) -> None:
        gone = wait_until(lambda: not bridge.children(), GONE_TIMEOUT)
        self.assertTrue(gone, f"below the bridge {why}: {bridge.children()}\n"
                              f"{bridge.current_log()[-3000:]}")

    def settled_health(self, bridge: Bridge, sse_sessions: int = 0) -> Dict[str, Any]:
        """/health once no session is closing and the default server has C{sse_sessions}."""
        def ready() -> Optional[Dict[str, Any]]:
            h = bridge.health()
            ok = h.get("closing") == 0 and h.get("sse_sessions") == sse_sessions
            return h if ok else None

        health = wait_until(ready, GONE_TIMEOUT)
        self.assertTrue(health, f"/health never settled at {sse_sessions} SSE sessions: "
                                f"{bridge.health()}")
        return health

    def sse_scenario(self, bridge: Bridge, name: str, path: str = "/sse") -> Dict[str, Any]:
        """Run one python_client.py scenario over HTTP+SSE; fail with everything it said."""
        rc, result, stdout, stderr = run_json(
            [sys.executable, PYTHON_CLIENT, "--transport", "sse", name, bridge.base + path],
            timeout=CLIENT_TIMEOUT)
        if rc != 0 or not isinstance(result, dict) or not result.get("ok"):
            self.fail(f"scenario {name} over SSE failed (exit {rc}): "
                      f"{json.dumps(result, indent=1) if result else stdout[-3000:]}\n"
                      f"client stderr:\n{stderr[-3000:]}\nbridge log:\n"
                      f"{bridge.current_log()[-3000:]}")
        self.assertEqual(result["transport"], "sse")
        return result


def _via(result: Dict[str, Any], message: str) -> List[str]:
    """Which HTTP exchanges carried the received messages of this kind."""
    return [w["via"] for w in result.get("wire", ()) if w["message"] == message]


class PythonSDKOverSSETests(SSETestCase):
    """
    The official Python SDK client (``mcp.Client`` over
    ``mcp.client.sse.sse_client``) against the bridge running
    ``feature_server.py``, one bridge per test.  Besides each scenario's own
    checks, the client checks for every connection that the endpoint event
    came first and named ``/messages?session_id=<32 hex>``, that every POST
    got 202 and that every message came on the SSE stream.  After the client
    has gone, its children must be gone too.
    """

    def setUp(self) -> None:
        self.bridge = self.start_bridge([sys.executable, FEATURE_SERVER], FAST_STOP)

    def run_scenario(self, name: str) -> Dict[str, Any]:
        r = self.sse_scenario(self.bridge, name)
        self.assert_no_children(self.bridge, f"after the {name} client closed its SSE stream")
        return r

    def test_basic(self) -> None:
        """
        The SDK's SSE transport gets the endpoint event, completes the
        initialize handshake through it (the child's own InitializeResult),
        lists tools and resources and calls a tool; one GET, POSTs all 202.
        """
        r = self.run_scenario("basic")
        self.assertEqual(r["server"], "mcpbridge-feature-server")
        self.assertEqual(r["protocol_version"], "2025-11-25")
        self.assertRegex(r["session_id"], "^[0-9a-f]{32}$")
        self.assertEqual(r["tools"], ["echo", "elicit", "log", "pid", "progress", "roots",
                                      "sample", "slow_echo", "touch"])
        self.assertEqual(r["resources"], ["test://watched"])
        self.assertEqual(r["echo"], "hello bridge")
        [conn] = r["sse"]
        self.assertEqual(conn["endpoint"], f"/messages?session_id={r['session_id']}")
        self.assertEqual(conn["gets"], [200])
        self.assertEqual(set(conn["posts"]), {202})

    def test_progress(self) -> None:
        """Progress notifications reach the SDK's progress callback, in order, on the stream."""
        r = self.run_scenario("progress")
        self.assertEqual(r["result"], "done 5")
        self.assertEqual(r["progress"], [[float(i), 5.0, f"step {i}"] for i in range(1, 6)])
        self.assertEqual(set(_via(r, "notifications/progress")), {"GET"})

    def test_sampling(self) -> None:
        """
        sampling/createMessage from the child arrives on the stream; the
        SDK's answer, POSTed to the endpoint (202), gets back to the child.
        """
        r = self.run_scenario("sampling")
        self.assertEqual(r["result"], "sampled: sampled(hello)")
        self.assertEqual(r["sampling_requests"], [{"messages": ["hello"], "max_tokens": 50}])
        self.assertEqual(_via(r, "sampling/createMessage"), ["GET"])
        answers = [e for e in r["exchanges"] if e["request"] == "POST response"]
        self.assertEqual([e["status"] for e in answers], [202])

    def test_elicitation(self) -> None:
        """elicitation/create reaches the SDK's callback; its content gets back to the tool."""
        r = self.run_scenario("elicitation")
        self.assertEqual(r["result"], 'accept {"name": "Ada"}')
        self.assertEqual(r["elicitation_requests"], [{"message": "Your name?"}])
        self.assertEqual(_via(r, "elicitation/create"), ["GET"])

    def test_roots(self) -> None:
        """roots/list is answered by the SDK's roots callback; the tool sees those roots."""
        r = self.run_scenario("roots")
        self.assertEqual(r["roots"], ["file:///tmp/mcpbridge-root-a",
                                      "file:///tmp/mcpbridge-root-b"])
        self.assertEqual(r["roots_requests"], 1)
        self.assertEqual(_via(r, "roots/list"), ["GET"])

    def test_logging(self) -> None:
        """logging/setLevel; notifications/message reach the SDK's logging callback in order."""
        r = self.run_scenario("logging")
        self.assertEqual([e["data"] for e in r["logs"]],
                         ["log message 1", "log message 2", "log message 3"])
        self.assertEqual(set(_via(r, "notifications/message")), {"GET"})

    def test_subscription(self) -> None:
        """
        resources/subscribe, then a tool that touches the resource:
        notifications/resources/updated and tools/list_changed arrive, once
        each, on the one SSE stream.
        """
        r = self.run_scenario("subscription")
        self.assertEqual(r["updated"], ["test://watched"])
        self.assertEqual(_via(r, "notifications/resources/updated"), ["GET"])
        self.assertEqual(_via(r, "notifications/tools/list_changed"), ["GET"])

    def test_concurrent_calls(self) -> None:
        """
        Ten concurrent slow_echo calls on one SSE session each get their
        own answer, out of request order, in about the longest delay.
        """
        r = self.run_scenario("concurrent")
        self.assertEqual(r["results"], {str(i): f"msg-{i}" for i in range(10)})
        self.assertNotEqual(r["order"], sorted(r["order"]))
        self.assertLess(r["elapsed"], 3.5)  # one after another: 4.55 s
        self.assertEqual(len(r["sessions"]), 1)

    def test_two_sessions(self) -> None:
        """Two SDK clients at once: two SSE sessions, two children, each its own answers."""
        r = self.run_scenario("two_sessions")
        self.assertNotEqual(r["A"]["pid"], r["B"]["pid"])
        self.assertNotEqual(r["A"]["session_id"], r["B"]["session_id"])
        self.assertEqual(r["A"]["texts"], ["A-0", "A-1", "A-2"])
        self.assertEqual(r["B"]["texts"], ["B-0", "B-1", "B-2"])


class TypeScriptSDKOverSSETest(SSETestCase):
    """The official TypeScript SDK's ``SSEClientTransport`` against the bridge."""

    def test_ts_client(self) -> None:
        """
        ``SSEClientTransport`` + ``Client``: initialize, tools/list, echo, a
        call whose progress reaches ``onprogress``, a sampling and an
        elicitation round trip, logging/setLevel and log notifications;
        every POST 202 with only the word "Accepted".  Closing the client
        closes the stream, which stops the child.  Fails (rather than
        skips) without Node 22 and the SDK when CI is set.
        """
        node, modules = jsTools()
        bridge = self.start_bridge([sys.executable, FEATURE_SERVER], FAST_STOP)
        rc, r, stdout, stderr = run_json(
            [node, TS_CLIENT, "--transport", "sse", bridge.base + "/sse"],
            timeout=CLIENT_TIMEOUT, env={"MCPBRIDGE_JS": modules})
        if rc != 0 or not isinstance(r, dict) or not r.get("ok"):
            self.fail(f"ts_client over SSE failed (exit {rc}): {stdout[-3000:]}\nstderr:\n"
                      f"{stderr[-3000:]}\nbridge log:\n{bridge.current_log()[-3000:]}")
        self.assertEqual(r["node"].split(".")[0], "v22")
        self.assertEqual(r["transport"], "sse")
        self.assertRegex(r["endpoint"], r"^/messages\?session_id=[0-9a-f]{32}$")
        self.assertEqual(r["server"], "mcpbridge-feature-server")
        self.assertEqual(r["echo"], "hello ts sse")
        self.assertEqual(r["wire_progress"], [1, 2, 3, 4, "response"])
        # The SDK may drop the last one from onprogress (see ts_client.mjs).
        self.assertIn([p[0] for p in r["progress"]], ([1, 2, 3, 4], [1, 2, 3]))
        self.assertEqual(r["sample"], "sampled: ts-sampled(hi over sse)")
        self.assertEqual(r["elicit"], 'accept {"name": "Grace"}')
        self.assertEqual([entry[1] for entry in r["logs"]],
                         ["log message 1", "log message 2", "log message 3"])
        self.assertEqual({p["status"] for p in r["posts"]}, {202})
        self.assert_no_children(bridge, "after the TypeScript client closed its SSE stream")
        # The 202 carries the word "Accepted", as the SDK's own SSE server's does.
        self.assertEqual({p["body_length"] for p in r["posts"]}, {len(b"Accepted")})


class LifecycleTests(SSETestCase):
    """
    Sessions, children and streams over raw HTTP, with the processes
    checked in /proc and in /health.
    """

    def test_two_connections_two_children(self) -> None:
        """
        Two SSE connections get two session ids and two children (two pids,
        both in /health as SSE sessions, both below the bridge); a request
        id used in both sessions gets each its own answer, and one session's
        messages (a call's progress) never show up on the other's stream.
        """
        bridge = self.start_bridge([sys.executable, FEATURE_SERVER], FAST_STOP)
        a, b = self.open_sse(bridge), self.open_sse(bridge)
        self.assertNotEqual(a.session_id, b.session_id)
        a.initialize(self)
        b.initialize(self)
        pid_a = int(_text(a.call(self, "pid", ident=2)))
        pid_b = int(_text(b.call(self, "pid", ident=2)))
        self.assertNotEqual(pid_a, pid_b)
        self.assertEqual(sorted(bridge.children()), sorted([pid_a, pid_b]))
        health = self.settled_health(bridge, 2)
        self.assertEqual(sorted(_health_pids(health)), sorted([pid_a, pid_b]))
        self.assertEqual(_sse_counts(health).get("default"), 2, health)

        # The same id in both sessions at once; progress only for A.
        status, _ = a.post({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "progress", "arguments": {"steps": 3, "delay": 0.2},
            "_meta": {"progressToken": "a-token"}}})
        self.assertEqual(status, 202)
        status, _ = b.post({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "echo", "arguments": {"text": "only B"}}})
        self.assertEqual(status, 202)
        answer_b, before_b = b.response_to(3)
        self.assertEqual(_text(answer_b), "only B")
        self.assertEqual(before_b, [])
        answer_a, before_a = a.response_to(3)
        self.assertEqual(_text(answer_a), "done 3")
        self.assertEqual([m["params"]["progress"] for m in before_a], [1.0, 2.0, 3.0])
        self.assertTrue(all(m["params"]["progressToken"] == "a-token" for m in before_a))
        stray = b.quiet_for(0.5)
        self.assertIsNone(stray, f"B's stream carried {stray}")

    def test_closing_the_stream_stops_the_child(self) -> None:
        """
        Closing the SSE connection ends the session: its child and the
        grandchild in its process group are gone, /health no longer lists
        it, and the old session id then gets 404.
        """
        bridge = self.start_bridge(WITH_GRANDCHILD, FAST_STOP)
        sse = self.open_sse(bridge)
        sse.initialize(self)
        pid = int(_text(sse.call(self, "pid")))
        procs = self.wait_for_children(bridge, 2, "the server and its grandchild", timeout=5)
        self.assertIn(pid, procs)
        snap = snapshot(procs)
        self.assertIn(pid, _health_pids(self.settled_health(bridge, 1)))

        sse.close()
        gone = wait_until(lambda: not still_alive(snap), GONE_TIMEOUT)
        self.assertTrue(gone, f"still alive after the SSE stream closed: {still_alive(snap)}\n"
                              f"{bridge.current_log()[-3000:]}")
        self.assert_no_children(bridge, "after the SSE stream closed")
        health = self.settled_health(bridge, 0)
        self.assertNotIn(pid, _health_pids(health))
        self.assertEqual(_sse_counts(health).get("default"), 0, health)
        status, _, body = sse.post_raw(json.dumps(
            {"jsonrpc": "2.0", "id": 9, "method": "tools/list"}).encode())
        self.assertEqual(status, 404, body)

    def test_child_crash_ends_the_stream(self) -> None:
        """
        A child that dies mid-call ends the SSE stream at once: the call
        in flight gets a JSON-RPC error naming the exit code, then the
        stream ends (the client is not left waiting); the session is over
        (404) and /health says so.
        """
        bridge = self.start_bridge([sys.executable, MISBEHAVING], FAST_STOP)
        sse = self.open_sse(bridge)
        sse.initialize(self)
        self.assertEqual(_text(sse.call(self, "echo", text="alive")), "alive")
        status, body = sse.post({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                                 "params": {"name": "crash", "arguments": {"code": 7}}})
        self.assertEqual(status, 202, body)
        started = time.monotonic()
        try:
            rest = sse.read_to_end(5.0)
        except (TimeoutError, socket.timeout):
            self.fail(f"the SSE stream was still open 5 s after its child crashed "
                      f"(children: {bridge.children()})\n{bridge.current_log()[-3000:]}")
        self.assertLess(time.monotonic() - started, 3.0)
        errors = [m for m in rest if m.get("id") == 5]
        self.assertEqual(len(errors), 1, rest)
        self.assertIn("exited with code 7", errors[0]["error"]["message"])
        self.assert_no_children(bridge, "after the child crashed")
        self.settled_health(bridge, 0)
        status, _, body = sse.post_raw(json.dumps(
            {"jsonrpc": "2.0", "id": 6, "method": "tools/list"}).encode())
        self.assertEqual(status, 404, body)
        self.assertIn("crashing as asked", bridge.stop())

    def test_child_exiting_at_start_ends_the_stream(self) -> None:
        """
        A server that exits at once: GET /sse either fails with a 5xx or
        its stream ends promptly (no hang); either way no child is left
        and /health names the exit code.
        """
        bridge = self.start_bridge([sys.executable, MISBEHAVING, "--exit-at-start", "3"],
                                   FAST_STOP)
        sse = RawSSE(bridge.port)
        self.addCleanup(sse.close)
        if sse.status == 200:
            try:
                sse.read_to_end(5.0)
            except (TimeoutError, socket.timeout):
                self.fail("the SSE stream of a child that exited at start was still open "
                          f"after 5 s\n{bridge.current_log()[-3000:]}")
        else:
            self.assertGreaterEqual(sse.status, 500)
        self.assert_no_children(bridge, "after the child exited")
        health = wait_until(lambda: (lambda h: h if h.get("last_error") else None)(
            bridge.health()), 5)
        self.assertTrue(health, bridge.health())
        self.assertIn("exited with code 3", health["last_error"])

    def test_post_answer_is_202(self) -> None:
        """
        Every kind of accepted POST (a request, a notification, a response
        to a server request) is answered 202 with only the word "Accepted"
        (as the SDK's own SSE server answers): the answer itself goes on
        the stream.
        """
        bridge = self.start_bridge([sys.executable, FEATURE_SERVER], FAST_STOP)
        sse = self.open_sse(bridge)
        answers = []
        answers.append(sse.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {"roots": {}},
            "clientInfo": {"name": "mcpbridge-raw-sse", "version": "1"}}}))
        sse.response_to(1)
        answers.append(sse.post({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        answers.append(sse.post({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                 "params": {"name": "roots", "arguments": {}}}))
        ask = sse.next_message(time.monotonic() + EVENT_TIMEOUT)
        self.assertEqual(ask.get("method"), "roots/list", ask)
        answers.append(sse.post({"jsonrpc": "2.0", "id": ask["id"], "result": {
            "roots": [{"uri": "file:///tmp/r", "name": "r"}]}}))
        answer, _ = sse.response_to(2)
        self.assertEqual(json.loads(_text(answer)), ["file:///tmp/r"])
        self.assertEqual(answers, [(202, b"Accepted")] * 4)

    def test_unknown_session_is_404(self) -> None:
        """POSTs for a session id that was never issued get 404, and start no child."""
        bridge = self.start_bridge([sys.executable, FEATURE_SERVER], FAST_STOP)
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
        for path in (f"/messages?session_id={uuid.uuid4().hex}",
                     f"/messages?session_id={'0' * 32}"):
            status, _, answer = http_request(bridge.port, "POST", path, body,
                                             {"content-type": "application/json"})
            self.assertEqual(status, 404, (path, answer))
        self.assertEqual(bridge.children(), [])

    def test_malformed_json_is_400_and_the_session_survives(self) -> None:
        """
        A POST of malformed JSON gets 400 and sends nothing on the stream;
        the session goes on: the next request is answered on the same stream.
        """
        bridge = self.start_bridge([sys.executable, FEATURE_SERVER], FAST_STOP)
        sse = self.open_sse(bridge)
        sse.initialize(self)
        status, _, body = sse.post_raw(b'{"jsonrpc": "2.0", "id": 2, "method": "tools/li')
        self.assertEqual(status, 400, body)
        status, _, body = sse.post_raw(b"not json at all")
        self.assertEqual(status, 400, body)
        status, body = sse.post({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                                 "params": {"name": "echo", "arguments": {"text": "still here"}}})
        self.assertEqual(status, 202, body)
        answer, before = sse.response_to(3)
        self.assertEqual(_text(answer), "still here")
        self.assertEqual(before, [], "something came on the stream for the malformed POSTs")
        self.assertEqual(len(bridge.children()), 1)

    def test_sigterm_stops_every_child(self) -> None:
        """
        SIGTERM to the bridge with three SSE sessions open (one with a
        1.5 s call in flight): the bridge exits promptly, every child and
        grandchild is gone, and every stream ends (the call in flight
        answered with its result or an error first).
        """
        bridge = self.start_bridge(WITH_GRANDCHILD, FAST_STOP, check_leaks=False)
        streams = [self.open_sse(bridge) for _ in range(3)]
        for sse in streams:
            sse.initialize(self)
        status, _ = streams[0].post({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                     "params": {"name": "slow_echo",
                                                "arguments": {"text": "in flight", "delay": 1.5}}})
        self.assertEqual(status, 202)
        children = self.wait_for_children(bridge, 6, "3 children and 3 grandchildren")
        self.assertEqual(_sse_counts(bridge.health()).get("default"), 3)
        self.assert_stops_cleanly(bridge, children)
        for n, sse in enumerate(streams):
            try:
                rest = sse.read_to_end(5.0)
            except (TimeoutError, socket.timeout):
                self.fail(f"SSE stream {n} still open after the bridge exited")
            if n == 0:
                answers = [m for m in rest if m.get("id") == 7]
                self.assertEqual(len(answers), 1, rest)
                if "result" in answers[0]:
                    self.assertEqual(_text(answers[0]), "in flight")
                else:
                    self.assertIn("error", answers[0])

    def test_named_server(self) -> None:
        """
        A named server's SSE endpoint, /servers/NAME/sse, announces
        /servers/NAME/messages?session_id=..., serves a tool call, and counts
        in /health under its name; its session id is unknown (404) to the
        default server's /messages.  The Python SDK works against it too.
        """
        named = shlex.join([sys.executable, FEATURE_SERVER])
        bridge = self.start_bridge([sys.executable, FEATURE_SERVER],
                                   [*FAST_STOP, "--named-server", f"tools={named}"])
        sse = self.open_sse(bridge, "/servers/tools/sse")
        self.assertEqual(sse.endpoint, f"/servers/tools/messages?session_id={sse.session_id}")
        init = sse.initialize(self)
        self.assertEqual(init["result"]["serverInfo"]["name"], "mcpbridge-feature-server")
        self.assertEqual(_text(sse.call(self, "echo", text="named")), "named")
        counts = _sse_counts(bridge.health())
        self.assertEqual(counts.get("tools"), 1, counts)
        self.assertEqual(counts.get("default"), 0, counts)
        status, _, body = sse.post_raw(json.dumps(
            {"jsonrpc": "2.0", "id": 9, "method": "tools/list"}).encode(),
            path="/messages")
        self.assertEqual(status, 404, body)
        self.assertEqual(len(bridge.children()), 1)
        sse.close()
        self.assert_no_children(bridge, "after the named server's SSE stream closed")

        r = self.sse_scenario(bridge, "basic", "/servers/tools/sse")
        self.assertEqual(r["echo"], "hello bridge")
        self.assertRegex(r["sse"][0]["endpoint"],
                         r"^/servers/tools/messages\?session_id=[0-9a-f]{32}$")
        self.assert_no_children(bridge, "after the SDK client closed its SSE stream")

    def test_foreign_origin_refused(self) -> None:
        """
        A browser Origin that is not allowed gets 403 on GET /sse (and no
        child is started) and on a POST to a real session's endpoint; a
        loopback Origin is served.
        """
        bridge = self.start_bridge([sys.executable, FEATURE_SERVER], FAST_STOP)
        evil = RawSSE(bridge.port, headers={"origin": "http://evil.example.com"})
        self.addCleanup(evil.close)
        self.assertEqual(evil.status, 403)
        self.assertEqual(bridge.children(), [])
        sse = RawSSE(bridge.port, headers={"origin": f"http://127.0.0.1:{bridge.port}"})
        self.addCleanup(sse.close)
        sse.open(self)
        status, _, _ = sse.post_raw(json.dumps({"jsonrpc": "2.0", "method": "ping", "id": 1})
                                    .encode(), headers={"origin": "http://evil.example.com"})
        self.assertEqual(status, 403)
        sse.initialize(self)


if __name__ == "__main__":
    unittest.main()
