"""
The twistd plugin: command-line options and the service they build.

    twistd -n mcpbridge --port tcp:3000 -- npx -y @modelcontextprotocol/server-everything
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.application import strports
from twisted.application.service import IService
from twisted.python import usage
from twisted.web.server import Site

from . import __version__
from .child import ChildStartError, CommandSpec, buildEnvironment
from .guard import OriginGuard
from .logs import LEVELS, logger, setLogLevel
from .pool import MODERN, SESSION, ChildPool, PoolConfig
from .service import BridgeService
from .sessions import SessionConfig, SessionManager
from .web import BridgeApp

DEFAULT_PORT = "tcp:3000:interface=127.0.0.1"

log = logger("mcpbridge.tap")


def _positive(kind: type) -> Any:
    def coerce(value: str) -> Any:
        number = kind(value)
        if number < 0:
            raise ValueError(f"must not be negative: {value}")
        return number

    coerce.coerceDoc = "Must not be negative."  # type: ignore[attr-defined]
    return coerce


def _size(value: str) -> int:
    """
    A byte count, with an optional K, M or G suffix (powers of 1024).
    """
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    factor = 1
    for suffix, f in (("K", 1024), ("M", 1024**2), ("G", 1024**3)):
        if text.endswith(suffix):
            text, factor = text[:-1], f
            break
    number = int(float(text) * factor)
    if number <= 0:
        raise ValueError(f"must be a positive size: {value}")
    return number


_size.coerceDoc = "Bytes; K, M and G suffixes allowed."  # type: ignore[attr-defined]


class Options(usage.Options):
    synopsis = "[options] [--] command [arguments...]"
    longdesc = (
        "Run a stdio MCP server (the command after the options) as a child "
        "process, one per MCP session, and serve it over MCP Streamable HTTP "
        "at /mcp.  GET /health reports the bridge's state."
    )

    optFlags = [
        ["pass-environment", None,
         "Give the child the bridge's whole environment, not only a safe subset "
         "(PATH, HOME, USER, LANG, ...)."],
        ["shell", None, "Run the command through /bin/sh -c (for shell syntax)."],
        ["stateless", None,
         "Serve session-era clients without sessions: initialize is answered by the "
         "bridge and requests go to the pool of shared children (no child per session; "
         "GET and DELETE get 405)."],
    ]

    optParameters = [
        ["idle-timeout", None, 300.0,
         "Seconds a session may stay idle (no request, no open stream) before it "
         "and its child end; 0 never.", _positive(float)],
        ["request-timeout", None, 600.0,
         "Seconds a request may wait for the child's answer; progress "
         "notifications restart the clock; 0 never.", _positive(float)],
        ["startup-timeout", None, 30.0,
         "Seconds a new child has to answer initialize.", _positive(float)],
        ["max-sessions", None, 100,
         "Most sessions (children) at once; more get 503; 0 unlimited.", _positive(int)],
        ["heartbeat", None, 15.0,
         "Seconds between keep-alive comments on quiet SSE streams; 0 never.",
         _positive(float)],
        ["max-message-size", None, 64 * 1024 * 1024,
         "Largest message a child may write (bytes, K/M/G suffixes).", _size],
        ["history-size", None, 16 * 1024 * 1024,
         "Bytes of SSE events kept per session for resuming streams.", _size],
        ["stdin-grace", None, 2.0,
         "Seconds a stopping child gets after its stdin closes, before SIGTERM.",
         _positive(float)],
        ["term-grace", None, 3.0,
         "Seconds a stopping child gets after SIGTERM, before SIGKILL.", _positive(float)],
        ["drain-timeout", None, 10.0,
         "On shutdown, seconds requests in flight get to finish before every child "
         "is stopped (new sessions and requests get 503 meanwhile).", _positive(float)],
        ["spares", None, 0,
         "Children kept started ahead of demand, so a new session need not wait for "
         "a process to start.", _positive(int)],
        ["pool-size", None, 2,
         "Children kept running to serve stateless requests (the 2026-07-28 era, and "
         "the session era under --stateless); 0 turns the stateless era off.",
         _positive(int)],
        ["pool-concurrency", None, 16,
         "Requests in flight at once on each pool child; more wait in a queue.",
         _positive(int)],
        ["pool-queue", None, 256,
         "Stateless requests that may wait for a pool child; more get 503.", _positive(int)],
        ["cwd", None, None, "Working directory of the child."],
        ["log-level", None, "info", "One of debug, info, warn, error."],
    ]

    compData = usage.Completions(
        optActions={"cwd": usage.CompleteDirs()},
    )

    def __init__(self) -> None:
        super().__init__()
        self["port"] = []
        self["env"] = {}
        self["allow-origin"] = []
        self["allow-host"] = []
        self["command"] = ()

    def opt_port(self, description: str) -> None:
        """Listen on this Twisted endpoint (repeatable; default tcp:3000:interface=127.0.0.1), e.g. tcp:8080, unix:/run/mcp.sock, ssl:443:privateKey=key.pem:certKey=cert.pem, systemd:domain=INET:index=0."""
        self["port"].append(description)

    def opt_listen(self, description: str) -> None:
        """The same as --port."""
        self.opt_port(description)

    def opt_env(self, pair: str) -> None:
        """Set KEY=VALUE in the child's environment (repeatable)."""
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise usage.UsageError(f"--env takes KEY=VALUE, not {pair!r}")
        self["env"][key] = value

    def opt_allow_origin(self, origin: str) -> None:
        """Also accept requests from this browser Origin (repeatable; exact, a pattern with *, or * for any). Loopback origins are always accepted."""
        self["allow-origin"].append(origin)

    def opt_allow_host(self, host: str) -> None:
        """Also serve requests whose Host is this name (repeatable; name, name:port, a pattern with *, or * for any). Loopback names are always served."""
        self["allow-host"].append(host)

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"mcpbridge {__version__}")
        raise SystemExit(0)

    def parseArgs(self, *command: str) -> None:
        self["command"] = command

    def postOptions(self) -> None:
        if not self["command"]:
            raise usage.UsageError(
                "no MCP server command given; put it after the options, e.g. "
                "mcpbridge --port tcp:3000 -- python -m mcp_server_time")
        if not self["port"]:
            self["port"] = [DEFAULT_PORT]
        if self["log-level"].lower() not in LEVELS:
            raise usage.UsageError(
                f"--log-level must be one of {', '.join(sorted(LEVELS))}")
        for desc in self["port"]:
            try:
                from twisted.internet.endpoints import _parseServer

                _parseServer(desc, None)
            except Exception as e:
                raise usage.UsageError(f"bad --port {desc!r}: {e}") from e
        spec = self.commandSpec()
        try:
            spec.resolve()
        except ChildStartError as e:
            raise usage.UsageError(str(e)) from e

    def commandSpec(self) -> CommandSpec:
        env = buildEnvironment(self["pass-environment"], self["env"])
        return CommandSpec(
            argv=tuple(self["command"]),
            env=env,
            cwd=self["cwd"],
            shell=bool(self["shell"]),
            stdinGrace=self["stdin-grace"],
            termGrace=self["term-grace"],
            maxMessageBytes=self["max-message-size"],
        )

    def poolConfig(self) -> PoolConfig:
        return PoolConfig(
            size=self["pool-size"],
            concurrency=max(1, self["pool-concurrency"]),
            queue=self["pool-queue"],
            requestTimeout=self["request-timeout"],
            startupTimeout=self["startup-timeout"],
            heartbeatInterval=self["heartbeat"],
            drainTimeout=self["drain-timeout"],
        )

    def sessionConfig(self) -> SessionConfig:
        return SessionConfig(
            idleTimeout=self["idle-timeout"],
            requestTimeout=self["request-timeout"],
            startupTimeout=self["startup-timeout"],
            maxSessions=self["max-sessions"],
            heartbeatInterval=self["heartbeat"],
            historyBytes=self["history-size"],
            drainTimeout=self["drain-timeout"],
            spares=self["spares"],
        )


class _QuietSite(Site):
    """
    A Site whose access log is a debug event rather than a line per request.
    """

    _log = logger("mcpbridge.access")

    def log(self, request: Any) -> None:
        from .logs import debugEnabled

        if debugEnabled():
            self._log.debug("{method} {uri} {code}", method=request.method,
                            uri=request.uri, code=request.code)


def makeService(options: Options, reactor: Optional[Any] = None) -> IService:
    """
    Build the bridge: a session manager and one listening port per endpoint.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    setLogLevel(options["log-level"])
    command = options.commandSpec()
    manager = SessionManager(command, options.sessionConfig(), reactor)
    pool = ChildPool(MODERN, command, options.poolConfig(), reactor, manager.spawn,
                     manager.killpg)
    stateless = None
    if options["stateless"]:
        stateless = ChildPool(SESSION, command, options.poolConfig(), reactor,
                              manager.spawn, manager.killpg)
    guard = OriginGuard(options["allow-host"], options["allow-origin"])
    bridge = BridgeApp(manager, guard, reactor, pool, stateless)
    site = _QuietSite(bridge.resource())
    site.displayTracebacks = False

    top = BridgeService()
    manager.setServiceParent(top)
    pool.setServiceParent(top)
    if stateless is not None:
        stateless.setServiceParent(top)
    for description in options["port"]:
        strports.service(description, site, reactor=reactor).setServiceParent(top)
    log.info("mcpbridge {version} serving {command} on {ports}", version=__version__,
             command=" ".join(options["command"]), ports=", ".join(options["port"]))
    return top
