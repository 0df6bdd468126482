"""
Fault injection over real processes: small misbehaving stdio servers
(crash mid-call, exit at startup, never answer, garbage on stdout, huge
lines, ignore EOF, grandchildren that ignore SIGTERM, stderr floods) and what
the bridge must do about each, process counts included.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .rawclient import Client
from .support import ROOT, Bridge, descendants, snapshot, still_alive, wait_until

SERVER = os.path.join(ROOT, "tests", "servers", "misbehaving.py")
FAST_STOP = ("--stdin-grace", "0.5", "--term-grace", "1")


class FaultTestCase(SynchronousTestCase):
    def bridge(self, *serverArgs: str, options: Any = (), env: Any = None) -> Bridge:
        bridge = Bridge([sys.executable, SERVER, *serverArgs],
                        options=[*FAST_STOP, *options], env=env).start()
        self.addCleanup(bridge.stop)
        return bridge

    def client(self, bridge: Bridge) -> Client:
        client = Client(bridge)
        client.initialize()
        return client

    def assertAllGone(self, processes: Any, within: float = 6.0) -> None:
        """
        Every process in a L{snapshot} is gone within C{within} seconds.
        """
        left = wait_until(lambda: not still_alive(processes), within)
        self.assertTrue(left, f"still alive: {still_alive(processes)}")


class NothingLeftBehindTests(FaultTestCase):
    def test_deleteStopsGrandchildren(self) -> None:
        """
        DELETE stops the child and a grandchild of it that ignores SIGTERM
        (SIGKILL to the process group after the grace time).
        """
        bridge = self.bridge("--grandchild")
        client = self.client(bridge)
        wait_until(lambda: len(descendants(bridge.pid)) >= 2, 5)
        procs = snapshot(descendants(bridge.pid))
        self.assertGreaterEqual(len(procs), 2)
        self.assertEqual(client.delete(), 204)
        self.assertAllGone(procs)

    def test_ignoresStdinEOF(self) -> None:
        """
        A child that ignores stdin EOF is stopped by SIGTERM after the
        stdin grace time.
        """
        bridge = self.bridge("--ignore-eof")
        client = self.client(bridge)
        procs = snapshot(descendants(bridge.pid))
        started = time.monotonic()
        client.delete()
        self.assertAllGone(procs)
        self.assertLess(time.monotonic() - started, 3.0)

    def test_shellWrapper(self) -> None:
        """
        Through --shell (sh -c, which stays the parent) the server and its
        grandchild are stopped too.
        """
        bridge = Bridge([f"{sys.executable} {SERVER} --grandchild; echo after"],
                        options=[*FAST_STOP, "--shell"]).start()
        self.addCleanup(bridge.stop)
        client = self.client(bridge)
        wait_until(lambda: len(descendants(bridge.pid)) >= 3, 5)
        procs = snapshot(descendants(bridge.pid))
        self.assertGreaterEqual(len(procs), 3)
        client.delete()
        self.assertAllGone(procs)

    def test_sigtermStopsEverything(self) -> None:
        """
        SIGTERM to the bridge: it exits on its own, and no process of any
        session survives, stubborn ones included.
        """
        bridge = self.bridge("--grandchild", options=["--drain-timeout", "1"])
        clients = [self.client(bridge) for _ in range(3)]
        wait_until(lambda: len(descendants(bridge.pid)) >= 6, 5)
        procs = snapshot(descendants(bridge.pid))
        self.assertGreaterEqual(len(procs), 6)
        self.assertEqual(bridge.health()["sessions"], len(clients))
        started = time.monotonic()
        bridge.stop()
        self.assertIn(bridge.returncode, (0, -signal.SIGTERM))
        self.assertLess(time.monotonic() - started, 8)
        self.assertAllGone(procs)

    def test_drainLetsRequestsFinish(self) -> None:
        """
        On SIGTERM a request in flight is still answered, a new session is
        refused with 503 meanwhile, and then every child stops.
        """
        import threading

        bridge = self.bridge(options=["--drain-timeout", "10"])
        client = self.client(bridge)
        procs = snapshot(descendants(bridge.pid))
        answers: list[Any] = []
        worker = threading.Thread(
            target=lambda: answers.append(client.rawCall("sleep", seconds=1.5, timeout=10)))
        worker.start()
        time.sleep(0.3)
        bridge.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        status, headers, body = Client(bridge).initializeRaw(timeout=5)
        self.assertEqual(status, 503)
        worker.join(10)
        self.assertEqual(answers[0][0], 200)
        self.assertEqual(json.loads(answers[0][2])["result"]["content"][0]["text"], "slept")
        bridge.stop()
        self.assertAllGone(procs)


class CrashTests(FaultTestCase):
    def test_crashMidCall(self) -> None:
        """
        A child that dies mid-call: the call gets a JSON-RPC error naming
        the exit code fast, the session is over (404), and another session
        is untouched.
        """
        bridge = self.bridge()
        other = self.client(bridge)
        client = self.client(bridge)
        started = time.monotonic()
        status, headers, body = client.rawCall("crash", code=7)
        elapsed = time.monotonic() - started
        self.assertEqual(status, 200)
        error = json.loads(body)["error"]
        self.assertIn("exited with code 7", error["message"])
        self.assertLess(elapsed, 0.1)  # measured: 2-3 ms for the whole call
        self.assertEqual(client.rawCall("echo", text="x")[0], 404)
        self.assertEqual(other.call("echo", text="fine")["result"]["content"][0]["text"], "fine")
        client.initialize()
        self.assertEqual(client.call("echo", text="again")["result"]["content"][0]["text"],
                         "again")
        log = bridge.stop()
        self.assertIn("crashing as asked", log)


class StartupTests(FaultTestCase):
    def test_exitAtStart(self) -> None:
        """
        A child that exits at once: initialize gets 502 with a message
        naming the exit code, quickly, and /health says it is failing.
        """
        bridge = self.bridge("--exit-at-start", "3", options=["--pool-size", "0"])
        started = time.monotonic()
        status, headers, body = Client(bridge).initializeRaw()
        self.assertEqual(status, 502)
        self.assertIn("exited with code 3", json.loads(body)["error"]["message"])
        self.assertLess(time.monotonic() - started, 5)
        self.assertNotIn("mcp-session-id", headers)
        health = bridge.health()
        self.assertEqual(health["status"], "failing")
        self.assertIn("exited with code 3", health["last_error"])

    def test_exitAtStartSeenWithoutClients(self) -> None:
        """
        With the stateless pool on, the bridge starts a child by itself (to
        ask which protocol eras the server speaks), so a server that exits
        at once makes /health fail before any client came, naming the exit
        code, and the bridge keeps retrying rather than spinning.
        """
        bridge = Bridge([sys.executable, SERVER, "--exit-at-start", "3"],
                        options=FAST_STOP).start(healthy=False)
        self.addCleanup(bridge.stop)
        health = wait_until(lambda: (lambda h: h if h["status"] == "failing" else None)(
            bridge.health()), 10)
        self.assertTrue(health, bridge.health())
        self.assertIn("exited with code 3", health["last_error"])
        self.assertEqual(health["_status"], 503)
        time.sleep(1.5)
        starts = bridge.current_log().count("child misbehaving.py started")
        self.assertLessEqual(starts, 4, bridge.current_log()[-3000:])

    def test_commandMissing(self) -> None:
        """
        A command that does not exist: the bridge refuses to start with a
        usage error naming it; one removed after the start gives initialize
        a 502 naming it, at once, and /health says it is failing.
        """
        import subprocess
        import tempfile

        from .support import TWISTD, child_env

        out = subprocess.run([TWISTD, "-n", "--pidfile=", "mcpbridge", "--",
                              "no-such-mcp-server-xyz"], capture_output=True, text=True,
                             timeout=60, env=child_env(), cwd=tempfile.gettempdir())
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("no-such-mcp-server-xyz", out.stdout + out.stderr)
        self.assertNotIn("Traceback", out.stdout + out.stderr)

        script = os.path.abspath(self.mktemp())
        with open(script, "w") as f:
            f.write(f"#!/bin/sh\nexec {sys.executable} {SERVER}\n")
        os.chmod(script, 0o755)
        bridge = Bridge([script], options=FAST_STOP).start()
        self.addCleanup(bridge.stop)
        os.remove(script)
        started = time.monotonic()
        status, headers, body = Client(bridge).initializeRaw()
        self.assertEqual(status, 502)
        self.assertIn(script, json.loads(body)["error"]["message"])
        self.assertLess(time.monotonic() - started, 1)
        self.assertEqual(bridge.health()["status"], "failing")

    def test_neverAnswers(self) -> None:
        """
        A child that never answers initialize: 504 within the startup
        timeout, and the child is stopped.
        """
        bridge = self.bridge("--no-initialize", options=["--startup-timeout", "1"])
        started = time.monotonic()
        status, headers, body = Client(bridge).initializeRaw(timeout=10)
        self.assertEqual(status, 504)
        self.assertLess(time.monotonic() - started, 3)
        self.assertIn("did not answer initialize", json.loads(body)["error"]["message"])
        self.assertTrue(wait_until(lambda: not descendants(bridge.pid), 5))


class TimeoutTests(FaultTestCase):
    def test_requestTimeout(self) -> None:
        """
        A call the child never answers gets a timeout error after the
        request timeout; the session keeps working.
        """
        bridge = self.bridge(options=["--request-timeout", "1"])
        client = self.client(bridge)
        reply = client.call("hang", timeout=10)
        self.assertEqual(reply["error"]["code"], -32001)
        self.assertEqual(client.call("echo", text="ok")["result"]["content"][0]["text"], "ok")

    def test_idleReaped(self) -> None:
        """
        An idle session and its child end after the idle timeout.
        """
        bridge = self.bridge(options=["--idle-timeout", "1"])
        client = self.client(bridge)
        procs = snapshot(descendants(bridge.pid))
        self.assertAllGone(procs, within=8)
        self.assertEqual(client.rawCall("echo", text="x")[0], 404)


class NoisyChildTests(FaultTestCase):
    def test_garbageOnStdout(self) -> None:
        """
        Non-JSON lines on stdout (a banner, a stray print) are skipped.
        """
        bridge = self.bridge("--banner", "Welcome to my server!")
        client = self.client(bridge)
        reply = client.call("garbage")
        self.assertEqual(reply["result"]["content"][0]["text"], "after garbage")
        self.assertIn("not JSON-RPC", bridge.stop())

    def test_hugeLine(self) -> None:
        """
        A 50 MiB line over the limit is discarded with a clear error for
        its request, and the session goes on.
        """
        bridge = self.bridge(options=["--max-message-size", "10M"])
        client = self.client(bridge)
        reply = client.call("huge_line", size=50 * 1024 * 1024)
        self.assertEqual(reply["error"]["code"], -32003)
        self.assertEqual(client.call("echo", text="ok")["result"]["content"][0]["text"], "ok")

    def test_stderrFlood(self) -> None:
        """
        A child writing megabytes to stderr never blocks: its stderr is
        drained and logged line by line with the session id.
        """
        bridge = self.bridge("--stderr-flood", str(8 * 1024 * 1024))
        client = self.client(bridge)
        self.assertEqual(client.call("echo", text="ok")["result"]["content"][0]["text"], "ok")
        pid = client.call("pid")["result"]["content"][0]["text"]
        log = bridge.stop()
        line = f"misbehaving.py[{pid}] session {client.session[:8]} stderr: " + "x" * 99
        self.assertGreater(log.count(line), 1000)


class LimitsTests(FaultTestCase):
    def test_maxSessions(self) -> None:
        """
        --max-sessions is enforced with 503, Retry-After and a JSON-RPC
        error; ending a session makes room.
        """
        bridge = self.bridge(options=["--max-sessions", "1"])
        first = self.client(bridge)
        status, headers, body = Client(bridge).initializeRaw()
        self.assertEqual(status, 503)
        self.assertEqual(headers.get("retry-after"), "5")
        self.assertIn("too many sessions", json.loads(body)["error"]["message"])
        first.delete()
        self.client(bridge)

    def test_environment(self) -> None:
        """
        The child gets the safe subset plus --env, never the bridge's own
        secrets, NOTIFY_SOCKET or LISTEN_*; --cwd sets its directory.
        """
        cwd = os.path.realpath(self.mktemp())
        os.makedirs(cwd)
        bridge = self.bridge(options=["--env", "GREETING=hi", "--cwd", cwd],
                             env={"SECRET_TOKEN": "s3cret", "NOTIFY_SOCKET": "/run/x",
                                  "LISTEN_FDS": "1"})
        client = self.client(bridge)
        seen = json.loads(client.call("env")["result"]["content"][0]["text"])
        self.assertEqual(seen["env"]["GREETING"], "hi")
        for name in ("SECRET_TOKEN", "NOTIFY_SOCKET", "LISTEN_FDS"):
            self.assertNotIn(name, seen["env"])
        self.assertIn("PATH", seen["env"])
        self.assertEqual(seen["cwd"], cwd)

    def test_passEnvironment(self) -> None:
        """
        --pass-environment passes the bridge's variables, still without
        NOTIFY_SOCKET.
        """
        bridge = self.bridge(options=["--pass-environment"],
                             env={"SECRET_TOKEN": "s3cret", "NOTIFY_SOCKET": "/run/x"})
        client = self.client(bridge)
        seen = json.loads(client.call("env")["result"]["content"][0]["text"])["env"]
        self.assertEqual(seen["SECRET_TOKEN"], "s3cret")
        self.assertNotIn("NOTIFY_SOCKET", seen)


class SpareTests(FaultTestCase):
    def test_sparesServeSessions(self) -> None:
        """
        With --spares 2, two children run before any client, a session uses
        one, and a replacement starts; each session still has its own child.
        """
        bridge = self.bridge(options=["--spares", "2"])
        self.assertTrue(wait_until(lambda: len(descendants(bridge.pid)) == 2, 10))
        a, b = self.client(bridge), self.client(bridge)
        pa = a.call("pid")["result"]["content"][0]["text"]
        pb = b.call("pid")["result"]["content"][0]["text"]
        self.assertNotEqual(pa, pb)
        self.assertTrue(wait_until(lambda: len(descendants(bridge.pid)) == 4, 10))
        self.assertEqual(bridge.health()["spares"], 2)


class BackPressureTests(FaultTestCase):
    def test_slowReader(self) -> None:
        """
        A child that writes 200 MB of notifications to a client that reads
        slowly: the bridge's memory stays far below what was sent (the
        child's stdout is paused while the client's socket is full), and
        every message still arrives, in order, when the client reads on.
        """
        import socket

        from .test_large_messages import vmHWM, resetHWM

        bridge = self.bridge()
        client = self.client(bridge)
        count, size = 200, 1024 * 1024
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                           "params": {"name": "flood",
                                      "arguments": {"count": count, "size": size}}}).encode()
        sock = socket.create_connection(("127.0.0.1", bridge.port), timeout=30)
        self.addCleanup(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        resetHWM(bridge.pid)
        before = vmHWM(bridge.pid)
        sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Accept: application/json, text/event-stream\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Mcp-Session-Id: " + client.session.encode() + b"\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        received = sock.recv(65536)
        time.sleep(2.0)  # the client stalls while the child floods
        stalled = vmHWM(bridge.pid) - before
        total = len(received)
        while b'"result":{"content"' not in received[-4096:]:
            chunk = sock.recv(1024 * 1024)
            self.assertTrue(chunk, "the stream ended early")
            total += len(chunk)
            received = received[-4096:] + chunk
        self.assertGreater(total, count * size)
        self.assertLess(stalled, 64 * 1024 * 1024,
                        f"bridge grew {stalled / 2**20:.0f} MiB while the client stalled")
