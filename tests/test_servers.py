"""
Unit tests of several servers behind one bridge, over fake children and a
fake clock: routing by name, /health and /status, reloading (added,
removed, changed and unchanged servers), settings precedence, config errors
at startup, the log observer handed to twistd and the write buffer size.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any, Optional, cast
from unittest import mock

import attr
from treq.testing import StubTreq
from twisted.application.service import Application
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.python.components import Componentized
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from mcpbridge.child import CommandSpec
from mcpbridge.config import ConfigError
from mcpbridge.guard import OriginGuard
from mcpbridge.pool import PoolConfig
from mcpbridge.servers import BridgedServer, ServerSpec
from mcpbridge.service import BridgeService
from mcpbridge.sessions import SessionConfig
from mcpbridge.tap import Options, makeService
from mcpbridge.web import BridgeApp

from .fakes import FakeSpawner, StubHTTP

BASE = "http://127.0.0.1:3000"
ACCEPT = "application/json, text/event-stream"
SH = ("--", "/bin/sh")


def spec(name: Optional[str], argv: tuple[str, ...] = ("/bin/sh",), **sessions: Any
         ) -> ServerSpec:
    return ServerSpec(name, CommandSpec(argv=argv, env={"PATH": "/usr/bin:/bin"}),
                      SessionConfig(**sessions), PoolConfig(size=0))


def initialize(id: Any = 0) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}


class ServersTestCase(StubHTTP, SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.spawner = FakeSpawner()
        self.top = BridgeService(lambda s: BridgedServer.build(
            s, self.clock, spawn=self.spawner, killpg=self.spawner.killpg), self.clock)
        self.http = StubTreq(BridgeApp(self.top.servers, OriginGuard(), self.clock).resource())

    def start(self, *specs: ServerSpec) -> None:
        for s in specs:
            self.top.addServer(s)
        self.top.startService()
        self.addCleanup(self.top.stopService)

    def post(self, path: str, body: Any, session: Optional[str] = None) -> Any:
        headers = {"Accept": ACCEPT, "Content-Type": "application/json"}
        if session:
            headers["Mcp-Session-Id"] = session
        return self.http.post(BASE + path, data=json.dumps(body).encode(), headers=headers)

    def openSession(self, path: str) -> tuple[str, Any]:
        d = self.post(path, initialize())
        self.http.flush()
        child = self.spawner.last
        child.answerInitialize()
        response, _ = self.respond(d)
        self.assertEqual(response.code, 200)
        return response.headers.getRawHeaders("mcp-session-id")[0], child

    def call(self, path: str, session: str, child: Any, id: int) -> dict[str, Any]:
        d = self.post(path, {"jsonrpc": "2.0", "id": id, "method": "tools/list"}, session)
        self.http.flush()
        self.assertEqual(child.last()["id"], id)
        child.answer(child.last(), {"tools": []})
        response, body = self.respond(d)
        self.assertEqual(response.code, 200)
        result: dict[str, Any] = json.loads(body)
        return result

    def getJSON(self, path: str) -> tuple[int, Any]:
        response, body = self.respond(self.http.get(BASE + path))
        return response.code, json.loads(body)


class RoutingTests(ServersTestCase):
    def test_eachServerItsOwnChildren(self) -> None:
        """
        The default server answers at /mcp, a named one at
        /servers/NAME/mcp, each from children of its own command.
        """
        self.start(spec(None), spec("tools", ("/bin/sh", "-c", "tools")))
        sid, child = self.openSession("/mcp")
        self.assertEqual(child.args, ["/bin/sh"])
        named, namedChild = self.openSession("/servers/tools/mcp")
        self.assertEqual(namedChild.args, ["/bin/sh", "-c", "tools"])
        self.call("/servers/tools/mcp", named, namedChild, 1)
        # A session belongs to its server: the other one does not know it.
        response, _ = self.respond(self.post(
            "/mcp", {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, named))
        self.assertEqual(response.code, 404)

    def test_unknownServer(self) -> None:
        self.start(spec(None))
        response, body = self.respond(self.post("/servers/nope/mcp", initialize()))
        self.assertEqual(response.code, 404)
        self.assertIn("'nope'", json.loads(body)["error"]["message"])
        self.assertEqual(self.spawner.children, [])

    def test_noDefaultServer(self) -> None:
        self.start(spec("a"))
        response, body = self.respond(self.post("/mcp", initialize()))
        self.assertEqual(response.code, 404)
        self.assertIn("no default server", json.loads(body)["error"]["message"])

    def test_missingCommandFailsOnlyItsServer(self) -> None:
        """
        A server whose command cannot be found makes /health 503 and says
        why in /status; the others still serve.
        """
        self.start(spec("good"), spec("bad", ("no-such-command-xyz",)))
        code, health = self.getJSON("/health")
        self.assertEqual(code, 503)
        self.assertEqual(health["status"], "failing")
        self.assertEqual(health["servers"]["good"]["status"], "ok")
        self.assertEqual(health["servers"]["bad"]["status"], "failing")
        self.assertIn("no-such-command-xyz", health["servers"]["bad"]["last_error"])
        self.openSession("/servers/good/mcp")
        response, _ = self.respond(self.post("/servers/bad/mcp", initialize()))
        self.assertEqual(response.code, 502)
        code, status = self.getJSON("/status")
        self.assertEqual(code, 200)
        byName = {s["name"]: s for s in status["servers"]}
        self.assertEqual(byName["good"]["sessions"], 1)
        self.assertEqual(len(byName["good"]["children"]), 1)
        self.assertEqual(byName["good"]["endpoints"], {"mcp": "/servers/good/mcp",
                                                      "sse": "/servers/good/sse"})
        self.assertIn("no-such-command-xyz", byName["bad"]["last_error"])

    def test_statusGuarded(self) -> None:
        self.start(spec(None))
        response, _ = self.respond(self.http.get(BASE + "/status",
                                                 headers={"Host": "evil.example"}))
        self.assertEqual(response.code, 421)


class ReloadTests(ServersTestCase):
    def test_apply(self) -> None:
        """
        Added servers appear, removed ones drain and stop, changed ones run
        new sessions the new way while old sessions keep their children,
        and unchanged ones are not touched.
        """
        self.start(spec("keep"), spec("change"), spec("drop"))
        keep, keepChild = self.openSession("/servers/keep/mcp")
        old, oldChild = self.openSession("/servers/change/mcp")
        _, dropChild = self.openSession("/servers/drop/mcp")
        keepServer = self.top.servers.get("keep")

        report = self.top.apply({"keep": spec("keep"),
                                 "change": spec("change", ("/bin/sh", "-c", "new")),
                                 "add": spec("add")})
        self.assertEqual(report, {"added": ["add"], "removed": ["drop"],
                                  "changed": ["change"], "unchanged": ["keep"]})
        self.assertIs(self.top.servers.get("keep"), keepServer)
        self.call("/servers/keep/mcp", keep, keepChild, 5)
        self.call("/servers/change/mcp", old, oldChild, 6)
        _, newChild = self.openSession("/servers/change/mcp")
        self.assertEqual(newChild.args, ["/bin/sh", "-c", "new"])
        self.assertEqual(oldChild.args, ["/bin/sh"])
        self.openSession("/servers/add/mcp")
        response, _ = self.respond(self.post("/servers/drop/mcp", initialize()))
        self.assertEqual(response.code, 404)
        # The removed server drained (nothing was in flight) and stopped its child.
        self.clock.advance(1)
        self.assertTrue(dropChild.transport.stdinClosed)
        self.assertFalse(keepChild.transport.stdinClosed)

    def test_changedSettingsOnly(self) -> None:
        """
        A server whose settings changed (not its command) keeps its
        sessions; new ones get the new settings.
        """
        self.start(spec("s", maxSessions=5))
        sid, child = self.openSession("/servers/s/mcp")
        self.top.apply({"s": spec("s", maxSessions=1)})
        response, _ = self.respond(self.post("/servers/s/mcp", initialize()))
        self.assertEqual(response.code, 503)
        self.call("/servers/s/mcp", sid, child, 1)

    def test_rejectedReloadKeepsRunning(self) -> None:
        """
        A reloader that finds an error changes nothing.
        """
        self.start(spec("a"))

        def broken() -> dict[Optional[str], ServerSpec]:
            raise ConfigError("mcp.json: line 1 column 2: invalid JSON")

        self.top.reloader = broken
        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.assertFalse(self.top.reload())
        self.assertEqual(self.top.servers.names(), ["a"])
        self.assertTrue(any("config reload rejected" in str(e.get("log_format"))
                            and "invalid JSON" in str(e.get("problem")) for e in events))
        self.top.reloader = lambda: {"b": spec("b")}
        self.assertTrue(self.top.reload())
        self.assertEqual(self.top.servers.names(), ["b"])

    def test_poolReplaced(self) -> None:
        """
        A changed pool setting replaces the pool; the old one stops.
        """
        pooled = attr.evolve(spec("p"), pool=PoolConfig(size=1))
        self.start(pooled)
        server = self.top.servers.get("p")
        assert server is not None
        old = server.pool
        self.assertEqual(len(self.spawner.children), 1)
        server.reconfigure(attr.evolve(pooled, pool=PoolConfig(size=2)))
        self.assertIsNot(server.pool, old)
        self.assertEqual(server.pool.config.size, 2)
        self.assertIn(old, list(server))
        # Its child never answered: it is stopped when the drain time is up.
        self.clock.pump([0.5] * 25)
        self.assertNotIn(old, list(server))
        self.assertTrue(self.spawner.children[0].transport.stdinClosed)


class OptionsTests(SynchronousTestCase):
    def parse(self, *argv: str, environ: Optional[dict[str, str]] = None) -> Options:
        options = Options()
        with mock.patch.dict(os.environ, environ or {}, clear=False):
            for name in [k for k in os.environ if k.startswith(("MCP_", "MCPBRIDGE_"))
                         or k == "LOG_FILE"]:
                if environ is None or name not in environ:
                    os.environ.pop(name)
            options.parseOptions(list(argv))
        return options

    def configFile(self, content: Any) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        return path

    def test_precedence(self) -> None:
        """
        The command line wins over the environment, which wins over the
        config file, which wins over the default.
        """
        path = self.configFile({"mcpServers": {}, "options": {"max-sessions": 3,
                                                             "idle-timeout": 7}})
        env = {"MCP_MAX_SESSIONS": "2"}
        self.assertEqual(self.parse("--config", path, "--max-sessions", "1", *SH,
                                    environ=env)["max-sessions"], 1)
        options = self.parse("--config", path, *SH, environ=env)
        self.assertEqual((options["max-sessions"], options["idle-timeout"]), (2, 7))
        self.assertEqual(options.environmentVariables, ["MCP_MAX_SESSIONS"])
        self.assertEqual(self.parse("--config", path, *SH)["max-sessions"], 3)
        self.assertEqual(self.parse(*SH)["max-sessions"], 100)

    def test_variablesUsed(self) -> None:
        """
        The variables said to be in effect leave out those the command line
        overrode.
        """
        path = self.configFile({"mcpServers": {"a": {"command": "/bin/sh"}}})
        options = self.parse("--max-sessions", "1", *SH, environ={
            "MCP_MAX_SESSIONS": "2", "MCP_SESSION_TIMEOUT": "5", "MCPBRIDGE_CONFIG": path,
            "MCP_PORT": "4123"})
        self.assertEqual(sorted(options.variablesUsed()),
                         ["MCPBRIDGE_CONFIG", "MCP_PORT", "MCP_SESSION_TIMEOUT"])
        self.assertEqual(options.variablesUsed("port"), ["MCP_PORT"])

    def test_portFromEnvironment(self) -> None:
        options = self.parse(*SH, environ={"MCP_PORT": "4123", "MCP_BIND_HOST": "127.0.0.1"})
        self.assertEqual(options["port"], ["tcp:4123:interface=127.0.0.1"])
        options = self.parse("--port", "tcp:1", *SH, environ={"MCP_PORT": "4123"})
        self.assertEqual(options["port"], ["tcp:1"])

    def test_perServerOverrides(self) -> None:
        """
        A config file's per-server settings, env, cwd and timeout override
        the global ones for that server only.
        """
        path = self.configFile({"mcpServers": {"a": {
            "command": "/bin/sh", "args": ["-c", "x"], "env": {"K": "v"}, "cwd": "/tmp",
            "timeout": 42, "options": {"idle-timeout": 9, "pool-size": 0}}}})
        options = self.parse("--config", path, "--request-timeout", "5", "--env", "G=1", *SH)
        specs = options.serverSpecs()
        self.assertEqual(set(specs), {None, "a"})
        a, default = specs["a"], specs[None]
        self.assertEqual(tuple(a.command.argv), ("/bin/sh", "-c", "x"))
        self.assertEqual((a.command.env["K"], a.command.env["G"]), ("v", "1"))
        self.assertEqual(a.command.cwd, "/tmp")
        self.assertEqual((a.sessions.requestTimeout, a.pool.requestTimeout), (42, 42))
        self.assertEqual((a.sessions.idleTimeout, a.pool.size), (9, 0))
        self.assertEqual((default.sessions.requestTimeout, default.sessions.idleTimeout),
                         (5, 300))
        self.assertNotIn("K", default.command.env)

    def test_namedServerWinsOverConfig(self) -> None:
        path = self.configFile({"mcpServers": {"a": {"command": "/bin/sh"}}})
        options = self.parse("--config", path, "--named-server", "a=/bin/echo hi")
        self.assertEqual(tuple(options.serverSpecs()["a"].command.argv), ("/bin/echo", "hi"))
        self.assertNotIn(None, options.serverSpecs())

    def test_namedServersOnly(self) -> None:
        """
        Named servers need no default command; with neither it is a usage
        error.
        """
        options = self.parse("--named-server", "x=/bin/sh -c 'echo a=b'")
        self.assertEqual(tuple(options.serverSpecs()["x"].command.argv),
                         ("/bin/sh", "-c", "echo a=b"))
        self.assertRaises(UsageError, self.parse)
        self.assertRaises(UsageError, self.parse, "--named-server", "=/bin/sh")

    def test_missingNamedCommandIsNoUsageError(self) -> None:
        """
        Among several servers, one whose command is missing is not a usage
        error (it fails alone once running).
        """
        options = self.parse("--named-server", "x=no-such-command-xyz", *SH)
        self.assertEqual(set(options.serverSpecs()), {None, "x"})

    def test_badConfigExitsTwo(self) -> None:
        """
        A config file or environment variable that cannot be used stops the
        start with one line on stderr and exit status 2.
        """
        cases: list[tuple[tuple[str, ...], dict[str, str], str]] = [
            (("--config", self.configFile("{")), {}, "invalid JSON"),
            (("--config", self.configFile({"mcpServers": {"a": {"command": "x",
                                                              "args": "y"}}})), {}, "args"),
            (("--config", "/nonexistent/mcp.json"), {}, "cannot read"),
            ((), {"MCP_MAX_SESSIONS": "lots"}, "MCP_MAX_SESSIONS"),
        ]
        for argv, environ, text in cases:
            stderr = io.StringIO()
            with mock.patch("sys.stderr", stderr):
                e = self.assertRaises(SystemExit, self.parse, *argv, *SH, environ=environ)
            self.assertEqual(e.code, 2)
            lines = stderr.getvalue().splitlines()
            self.assertEqual(len(lines), 1, lines)
            self.assertIn(text, lines[0])
            self.assertTrue(lines[0].startswith("mcpbridge: "))

    def test_reloadConfig(self) -> None:
        path = self.configFile({"mcpServers": {"a": {"command": "/bin/sh"}}})
        options = self.parse("--config", path)
        with open(path, "w") as f:
            json.dump({"mcpServers": {"b": {"command": "/bin/sh"}},
                       "options": {"log-level": "nonsense"}}, f)
        self.assertRaises(ConfigError, options.reloadConfig)
        self.assertEqual(set(options.serverSpecs()), {"a"})
        with open(path, "w") as f:
            json.dump({"mcpServers": {"b": {"command": "/bin/sh"}}}, f)
        options.reloadConfig()
        self.assertEqual(set(options.serverSpecs()), {"b"})

    def test_badPortFromEnvironment(self) -> None:
        stderr = io.StringIO()
        with mock.patch("sys.stderr", stderr):
            e = self.assertRaises(SystemExit, self.parse, *SH,
                                  environ={"MCPBRIDGE_PORT": "carrier-pigeon:1"})
        self.assertEqual(e.code, 2)
        self.assertIn("carrier-pigeon", stderr.getvalue())


class MakeServiceTests(SynchronousTestCase):
    def test_logObserverComponent(self) -> None:
        """
        With --log-format json, the service hands twistd its observer as
        the application's ILogObserver component when it is parented.
        """
        path = self.mktemp()
        options = Options()
        options.parseOptions(["--log-format", "json", "--log-file", path, "--pool-size", "0",
                              *SH])
        service = makeService(options, reactor=MemoryReactorClock())
        application = Application("mcpbridge")
        assert isinstance(application, Componentized)
        service.setServiceParent(application)
        observer = application.getComponent(ILogObserver, None)
        assert observer is not None
        observer({"log_level": LogLevel.warn, "log_namespace": "t", "log_time": 0.0,
                  "log_format": "hello {who}", "who": "there"})
        with open(path) as f:
            record = json.loads(f.read().splitlines()[-1])
        self.assertEqual((record["level"], record["message"], record["who"]),
                         ("warn", "hello there", "there"))
        options = Options()
        options.parseOptions(["--pool-size", "0", *SH])
        plain = Application("mcpbridge")
        makeService(options, reactor=MemoryReactorClock()).setServiceParent(plain)
        self.assertIsNone(plain.getComponent(ILogObserver, None))

    def test_writeBufferSize(self) -> None:
        """
        Client connections push back once --write-buffer-size bytes wait.
        """
        reactor = MemoryReactorClock()
        options = Options()
        options.parseOptions(["--write-buffer-size", "1K", "--pool-size", "0", *SH])
        service = makeService(options, reactor=reactor)
        service.startService()
        self.addCleanup(service.stopService)
        site = reactor.tcpServers[0][1]
        protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        assert protocol is not None
        transport = StringTransport()
        transport.bufferSize = 65536  # type: ignore[attr-defined]
        protocol.makeConnection(transport)
        self.assertEqual(transport.bufferSize, 1024)  # type: ignore[attr-defined]

