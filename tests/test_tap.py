"""
Tests for the twistd plugin's options and service, and the console script.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any

from twisted.application.service import IServiceCollection
from twisted.internet.testing import MemoryReactorClock
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from mcpbridge.pool import MODERN, ChildPool
from mcpbridge.sessions import SessionManager
from mcpbridge.servers import BridgedServer
from mcpbridge.tap import DEFAULT_PORT, Front, Options, makeService

from .support import ROOT, child_env

SH = ["--", "/bin/sh", "-c", "cat"]


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        With only a command, the bridge listens on 127.0.0.1:3000 and uses
        the documented defaults.
        """
        options = parse(*SH)
        self.assertEqual(options["port"], [DEFAULT_PORT])
        self.assertEqual(options["command"], ("/bin/sh", "-c", "cat"))
        self.assertEqual(options["idle-timeout"], 300.0)
        self.assertEqual(options["max-message-size"], 64 * 1024 * 1024)
        self.assertFalse(options["pass-environment"])

    def test_repeatablePorts(self) -> None:
        """
        --port and its alias --listen add up, and replace the default.
        """
        options = parse("--port", "tcp:1", "--listen", "unix:/tmp/x.sock", *SH)
        self.assertEqual(options["port"], ["tcp:1", "unix:/tmp/x.sock"])

    def test_commandOptionsNotParsed(self) -> None:
        """
        Everything after -- belongs to the command, options included.
        """
        options = parse("--idle-timeout", "5", "--", "/bin/sh", "--port", "x", "-y")
        self.assertEqual(options["command"], ("/bin/sh", "--port", "x", "-y"))
        self.assertEqual(options["idle-timeout"], 5.0)

    def test_environment(self) -> None:
        """
        --env pairs reach the child's environment; a malformed pair is a
        usage error.
        """
        options = parse("--env", "A=1", "--env", "B=x=y", *SH)
        spec = options.commandSpec()
        self.assertEqual((spec.env["A"], spec.env["B"]), ("1", "x=y"))
        self.assertRaises(UsageError, parse, "--env", "novalue", *SH)

    def test_sizes(self) -> None:
        """
        Sizes take K/M/G suffixes.
        """
        self.assertEqual(parse("--max-message-size", "10M", *SH)["max-message-size"],
                         10 * 1024 * 1024)
        self.assertRaises(UsageError, parse, "--max-message-size", "lots", *SH)

    def test_usageErrors(self) -> None:
        """
        A missing command, a negative timeout, an unknown log level, an
        unknown endpoint type and a command not on PATH are usage errors.
        """
        self.assertRaises(UsageError, parse)
        self.assertRaises(UsageError, parse, "--idle-timeout", "-1", *SH)
        self.assertRaises(UsageError, parse, "--idle-timeout", "soon", *SH)
        self.assertRaises(UsageError, parse, "--log-level", "chatty", *SH)
        self.assertRaises(UsageError, parse, "--port", "carrier-pigeon:1", *SH)
        e = self.assertRaises(UsageError, parse, "--", "no-such-program-xyz")
        self.assertIn("no-such-program-xyz", str(e))


class MakeServiceTests(SynchronousTestCase):
    def test_service(self) -> None:
        """
        makeService builds the session manager and one listening service per
        endpoint, all listening on the given reactor once started.
        """
        reactor = MemoryReactorClock()
        options = parse("--port", "tcp:3001:interface=127.0.0.1", "--port",
                        "tcp:3002:interface=127.0.0.1", "--max-sessions", "7",
                        "--pool-size", "0", *SH)
        service = makeService(options, reactor=reactor)
        children = list(IServiceCollection(service))
        servers = [c for c in children if isinstance(c, BridgedServer)]
        self.assertEqual([s.serverName for s in servers], [None])
        owned = list(servers[0])
        managers = [c for c in owned if isinstance(c, SessionManager)]
        self.assertEqual(len(managers), 1)
        self.assertEqual(managers[0].config.maxSessions, 7)
        pools = [c for c in owned if isinstance(c, ChildPool)]
        self.assertEqual([p.era for p in pools], [MODERN])
        self.assertEqual(pools[0].config.size, 0)
        self.assertEqual(len(children), 3)
        service.startService()
        self.assertEqual(sorted(p[0] for p in reactor.tcpServers), [3001, 3002])
        self.assertEqual({p[3] for p in reactor.tcpServers}, {"127.0.0.1"})
        self.successResultOf(service.stopService())


class ConsoleScriptTests(SynchronousTestCase):
    def test_help(self) -> None:
        """
        The mcpbridge console script runs the same plugin: its --help lists
        the plugin's options.
        """
        out = subprocess.run([sys.executable, "-m", "mcpbridge.cli", "--help"],
                             capture_output=True, text=True, timeout=60, cwd=ROOT,
                             env=child_env())
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("--idle-timeout", out.stdout)
        self.assertIn("--allow-origin", out.stdout)

    def test_usageError(self) -> None:
        """
        A bad option is a short usage error and a non-zero exit, no traceback.
        """
        out = subprocess.run([sys.executable, "-m", "mcpbridge.cli", "--idle-timeout", "x",
                              "--", "/bin/true"], capture_output=True, text=True, timeout=60,
                             cwd=ROOT, env=child_env())
        self.assertNotEqual(out.returncode, 0)
        self.assertNotIn("Traceback", out.stdout + out.stderr)
        self.assertIn("idle-timeout", out.stdout + out.stderr)

    def test_serves(self) -> None:
        """
        The console script serves the bundled demo server in the foreground.
        """
        from .support import free_port, http_request, wait_until

        port = free_port()
        log = tempfile.TemporaryFile()
        self.addCleanup(log.close)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mcpbridge.cli", "--port", f"tcp:{port}:interface=127.0.0.1",
             "--", sys.executable, "-m", "mcpbridge.demo_server"],
            cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            def up() -> bool:
                try:
                    return http_request(port, "GET", "/health", timeout=2)[0] == 200
                except OSError:
                    return False

            self.assertTrue(wait_until(up, 20))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        # twistd re-raises the signal it stopped on, after a clean shutdown.
        self.assertIn(proc.returncode, (0, -signal.SIGTERM))
        log.seek(0)
        self.assertIn(b"Server Shut Down", log.read())
        self.assertFalse(os.path.exists(os.path.join(ROOT, "twistd.pid")))


class FrontOptionsTests(SynchronousTestCase):
    """
    The security options, as parsed and as the service they build applies
    them.
    """

    def build(self, *args: str, env: dict[str, str] | None = None) -> tuple[Options, Any]:
        self.patch(os, "environ", dict(env or {}))
        options = parse(*args, "--pool-size", "0", *SH)
        reactor = MemoryReactorClock()
        service = makeService(options, reactor=reactor)
        return options, service

    def front(self, service: object) -> Any:
        front = getattr(service, "front")
        assert isinstance(front, Front)
        return front

    def test_defaults(self) -> None:
        """
        No credentials, no TLS, no rate limit; a 4 MiB body limit, 30 s to
        send a request, 60 s of keep-alive, 64 streams per session.
        """
        options, service = self.build()
        front = self.front(service)
        self.assertFalse(front.gate.credentials.enabled)
        self.assertIsNone(front.tls)
        self.assertFalse(front.gate.limiter.enabled)
        site = front.site
        self.assertEqual((site.maxBodySize, site.readTimeout, site.timeOut),
                         (4 * 1024 * 1024, 30.0, 60.0))
        self.assertEqual(options.sessionConfig().maxStreams, 64)

    def test_settings(self) -> None:
        """
        Each option reaches the part that applies it.
        """
        options, service = self.build(
            "--api-key", "k1", "--api-key", "k2", "--rate-limit", "5", "--rate-burst", "7",
            "--max-body-size", "1K", "--read-timeout", "3", "--keepalive-timeout", "0",
            "--cors-allow-credentials", "--cors-max-age", "60", "--max-session-streams", "2",
            "--allow-origin", "https://a.test")
        front = self.front(service)
        gate = front.gate
        self.assertEqual(gate.credentials.count, 2)
        self.assertEqual((gate.limiter.rate, gate.limiter.burst), (5.0, 7))
        self.assertEqual((gate.cors.allowCredentials, gate.cors.maxAge), (True, 60))
        self.assertTrue(gate.guard.originAllowed(b"https://a.test"))
        self.assertIs(front.bridge.guard, gate.guard)
        site = front.site
        self.assertEqual((site.maxBodySize, site.readTimeout, site.timeOut), (1024, 3.0, None))
        self.assertEqual(options.sessionConfig().maxStreams, 2)

    def test_apiKeyEnvironment(self) -> None:
        """
        MCP_PROXY_API_KEY gives the keys; the command line wins over it.
        """
        _, service = self.build(env={"MCP_PROXY_API_KEY": "a,b,c"})
        self.assertEqual(self.front(service).gate.credentials.count, 3)
        _, service = self.build("--api-key", "x", env={"MCP_PROXY_API_KEY": "a,b,c"})
        self.assertEqual(self.front(service).gate.credentials.count, 1)

    def test_emptyApiKey(self) -> None:
        self.assertRaises(UsageError, parse, "--api-key", " ", *SH)

    def test_tlsUsage(self) -> None:
        """
        The TLS options go together, and not with an ssl: port; an ssl:
        port may not pick an older protocol.
        """
        for args, problem in [
                (["--tls-key", "k.pem"], "go together"),
                (["--tls-cert", "c.pem"], "go together"),
                (["--tls-client-ca", "ca.pem"], "needs --tls-key"),
                (["--tls-key", "k", "--tls-cert", "c", "--port",
                  "ssl:443:privateKey=k:certKey=c"], "has TLS of its own"),
                (["--port", "ssl:443:privateKey=k:certKey=c:sslmethod=TLSv1_METHOD"],
                 "TLS 1.2 and newer only")]:
            e = self.assertRaises(UsageError, parse, *args, *SH)
            self.assertIn(problem, str(e))

    def test_reloadReconfigures(self) -> None:
        """
        A reload applies the config file's new security settings; one whose
        token file cannot be read changes nothing.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(subprocess.call, ["rm", "-rf", directory])
        config = os.path.join(directory, "mcp.json")

        def write(options: dict[str, object]) -> None:
            with open(config, "w") as f:
                json.dump({"mcpServers": {"a": {"command": "/bin/sh"}}, "options": options}, f)

        write({"api-key": ["k1"], "max-body-size": "2K"})
        self.patch(os, "environ", {})
        options = parse("--config", config, "--pool-size", "0")
        service: Any = makeService(options, reactor=MemoryReactorClock())
        front = self.front(service)
        gate = front.gate
        self.assertEqual((gate.credentials.count, front.site.maxBodySize),
                         (1, 2048))
        write({"api-key": "k1,k2,k3", "rate-limit": 2})
        self.assertTrue(service.reload())
        self.assertEqual(gate.credentials.count, 3)
        self.assertEqual(gate.limiter.rate, 2.0)
        limiter = gate.limiter
        write({"api-key": "k1,k2,k3", "rate-limit": 2, "max-body-size": "4M"})
        self.assertTrue(service.reload())
        self.assertIs(gate.limiter, limiter, "an unchanged rate limit lost its buckets")
        self.assertEqual(front.site.maxBodySize, 4 * 1024 * 1024)
        write({"bearer-token-file": os.path.join(directory, "missing")})
        self.assertFalse(service.reload())
        self.assertEqual(gate.credentials.count, 3)
        self.assertEqual(options["bearer-token-file"], None)

    def test_exposedWithoutCredentialsWarns(self) -> None:
        """
        Listening beyond loopback without credentials is logged as a
        warning; loopback and unix sockets are not.
        """
        from twisted.logger import globalLogPublisher

        events: list[Any] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        def warned() -> bool:
            found = any("no authentication" in str(e.get("log_format")) for e in events)
            events.clear()
            return found

        self.build("--port", "tcp:0:interface=127.0.0.1", "--port", "unix:/tmp/x.sock")
        self.assertFalse(warned())
        self.build("--port", "tcp:0")
        self.assertTrue(warned())
        self.build("--port", "tcp:0", "--api-key", "k")
        self.assertFalse(warned())

    def test_tls(self) -> None:
        """
        --tls-key and --tls-cert wrap every port's factory in TLS, and
        /status describes the certificate served.
        """
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from .tlsutil import makePKI

        pki = makePKI(tempfile.mkdtemp())
        _, service = self.build("--tls-key", pki.serverKey, "--tls-cert", pki.serverCert,
                                "--port", "tcp:0:interface=127.0.0.1", "--port", "unix:/tmp/y")
        front = self.front(service)
        self.assertIsInstance(front.factory, TLSMemoryBIOFactory)
        factories = [s.factory for s in service if hasattr(s, "endpoint")]
        self.assertEqual(factories, [front.factory, front.factory])
        status = front.bridge.tlsStatus()
        self.assertIn("localhost", status["names"])
        self.assertEqual(status["chainLength"], 1)
        _, plain = self.build()
        self.assertIsNone(self.front(plain).bridge.tlsStatus())

    def test_systemdWithoutSocket(self) -> None:
        """
        A systemd: port with no socket passed is one clear line and exit
        status 2, not a traceback.
        """
        import io

        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        e = self.assertRaises(SystemExit, self.build, "--port", "systemd:domain=INET:index=0")
        self.assertEqual(e.code, 2)
        self.assertIn("systemd passed no socket at that index", stderr.getvalue())
        self.assertEqual(len(stderr.getvalue().strip().splitlines()), 1)

    def test_loopbackOnly(self) -> None:
        """
        Which ports count as reachable from other machines.
        """
        from mcpbridge.tap import _loopbackOnly

        for description in ["tcp:3000:interface=127.0.0.1", "tcp:1:interface=127.0.0.10",
                            "tcp6:1:interface=\\:\\:1", "tcp:1:interface=localhost",
                            "unix:/run/mcp.sock", "ssl:1:privateKey=k:interface=127.0.0.1"]:
            self.assertTrue(_loopbackOnly(description), description)
        for description in ["tcp:3000", "tcp:1:interface=0.0.0.0", "tcp6:1:interface=\\:\\:",
                            "tcp:1:interface=10.0.0.1", "systemd:domain=INET:index=0",
                            "tcp:1:interface=127.0.0.1.evil.test"]:
            self.assertFalse(_loopbackOnly(description), description)
