"""
The stateless era's pool of children over real processes: a real bridge
(twistd) in front of L{stateless_server} children, driven by plain HTTP.

Many concurrent requests whose client ids repeat are told apart and spread
over every child; a child that crashes fails its requests at once and is
replaced; a client that closes its connection cancels its request in the
child; a subscription is acknowledged once and cancelled on every child.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional
from urllib.parse import urlsplit

from twisted.trial.unittest import SynchronousTestCase

from .support import ROOT, Bridge, descendants, process_alive, read_sse_event, wait_until

SERVER = os.path.join(ROOT, "tests", "servers", "stateless_server.py")
VERSION = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientCapabilities": {}}
FAST_STOP = ("--stdin-grace", "0.5", "--term-grace", "1", "--drain-timeout", "1")
CANCEL_REASON = "the client closed the request's stream"


# HTTP helpers.

def statelessRequest(url: str, id: Any, method: str, params: dict[str, Any]
                     ) -> tuple[str, bytes, dict[str, str]]:
    """
    The path, body and headers of one stateless POST.
    """
    body = json.dumps({"jsonrpc": "2.0", "id": id, "method": method,
                       "params": dict(params, _meta=META)}).encode("utf-8")
    headers = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json",
               "MCP-Protocol-Version": VERSION, "Mcp-Method": method}
    if method == "tools/call":
        headers["Mcp-Name"] = params["name"]
    return urlsplit(url).path, body, headers


def parseAnswer(contentType: str, data: bytes, id: Any) -> Any:
    """
    The JSON-RPC answer in a response body: the object of a JSON body, or
    the message with C{id} among an SSE body's C{data:} lines (L{None} if
    it is not there).
    """
    if not contentType.startswith("text/event-stream"):
        return json.loads(data) if data else None
    for event in data.decode("utf-8").replace("\r\n", "\n").split("\n\n"):
        lines = [line[5:].lstrip(" ") for line in event.split("\n") if line.startswith("data:")]
        if not lines:
            continue
        message = json.loads("\n".join(lines))
        if isinstance(message, dict) and "method" not in message and message.get("id") == id:
            return message
    return None


def statelessCall(url: str, id: Any, name: str, arguments: Optional[dict[str, Any]] = None,
                  timeout: float = 30.0) -> tuple[int, dict[str, str], Any]:
    """
    One stateless C{tools/call} on a connection of its own.

    @return: (status, lower-cased headers, the parsed answer).
    """
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    path, body, headers = statelessRequest(url, id, "tools/call", params)
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        lowered = {k.lower(): v for k, v in response.getheaders()}
        return response.status, lowered, parseAnswer(lowered.get("content-type", ""), data, id)
    finally:
        conn.close()


def resultText(answer: Any) -> str:
    return answer["result"]["content"][0]["text"]


class PoolProcessTestCase(SynchronousTestCase):
    def bridge(self, *options: str) -> Bridge:
        self.workers: list[threading.Thread] = []
        # Cleanups run last first: the bridge stops (which answers whatever
        # still hangs), then the threads that waited for it are joined.
        self.addCleanup(self.joinWorkers)
        bridge = Bridge([sys.executable, SERVER], options=[*FAST_STOP, *options]).start()
        self.addCleanup(bridge.stop)
        return bridge

    def joinWorkers(self) -> None:
        deadline = time.monotonic() + 20
        for worker in self.workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def pool(self, bridge: Bridge) -> dict[str, Any]:
        status: dict[str, Any] = bridge.health()["stateless"]
        return status

    def readyPool(self, bridge: Bridge, size: int, timeout: float = 10.0) -> dict[str, Any]:
        """
        Wait (bounded) until the pool has C{size} ready children.
        """
        def ready() -> Any:
            status = self.pool(bridge)
            children = status["children"]
            if len(children) == size and all(c["state"] == "ready" for c in children):
                return status
            return None

        status = wait_until(ready, timeout)
        self.assertTrue(status, f"the pool never had {size} ready children: "
                                f"{self.pool(bridge)}\n{bridge.current_log()}")
        self.assertTrue(status["speaks"])
        return status

    def loads(self, bridge: Bridge) -> dict[int, int]:
        return {c["pid"]: c["load"] for c in self.pool(bridge)["children"]}

    def background(self, target: Any) -> threading.Thread:
        """
        Run C{target} in a daemon thread, joined (bounded) at cleanup, once
        the bridge has stopped.
        """
        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        self.workers.append(worker)
        return worker


class ConcurrencyTests(PoolProcessTestCase):
    def test_manyConcurrentRequests(self) -> None:
        """
        200 concurrent requests, with client ids that repeat, over 4
        children: each gets its own answer under its own id, the children
        see 200 distinct ids, every child serves some, and they run in
        parallel.
        """
        bridge = self.bridge("--pool-size", "4", "--pool-concurrency", "64")
        pids = {c["pid"] for c in self.readyPool(bridge, 4)["children"]}
        rng = random.Random(20260728)
        jobs = []
        for n in range(200):
            clientId: Any = n % 5 if n % 2 else f"r{n % 3}"
            jobs.append((clientId, f"tag-{n}", rng.randint(0, 300)))

        def one(job: tuple[Any, str, int]) -> tuple[Any, str, int, dict[str, str], Any]:
            clientId, tag, ms = job
            status, headers, answer = statelessCall(bridge.url, clientId, "delay",
                                                    {"ms": ms, "tag": tag}, timeout=30)
            return clientId, tag, status, headers, answer

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=50) as executor:
            results = list(executor.map(one, jobs, timeout=60))
        elapsed = time.monotonic() - started

        seen: list[Any] = []
        served: dict[int, int] = {}
        for clientId, tag, status, headers, answer in results:
            self.assertEqual(status, 200, (tag, answer))
            self.assertNotIn("mcp-session-id", headers)
            self.assertIsNotNone(answer, tag)
            self.assertEqual(answer["id"], clientId)
            self.assertIs(type(answer["id"]), type(clientId))
            self.assertNotIn("error", answer, tag)
            inner = json.loads(resultText(answer))
            self.assertEqual(inner["tag"], tag)
            self.assertIs(type(inner["id"]), int)
            seen.append(inner["id"])
            served[inner["pid"]] = served.get(inner["pid"], 0) + 1
        self.assertEqual(len(set(seen)), 200, "the children saw a repeated id")
        self.assertEqual(set(served), pids, f"requests per child: {served}")
        # 200 requests of 150 ms on average would take 30 s one at a time.
        self.assertLess(elapsed, 15.0)
        self.assertEqual(sum(self.loads(bridge).values()), 0)


class CrashTests(PoolProcessTestCase):
    def test_crashFailsInFlightAndIsReplaced(self) -> None:
        """
        A child that crashes with requests in flight fails them at once
        (-32000, 502) while the other child's keep waiting; the pool gets a
        new ready child, and the dead process is reaped.
        """
        bridge = self.bridge("--pool-size", "2", "--pool-concurrency", "8")
        before = {c["pid"] for c in self.readyPool(bridge, 2)["children"]}
        answers: dict[str, tuple[float, int, Any]] = {}

        def hang(key: str) -> None:
            try:
                status, _, answer = statelessCall(bridge.url, key, "hang", timeout=30)
            except OSError as e:
                status, answer = -1, repr(e)
            answers[key] = (time.monotonic(), status, answer)

        # Two hung requests on each child, one at a time so /health tells
        # where each went: the loads end up equal, so the crash (sent to the
        # least busy child) lands on a child that holds hung requests.
        where: dict[str, int] = {}
        for n in range(4):
            key = f"hang-{n}"
            previous = self.loads(bridge)
            self.background(lambda key=key: hang(key))
            grown = wait_until(lambda: sum(self.loads(bridge).values()) == n + 1, 5)
            self.assertTrue(grown, f"{key} never reached a child: {self.pool(bridge)}")
            now = self.loads(bridge)
            [pid] = [p for p in now if now[p] == previous.get(p, 0) + 1]
            where[key] = pid
        self.assertEqual(self.loads(bridge), {p: 2 for p in before})

        crashedAt = time.monotonic()
        status, _, answer = statelessCall(bridge.url, "boom", "crash", {"code": 7}, timeout=10)
        self.assertEqual(status, 502, answer)
        self.assertEqual(answer["id"], "boom")
        self.assertEqual(answer["error"]["code"], -32000)

        gone = wait_until(lambda: before - {c["pid"] for c in self.pool(bridge)["children"]}, 5)
        self.assertEqual(len(gone), 1, self.pool(bridge))
        [dead] = gone
        [survivor] = before - gone
        onDead = sorted(k for k, p in where.items() if p == dead)
        onSurvivor = sorted(k for k, p in where.items() if p == survivor)
        self.assertEqual(len(onDead), 2)

        failed = wait_until(lambda: all(k in answers for k in onDead), 3)
        self.assertTrue(failed, f"hung requests of the dead child not answered: {answers}")
        for key in onDead:
            at, status, answer = answers[key]
            self.assertLess(at - crashedAt, 1.5, key)
            self.assertEqual(status, 502, answer)
            self.assertEqual(answer["id"], key)
            self.assertEqual(answer["error"]["code"], -32000)
        for key in onSurvivor:
            self.assertNotIn(key, answers)

        def replaced() -> Any:
            children = self.pool(bridge)["children"]
            states = {c["pid"]: c["state"] for c in children}
            return (len(children) == 2 and survivor in states and dead not in states
                    and all(s == "ready" for s in states.values())) and children

        children = wait_until(replaced, 10)
        self.assertTrue(children, f"the pool was not refilled: {self.pool(bridge)}")
        [fresh] = [c for c in children if c["pid"] != survivor]
        self.assertNotIn(fresh["pid"], before)
        self.assertEqual(fresh["load"], 0)
        self.assertEqual({c["pid"]: c["load"] for c in children}[survivor], 2)
        # Reaped, not merely dead: no zombie left in the process table.
        self.assertTrue(wait_until(lambda: not os.path.exists(f"/proc/{dead}"), 5),
                        f"{dead} is still in the process table (alive: {process_alive(dead)})")
        self.assertNotIn(dead, descendants(bridge.pid))

        # The new child serves (it is the least busy one).
        status, _, answer = statelessCall(bridge.url, 1, "pid", timeout=10)
        self.assertEqual(status, 200, answer)
        self.assertEqual(int(resultText(answer)), fresh["pid"])


class CancellationTests(PoolProcessTestCase):
    def test_disconnectCancelsInChild(self) -> None:
        """
        A client that closes its connection before the answer cancels its
        request: the child gets one C{notifications/cancelled} under the
        bridge's id (not the client's), and the load goes back to 0.
        """
        bridge = self.bridge("--pool-size", "1")
        self.readyPool(bridge, 1)
        path, body, headers = statelessRequest(bridge.url, "client-7", "tools/call",
                                               {"name": "hang"})
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        raw = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{bridge.port}\r\n{head}"
               f"Content-Length: {len(body)}\r\n\r\n").encode("ascii") + body
        sock = socket.create_connection(("127.0.0.1", bridge.port), timeout=10)
        try:
            sock.sendall(raw)
            busy = wait_until(lambda: sum(self.loads(bridge).values()) == 1, 5)
            self.assertTrue(busy, f"the request never reached the child: {self.pool(bridge)}")
        finally:
            sock.close()
        idle = wait_until(lambda: sum(self.loads(bridge).values()) == 0, 5)
        self.assertTrue(idle, f"the request was not released: {self.pool(bridge)}")

        status, _, answer = statelessCall(bridge.url, "ask", "cancelled", timeout=10)
        self.assertEqual(status, 200, answer)
        cancelled = json.loads(resultText(answer))
        self.assertEqual(len(cancelled), 1, cancelled)
        [note] = cancelled
        self.assertEqual(note["reason"], CANCEL_REASON)
        self.assertIs(type(note["requestId"]), int)
        self.assertEqual(sum(self.loads(bridge).values()), 0)


class SubscriptionTests(PoolProcessTestCase):
    def test_listenAcknowledgedOnceCancelledOnClose(self) -> None:
        """
        C{subscriptions/listen} over two children: the client sees one
        acknowledgement under its own id; closing the stream cancels the
        subscription on the children.
        """
        bridge = self.bridge("--pool-size", "2")
        self.readyPool(bridge, 2)
        path, body, headers = statelessRequest(
            bridge.url, "listen-1", "subscriptions/listen",
            {"notifications": {"toolsListChanged": True}})
        conn = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=5)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            self.assertEqual(response.status, 200)
            self.assertTrue(response.getheader("content-type", "").startswith(
                "text/event-stream"))
            event = read_sse_event(response, time.monotonic() + 5)
            assert event is not None, "the subscription's stream ended at once"
            ack = json.loads(event["data"])
            self.assertEqual(ack["method"], "notifications/subscriptions/acknowledged")
            self.assertEqual(ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
                             "listen-1")
            # No second acknowledgement follows (the other child's is dropped).
            assert conn.sock is not None
            conn.sock.settimeout(0.7)
            try:
                extra = read_sse_event(response, time.monotonic() + 0.7)
            except (TimeoutError, socket.timeout):
                extra = None
            self.assertIsNone(extra)
        finally:
            conn.close()

        def cancelledHere() -> Any:
            _, _, answer = statelessCall(bridge.url, 5, "cancelled", timeout=10)
            notes = json.loads(resultText(answer))
            return notes if notes else None

        notes = wait_until(cancelledHere, 5, interval=0.1)
        self.assertTrue(notes, "no child heard that the subscription ended")
        self.assertEqual(len(notes), 1, notes)
        self.assertIs(type(notes[0]["requestId"]), int)
        self.assertEqual(notes[0]["reason"], CANCEL_REASON)
