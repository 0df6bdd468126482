"""
The MCP servers behind one bridge: the default one (the command after
C{--}, served at C{/mcp} and C{/sse}) and the named ones (served under
C{/servers/NAME/}), each with its own children, sessions and pools.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import attr
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList

from .child import ChildStartError, CommandSpec, spawnGroupLeader
from .logs import logger
from .pool import MODERN, SESSION, ChildPool, PoolConfig
from .sessions import SessionConfig, SessionManager


def prefixOf(name: Optional[str]) -> str:
    """
    The path a server's endpoints are under: C{""} or C{"/servers/NAME"}.
    """
    return "" if name is None else f"/servers/{name}"


@attr.s(frozen=True, auto_attribs=True)
class ServerSpec:
    """
    Everything that decides how one server is run; two equal specs run the
    same way, which is how a reload tells a changed server from an
    unchanged one.

    @ivar name: L{None} for the default server.
    @ivar stateless: serve its session-era clients from a pool, without
        sessions (C{--stateless}).
    """

    name: Optional[str]
    command: CommandSpec
    sessions: SessionConfig
    pool: PoolConfig
    stateless: bool = False


class BridgedServer(MultiService):
    """
    One MCP server behind the bridge: the session manager that runs one
    child per session (Streamable HTTP or HTTP+SSE), the pool that serves
    the stateless era, and with C{--stateless} the pool that serves the
    session era without sessions.

    Its services are its children; pools replaced by L{reconfigure} stay
    children until they have drained and stopped.
    """

    log = logger("mcpbridge.servers")

    def __init__(self, name: Optional[str], manager: SessionManager, pool: ChildPool,
                 stateless: Optional[ChildPool] = None,
                 spec: Optional[ServerSpec] = None) -> None:
        super().__init__()
        self.serverName = name
        self.manager = manager
        self.pool = pool
        self.stateless = stateless
        self.spec = spec

    @classmethod
    def build(cls, spec: ServerSpec, reactor: Any,
              spawn: Callable[..., Any] = spawnGroupLeader,
              killpg: Optional[Callable[[int, int], None]] = None) -> "BridgedServer":
        """
        A server and its services, as C{spec} says.
        """
        manager = SessionManager(spec.command, spec.sessions, reactor, spawn, killpg)
        server = cls(spec.name, manager, _newPool(MODERN, spec, manager), None, spec)
        manager.setServiceParent(server)
        server.pool.setServiceParent(server)
        if spec.stateless:
            server.stateless = server._newPool(SESSION, spec)
        return server

    def startService(self) -> None:
        super().startService()
        self.checkCommand()

    def checkCommand(self) -> None:
        """
        Say at once when the command cannot run: the server is failing
        (C{/health} 503, its sessions 502) until it can; other servers are
        not affected.
        """
        try:
            self.manager.command.resolve()
        except ChildStartError as e:
            self.manager.startFailed(f"server {self.label}: {e}")

    @property
    def label(self) -> str:
        return "default" if self.serverName is None else self.serverName

    def owners(self) -> list[Any]:
        """
        Its services that own children (including pools being retired).
        """
        return [s for s in self if isinstance(s, (SessionManager, ChildPool))]

    def pools(self) -> list[ChildPool]:
        return [p for p in (self.pool, self.stateless) if p is not None]

    def drain(self) -> "Deferred[Any]":
        return DeferredList([o.drain() for o in self.owners()])

    @property
    def healthy(self) -> bool:
        """
        Whether its last attempts to start a child worked.
        """
        return (self.manager.lastStartOk is not False
                and all(p.lastStartOk is not False for p in self.pools()))

    @property
    def lastError(self) -> Optional[str]:
        if self.manager.lastError is not None:
            return self.manager.lastError
        return next((p.lastError for p in self.pools() if p.lastError), None)

    def reconfigure(self, spec: ServerSpec) -> None:
        """
        Run as C{spec} says from now on: new sessions get children of the
        new command and settings, the sessions that exist keep theirs;
        pools are replaced, the old ones drain and stop.
        """
        old, self.spec = self.spec, spec
        assert old is not None
        manager = self.manager
        if (old.command, old.sessions) != (spec.command, spec.sessions):
            manager.reconfigure(spec.command, spec.sessions)
            if old.command != spec.command:
                self.checkCommand()
        poolChanged = (old.command, old.pool) != (spec.command, spec.pool)
        if poolChanged:
            retire(self, self.pool)
            self.pool = self._newPool(MODERN, spec)
        if poolChanged or old.stateless != spec.stateless:
            if self.stateless is not None:
                retire(self, self.stateless)
                self.stateless = None
            if spec.stateless:
                self.stateless = self._newPool(SESSION, spec)

    def _newPool(self, era: str, spec: ServerSpec) -> ChildPool:
        pool = _newPool(era, spec, self.manager)
        pool.setServiceParent(self)
        return pool

    def status(self) -> dict[str, Any]:
        """
        What C{/status} says of it.
        """
        manager = self.manager
        report: dict[str, Any] = {
            "name": self.serverName,
            "status": "ok" if self.healthy else "failing",
            "endpoints": {"mcp": prefixOf(self.serverName) + "/mcp",
                          "sse": prefixOf(self.serverName) + "/sse"},
            "command": manager.command.argv[0] if manager.command.argv else None,
            **manager.status(),
            "stateless": self.pool.status(),
        }
        if self.stateless is not None:
            report["stateless_sessions"] = self.stateless.status()
        report["last_error"] = self.lastError
        return report


def _newPool(era: str, spec: ServerSpec, manager: SessionManager) -> ChildPool:
    """
    A pool of C{era} for C{spec}, spawning children the way C{manager} does.
    """
    return ChildPool(era, spec.command, spec.pool, manager.reactor, manager.spawn,
                     manager.killpg)


def retire(parent: MultiService, service: Any) -> "Deferred[Any]":
    """
    Let C{service} (a server, a manager or a pool) drain, then stop it and
    take it from C{parent}.

    @return: fires once it has stopped.
    """
    def stop(_: Any) -> Any:
        return parent.removeService(service) if service in parent else None

    d: Deferred[Any] = service.drain()
    return d.addCallback(stop)


class Servers:
    """
    The servers a bridge serves, by name; L{None} names the default one.
    """

    def __init__(self) -> None:
        self._servers: dict[Optional[str], BridgedServer] = {}

    def get(self, name: Optional[str]) -> Optional[BridgedServer]:
        return self._servers.get(name)

    def add(self, server: BridgedServer) -> None:
        self._servers[server.serverName] = server

    def remove(self, name: Optional[str]) -> Optional[BridgedServer]:
        return self._servers.pop(name, None)

    @property
    def default(self) -> Optional[BridgedServer]:
        return self._servers.get(None)

    def names(self) -> list[Optional[str]]:
        return list(self._servers)

    def __iter__(self) -> Iterator[BridgedServer]:
        return iter(list(self._servers.values()))

    def __len__(self) -> int:
        return len(self._servers)
