"""
The twistd plugin: command-line options and the service they build.

    twistd -n mcpbridge --port tcp:3000 -- npx -y @modelcontextprotocol/server-everything
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from typing import Any, Callable, NoReturn, Optional

from twisted.application import strports
from twisted.application.service import IService
from twisted.python import usage

from . import __version__
from .child import ChildStartError, CommandSpec, buildEnvironment
from .config import (
    ENVIRONMENT,
    GLOBAL_OPTIONS,
    LIST_OPTIONS,
    SERVER_OPTIONS,
    Config,
    ConfigError,
    ServerEntry,
    loadConfig,
    nonNegative,
    optionsFromEnvironment,
    parseNamedServer,
    size,
)
from .gate import CORS, Credentials, CredentialError, Gate, RateLimiter
from .guard import OriginGuard
from .logs import FORMATS, LEVELS, logger, makeObserver, setLogLevel
from .pool import PoolConfig
from .servers import BridgedServer, Servers, ServerSpec, prefixOf
from .service import BridgeService
from .sessions import SessionConfig
from .site import BridgeSite
from .tls import ServerTLS, TLSError
from .web import BridgeApp

DEFAULT_PORT = "tcp:3000:interface=127.0.0.1"

log = logger("mcpbridge.tap")


# The coercers of the config file, which carry the help text usage.Options shows.
_nonNegativeFloat = nonNegative(float)
_nonNegativeInt = nonNegative(int)
_size = size


def _fail(problem: str) -> NoReturn:
    """
    Stop with one clear line and exit status 2: a configuration (file or
    environment) that cannot be used.
    """
    sys.stderr.write(f"mcpbridge: {problem}\n")
    sys.stderr.flush()
    raise SystemExit(2)


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
        ["cors-allow-credentials", None,
         "Let pages of allowed origins send credentials (cookies, HTTP auth) "
         "cross-origin (Access-Control-Allow-Credentials: true)."],
    ]

    optParameters = [
        ["idle-timeout", None, 300.0,
         "Seconds a session may stay idle (no request, no open stream) before it "
         "and its child end; 0 never.", _nonNegativeFloat],
        ["request-timeout", None, 600.0,
         "Seconds a request may wait for the child's answer; progress "
         "notifications restart the clock; 0 never.", _nonNegativeFloat],
        ["startup-timeout", None, 30.0,
         "Seconds a new child has to answer initialize.", _nonNegativeFloat],
        ["max-sessions", None, 100,
         "Most sessions (children) at once; more get 503; 0 unlimited.", _nonNegativeInt],
        ["heartbeat", None, 15.0,
         "Seconds between keep-alive comments on quiet SSE streams; 0 never.",
         _nonNegativeFloat],
        ["max-message-size", None, 64 * 1024 * 1024,
         "Largest message a child may write (bytes, K/M/G suffixes).", _size],
        ["history-size", None, 16 * 1024 * 1024,
         "Bytes of SSE events kept per session for resuming streams.", _size],
        ["stdin-grace", None, 2.0,
         "Seconds a stopping child gets after its stdin closes, before SIGTERM.",
         _nonNegativeFloat],
        ["term-grace", None, 3.0,
         "Seconds a stopping child gets after SIGTERM, before SIGKILL.", _nonNegativeFloat],
        ["drain-timeout", None, 10.0,
         "On shutdown, seconds requests in flight get to finish before every child "
         "is stopped (new sessions and requests get 503 meanwhile).", _nonNegativeFloat],
        ["spares", None, 0,
         "Children kept started ahead of demand, so a new session need not wait for "
         "a process to start.", _nonNegativeInt],
        ["pool-size", None, 2,
         "Children kept running to serve stateless requests (the 2026-07-28 era, and "
         "the session era under --stateless); 0 turns the stateless era off.",
         _nonNegativeInt],
        ["pool-concurrency", None, 16,
         "Requests in flight at once on each pool child; more wait in a queue.",
         _nonNegativeInt],
        ["pool-queue", None, 256,
         "Stateless requests that may wait for a pool child; more get 503.", _nonNegativeInt],
        ["max-session-streams", None, 64,
         "Most streams (requests waiting for answers, and the GET stream) one session "
         "may have open at once; more get 429; 0 unlimited.", _nonNegativeInt],
        ["tls-key", None, None,
         "Serve HTTPS: the PEM private key (with --tls-cert); wraps every --port, "
         "unix: and systemd: ones included; SIGHUP reads it again."],
        ["tls-cert", None, None,
         "The PEM certificate for --tls-key, followed by its intermediate certificates."],
        ["tls-client-ca", None, None,
         "Require client certificates signed by a CA in this PEM file (mutual TLS)."],
        ["bearer-token-file", None, None,
         "Require a token from this file (one per line) in Authorization: Bearer; "
         "SIGHUP reads it again."],
        ["cors-max-age", None, 600,
         "Seconds a browser may cache a CORS preflight answer.", _nonNegativeInt],
        ["max-body-size", None, 4 * 1024 * 1024,
         "Largest request body accepted (bytes, K/M/G suffixes); larger ones get 413.",
         _size],
        ["rate-limit", None, 0.0,
         "Requests a second each client (IP address) may make on average; more get 429; "
         "0 unlimited (/health and /ping are not counted).", _nonNegativeFloat],
        ["rate-burst", None, 0,
         "Requests a client may make at once above --rate-limit (default twice the rate).",
         _nonNegativeInt],
        ["read-timeout", None, 30.0,
         "Seconds a client has to send a whole request (line, headers and body) before "
         "its connection is closed with 408; 0 never.", _nonNegativeFloat],
        ["keepalive-timeout", None, 60.0,
         "Seconds an idle connection (no request in progress) stays open; 0 never.",
         _nonNegativeFloat],
        ["write-buffer-size", None, 64 * 1024,
         "Bytes queued for one client before the bridge stops reading the child that "
         "feeds it, until the client catches up.", _size],
        ["cwd", None, None, "Working directory of the child."],
        ["config", None, None,
         "A JSON file of servers in the mcpServers format, each served at "
         "/servers/NAME/mcp and /servers/NAME/sse; SIGHUP reads it again."],
        ["log-level", None, "info", "One of debug, info, warn, error."],
        ["log-format", None, "text",
         "text, or json for one JSON object per line (for log collectors)."],
        ["log-file", None, None,
         "Write the log to this file (rotated at 10 MiB, 5 kept) instead of standard output."],
    ]

    compData = usage.Completions(
        optActions={"cwd": usage.CompleteDirs(), "config": usage.CompleteFiles("*.json"),
                    "log-file": usage.CompleteFiles(), "tls-key": usage.CompleteFiles(),
                    "tls-cert": usage.CompleteFiles(), "tls-client-ca": usage.CompleteFiles(),
                    "bearer-token-file": usage.CompleteFiles()},
    )

    _parsing = False

    def __init__(self) -> None:
        super().__init__()
        self["port"] = []
        self["env"] = {}
        self["allow-origin"] = []
        self["allow-host"] = []
        self["api-key"] = []
        self["command"] = ()
        self["named-server"] = []
        #: Options given on the command line (they win over everything).
        self.given: set[str] = set()
        #: Options set by environment variables (they win over the config file).
        self.fromEnvironment: dict[str, Any] = {}
        self.environmentVariables: list[str] = []
        #: The config file as last read, or None.
        self.configFile: Optional[Config] = None
        #: Where each setting came from, for error messages.
        self.sources: dict[str, str] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        if self._parsing:
            self.given.add(key)
        super().__setitem__(key, value)

    def parseOptions(self, options: Any = None) -> None:
        self._parsing = True
        try:
            super().parseOptions(options)
        finally:
            self._parsing = False

    def opt_port(self, description: str) -> None:
        """Listen on this Twisted endpoint (repeatable; default tcp:3000:interface=127.0.0.1), e.g. tcp:8080, unix:/run/mcp.sock, systemd:domain=INET:index=0, or ssl:443:privateKey=key.pem:certKey=cert.pem:extraCertChain=chain.pem (or a plain endpoint with --tls-key and --tls-cert)."""
        self.given.add("port")
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

    def opt_named_server(self, text: str) -> None:
        """Also serve NAME=COMMAND ARGS (split as a shell would) at /servers/NAME/mcp and /servers/NAME/sse (repeatable)."""
        try:
            self["named-server"].append(parseNamedServer(text))
        except ConfigError as e:
            raise usage.UsageError(str(e)) from e

    def opt_allow_origin(self, origin: str) -> None:
        """Also accept requests, and answer CORS, from this browser Origin (repeatable; exact, a pattern with *, or * for any). Loopback origins are always accepted."""
        self.given.add("allow-origin")
        self["allow-origin"].append(origin)

    def opt_allow_host(self, host: str) -> None:
        """Also serve requests whose Host is this name (repeatable; name, name:port, a pattern with *, or * for any). Loopback names are always served."""
        self.given.add("allow-host")
        self["allow-host"].append(host)

    def opt_api_key(self, key: str) -> None:
        """Require this key in X-API-Key (repeatable: any of them is accepted; prefer MCP_PROXY_API_KEY, which other users cannot see in ps)."""
        if not key.strip():
            raise usage.UsageError("--api-key must not be empty")
        self.given.add("api-key")
        self["api-key"].append(key.strip())

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"mcpbridge {__version__}")
        raise SystemExit(0)

    def parseArgs(self, *command: str) -> None:
        self["command"] = command

    def postOptions(self) -> None:
        self._parsing = False
        try:
            self.fromEnvironment, self.environmentVariables = optionsFromEnvironment(
                os.environ)
            path = self["config"] or self.fromEnvironment.get("config")
            self.sources["config"] = ("the command line" if self["config"]
                                      else "the environment")
            if path:
                self["config"] = path
                self.configFile = loadConfig(path)
        except ConfigError as e:
            _fail(str(e))
        for warning in self.configFile.warnings if self.configFile else ():
            log.warn("{warning}", warning=warning)
        self.resolve()
        if not self["command"] and not self.entries():
            raise usage.UsageError(
                "no MCP server command given; put it after the options, e.g. "
                "mcpbridge --port tcp:3000 -- python -m mcp_server_time "
                "(or name servers with --named-server or --config)")
        self._checkTLS()
        for desc in self["port"]:
            try:
                from twisted.internet.endpoints import _parseServer

                _parseServer(desc, None)
            except Exception as e:
                source = self.sources.get("port")
                if source == "the environment":
                    source = ", ".join(self.variablesUsed("port"))
                if source != "the command line":
                    _fail(f"{source}: bad port {desc!r}: {e}")
                raise usage.UsageError(f"bad --port {desc!r}: {e}") from e
        if self["command"] and not self.entries():
            # The only server: a command that cannot run is a usage error.
            # Among several, it is that server's failure, not the others'.
            try:
                self.commandSpec().resolve()
            except ChildStartError as e:
                raise usage.UsageError(str(e)) from e

    def _checkTLS(self) -> None:
        """
        The TLS options go together, and do not wrap ports that have TLS
        of their own; those may not lower the TLS version.
        """
        if bool(self["tls-key"]) != bool(self["tls-cert"]):
            raise usage.UsageError("--tls-key and --tls-cert go together: give both")
        if self["tls-client-ca"] and not self["tls-key"]:
            raise usage.UsageError("--tls-client-ca needs --tls-key and --tls-cert")
        for desc in self["port"]:
            if desc.split(":", 1)[0].lower() != "ssl":
                continue
            if self["tls-key"]:
                raise usage.UsageError(
                    f"--port {desc!r} has TLS of its own; with --tls-key and --tls-cert "
                    f"use a plain endpoint (tcp:, unix:, systemd:) and they wrap it")
            for part in desc.split(":")[1:]:
                key, eq, value = part.partition("=")
                if eq and key.strip() == "sslmethod" and value.strip() != "TLSv1_2_METHOD":
                    raise usage.UsageError(
                        f"--port {desc!r}: sslmethod={value} is refused; the bridge serves "
                        f"TLS 1.2 and newer only (leave sslmethod out)")

    def variablesUsed(self, option: Optional[str] = None) -> list[str]:
        """
        The environment variables whose values are in effect (for
        C{option}, or for any): the command line overrides the others.
        """
        return [v for v in self.environmentVariables
                if self.sources.get(ENVIRONMENT[v]) == "the environment"
                and option in (None, ENVIRONMENT[v])]

    def _checkLevel(self, name: str) -> None:
        if name.lower() not in LEVELS:
            raise usage.UsageError(f"--log-level must be one of {', '.join(sorted(LEVELS))}")

    def resolve(self) -> None:
        """
        Settle every setting by precedence: the command line, then the
        environment, then the config file, then the default.
        """
        fileOptions = self.configFile.options if self.configFile else {}
        for name in (*SERVER_OPTIONS, *GLOBAL_OPTIONS):
            if name in self.given:
                self.sources[name] = "the command line"
            elif name in self.fromEnvironment:
                super().__setitem__(name, self.fromEnvironment[name])
                self.sources[name] = "the environment"
            elif name in fileOptions:
                super().__setitem__(name, fileOptions[name])
                self.sources[name] = str(self["config"])
            else:
                # Back to the default: a reload may have removed it from the file.
                super().__setitem__(name, [] if name in LIST_OPTIONS
                                    else self.defaults.get(name))
                self.sources[name] = "the default"
        if isinstance(self["port"], str):
            super().__setitem__("port", [self["port"]])
        if not self["port"]:
            super().__setitem__("port", [DEFAULT_PORT])
        self._checkLevel(self["log-level"])
        if self["log-format"] not in FORMATS:
            raise usage.UsageError(f"--log-format must be one of {', '.join(FORMATS)}")

    def entries(self) -> dict[str, ServerEntry]:
        """
        The named servers: the config file's, then the command line's (a
        name given on both is the command line's).
        """
        entries = dict(self.configFile.servers) if self.configFile else {}
        for entry in self["named-server"]:
            entries[entry.name] = entry
        return entries

    def reloadConfig(self) -> None:
        """
        Read the config file again.

        @raise ConfigError: when it cannot be used; nothing changes then.
        """
        if not self["config"]:
            raise ConfigError("no config file to reload (see --config)")
        config = loadConfig(self["config"])
        previous = self.configFile
        self.configFile = config
        try:
            self.resolve()
        except usage.UsageError as e:
            self.configFile = previous
            self.resolve()
            raise ConfigError(f"{self['config']}: {e}") from e
        for warning in config.warnings:
            log.warn("{warning}", warning=warning)

    # What the settings build.

    def commandSpec(self, entry: Optional[ServerEntry] = None) -> CommandSpec:
        """
        How to run the default server, or the named server C{entry}.
        """
        get = self._getter(entry)
        env = dict(self["env"])
        if entry is not None:
            env.update(entry.env)
        return CommandSpec(
            argv=tuple(self["command"] if entry is None else entry.argv),
            env=buildEnvironment(bool(get("pass-environment")), env),
            cwd=(entry.cwd if entry is not None and entry.cwd else self["cwd"]),
            shell=bool(get("shell")),
            stdinGrace=get("stdin-grace"),
            termGrace=get("term-grace"),
            maxMessageBytes=get("max-message-size"),
        )

    def _getter(self, entry: Optional[ServerEntry]) -> Callable[[str], Any]:
        """
        The value of an option for C{entry}: its own override, else the
        global setting.
        """
        if entry is None:
            return self.__getitem__
        return lambda name: entry.option(name, self[name])

    def poolConfig(self, entry: Optional[ServerEntry] = None) -> PoolConfig:
        get = self._getter(entry)
        return PoolConfig(
            size=get("pool-size"),
            concurrency=max(1, get("pool-concurrency")),
            queue=get("pool-queue"),
            requestTimeout=get("request-timeout"),
            startupTimeout=get("startup-timeout"),
            heartbeatInterval=get("heartbeat"),
            drainTimeout=get("drain-timeout"),
        )

    def sessionConfig(self, entry: Optional[ServerEntry] = None) -> SessionConfig:
        get = self._getter(entry)
        return SessionConfig(
            idleTimeout=get("idle-timeout"),
            requestTimeout=get("request-timeout"),
            startupTimeout=get("startup-timeout"),
            maxSessions=get("max-sessions"),
            heartbeatInterval=get("heartbeat"),
            historyBytes=get("history-size"),
            drainTimeout=get("drain-timeout"),
            spares=get("spares"),
            maxStreams=get("max-session-streams"),
        )

    def serverSpecs(self) -> dict[Optional[str], ServerSpec]:
        """
        Every server to run, by name (L{None}: the default server).
        """
        specs: dict[Optional[str], ServerSpec] = {}
        if self["command"]:
            specs[None] = ServerSpec(None, self.commandSpec(), self.sessionConfig(),
                                     self.poolConfig(), bool(self["stateless"]))
        for name, entry in self.entries().items():
            specs[name] = ServerSpec(name, self.commandSpec(entry), self.sessionConfig(entry),
                                     self.poolConfig(entry),
                                     bool(entry.option("stateless", self["stateless"])))
        return specs


def makeService(options: Options, reactor: Optional[Any] = None) -> IService:
    """
    Build the bridge: its servers (each with its session manager and
    pools), and one listening port per endpoint.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    setLogLevel(options["log-level"])
    top = BridgeService(lambda spec: BridgedServer.build(spec, reactor), reactor)
    if options["log-format"] != "text" or options["log-file"]:
        try:
            top.logObserver = makeObserver(options["log-format"], options["log-file"])
        except (OSError, ValueError) as e:
            _fail(f"cannot log to {options['log-file']}: {e}")
    try:
        front = Front(options, top.servers, reactor)
    except (CredentialError, TLSError) as e:
        _fail(str(e))
    for spec in options.serverSpecs().values():
        top.addServer(spec)
    for description in options["port"]:
        try:
            strports.service(description, front.factory, reactor=reactor).setServiceParent(top)
        except Exception as e:
            _fail(_portProblem(description, e))
    top.front = front
    top.reloader = lambda: _reload(options, front)
    names = ", ".join(f"{prefixOf(s.serverName) or '/'} ({' '.join(s.manager.command.argv)})"
                      for s in top.servers)
    log.info("mcpbridge {version} on {ports}{tls} serving {servers}", version=__version__,
             ports=", ".join(options["port"]), servers=names,
             tls=" (TLS)" if front.tls is not None else "")
    if front.tls is not None:
        log.info("TLS: {certificate}", certificate=front.tls.describe())
    if front.gate.credentials.enabled:
        log.info("authentication required: {count} credential(s)",
                 count=front.gate.credentials.count)
    elif not all(_loopbackOnly(d) for d in options["port"]):
        log.warn("no authentication (see --api-key, --bearer-token-file) on a port that "
                 "is not loopback-only: anyone who reaches it can run the server's tools")
    variables = options.variablesUsed()
    if variables:
        log.info("settings from the environment: {names}", names=", ".join(variables))
    return top


class Front:
    """
    The bridge's HTTP front: the site (with its limits on clients), the
    gate (CORS, rate limit, authentication, body size) around the routes,
    and the TLS that wraps every port.
    """

    def __init__(self, options: Options, servers: Servers, reactor: Any) -> None:
        self.reactor = reactor
        guard = self._guard(options)
        self.bridge = BridgeApp(servers, guard, reactor)
        self.bridge.tlsStatus = lambda: self.tls.status() if self.tls is not None else None
        self.gate = Gate(self.bridge.resource(), guard, Credentials(),
                         RateLimiter(0, 0, reactor), lean=self.bridge.renderMCP)
        self.site = BridgeSite(self.gate, reactor=reactor)
        self.tls: Optional[ServerTLS] = None
        self.tlsFiles = (options["tls-key"], options["tls-cert"], options["tls-client-ca"])
        if options["tls-key"]:
            self.tls = ServerTLS(*self.tlsFiles)
        self.factory = self.tls.wrap(self.site) if self.tls is not None else self.site
        self.configure(options, self.loadCredentials(options))

    @staticmethod
    def _guard(options: Options) -> OriginGuard:
        return OriginGuard(options["allow-host"], options["allow-origin"])

    @staticmethod
    def loadCredentials(options: Options) -> Credentials:
        """
        @raise CredentialError: for a bearer token file that cannot be used.
        """
        return Credentials(options["api-key"], options["bearer-token-file"])

    def configure(self, options: Options, credentials: Credentials) -> None:
        """
        Apply the settings (at start, and on each reload).
        """
        guard = self._guard(options)
        self.bridge.guard = self.gate.guard = guard
        self.gate.credentials = credentials
        # A limiter with the same settings keeps its buckets.
        limiter = RateLimiter(options["rate-limit"], options["rate-burst"], self.reactor)
        old = self.gate.limiter
        if (limiter.rate, limiter.burst) != (old.rate, old.burst):
            self.gate.limiter = limiter
        self.gate.cors = CORS(bool(options["cors-allow-credentials"]),
                              options["cors-max-age"])
        site = self.site
        site.maxBodySize = options["max-body-size"]
        site.readTimeout = options["read-timeout"]
        site.timeOut = options["keepalive-timeout"] or None
        site.writeBufferSize = options["write-buffer-size"]


def _portProblem(description: str, error: Exception) -> str:
    """
    Why an endpoint that parsed cannot be used, in one line.
    """
    if description.split(":", 1)[0].lower() == "systemd" and isinstance(error, IndexError):
        return (f"--port {description}: systemd passed no socket at that index "
                f"(LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES say which sockets it passed; "
                f"start the bridge from a socket-activated unit)")
    return f"--port {description}: cannot use it: {error}"


def _loopbackOnly(description: str) -> bool:
    """
    Whether an endpoint description listens only where other machines
    cannot reach: a loopback interface or a unix socket.
    """
    kind = description.split(":", 1)[0].lower()
    if kind == "unix":
        return True
    found = re.search(r"(?:^|:)interface=((?:\\:|[^:])*)", description)
    if kind not in ("tcp", "tcp6", "ssl") or found is None:
        return False
    host = found.group(1).replace("\\:", ":").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reload(options: Options, front: Front) -> dict[Optional[str], ServerSpec]:
    """
    SIGHUP: read the config file (if any), the bearer token file and the
    TLS files again, and say what servers to run.  Nothing changes unless
    all of them can be used.

    @raise ConfigError: when any cannot be used.
    """
    ports, previous = list(options["port"]), options.configFile
    if options["config"]:
        options.reloadConfig()

    def undo(problem: str) -> NoReturn:
        if options["config"]:
            options.configFile = previous
            options.resolve()
        raise ConfigError(problem)

    specs = options.serverSpecs()
    if not specs:
        undo(f"{options['config']}: no server left to serve")
    try:
        credentials = front.loadCredentials(options)
    except CredentialError as e:
        undo(str(e))
    tlsFiles = (options["tls-key"], options["tls-cert"], options["tls-client-ca"])
    if tlsFiles != front.tlsFiles:
        log.warn("the TLS files named in the config file changed; that takes a restart")
    if front.tls is not None:
        try:
            front.tls.reload()
        except TLSError as e:
            undo(str(e))
        log.info("TLS reloaded: {certificate}", certificate=front.tls.describe())
    front.configure(options, credentials)
    setLogLevel(options["log-level"])
    if list(options["port"]) != ports:
        log.warn("the listening ports changed in the config file; that takes a restart")
    return specs
