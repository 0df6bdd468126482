"""
The bridge's top service: its servers, its listening ports, reloading the
config file on SIGHUP, and the order of a graceful stop.
"""

from __future__ import annotations

import signal
from typing import Any, Callable, Optional

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.logger import ILogObserver
from twisted.python.components import Componentized

from .config import ConfigError
from .logs import logger
from .servers import BridgedServer, Servers, ServerSpec, retire

log = logger("mcpbridge.service")


class BridgeService(MultiService):
    """
    The servers and listening ports of one bridge.

    Stopping happens in three steps, so clients see a clean end: first every
    server drains (new sessions and requests get 503 while the requests in
    flight finish, and the ports stay open to say so), then the ports close,
    then every session ends and every child is stopped.

    @ivar servers: the servers, by name, as the web routes see them.
    @ivar reloader: reads the configuration again and returns the servers it
        asks for (raising L{ConfigError} when it cannot be used); SIGHUP
        calls it.  L{None}: nothing to reload.
    @param reactor: where a SIGHUP's reload is scheduled.
    @ivar logObserver: when set, the observer twistd logs to (set as the
        application's L{ILogObserver} component).
    """

    def __init__(self, build: Callable[[ServerSpec], BridgedServer], reactor: Any) -> None:
        super().__init__()
        self.build = build
        self.servers = Servers()
        self.reloader: Optional[Callable[[], dict[Optional[str], ServerSpec]]] = None
        self.logObserver: Optional[ILogObserver] = None
        #: The HTTP front (site, gate, TLS) that makeService built, if any.
        self.front: Any = None
        self._retiring: set[Deferred[Any]] = set()
        self._previousHandler: Any = None
        self._reactor = reactor

    def setServiceParent(self, parent: Any) -> None:
        # twistd starts logging after the plugin built the service, with the
        # application's observer component when it has one.
        if self.logObserver is not None and isinstance(parent, Componentized) \
                and parent.getComponent(ILogObserver, None) is None:
            parent.setComponent(ILogObserver, self.logObserver)
        super().setServiceParent(parent)

    # The servers.

    def addServer(self, spec: ServerSpec) -> BridgedServer:
        server = self.build(spec)
        server.setServiceParent(self)
        self.servers.add(server)
        return server

    def removeServer(self, name: Optional[str]) -> None:
        """
        Stop routing to server C{name}; it drains, then stops.
        """
        server = self.servers.remove(name)
        if server is None:
            return
        server.manager.stopReason = "its server was removed from the configuration"

        def forget(result: Any) -> Any:
            self._retiring.discard(d)
            return result

        d = retire(self, server)
        self._retiring.add(d)
        d.addBoth(forget)

    def apply(self, specs: dict[Optional[str], ServerSpec]) -> dict[str, list[str]]:
        """
        Serve what C{specs} says: new servers start, removed ones drain and
        stop, changed ones run new sessions their new way; the others are
        not touched.

        @return: the server names by what happened to them.
        """
        report: dict[str, list[str]] = {"added": [], "removed": [], "changed": [],
                                        "unchanged": []}

        def label(name: Optional[str]) -> str:
            return "default" if name is None else name

        for name in self.servers.names():
            if name not in specs:
                self.removeServer(name)
                report["removed"].append(label(name))
        for name, spec in specs.items():
            server = self.servers.get(name)
            if server is None:
                self.addServer(spec)
                report["added"].append(label(name))
            elif server.spec != spec:
                server.reconfigure(spec)
                report["changed"].append(label(name))
            else:
                report["unchanged"].append(label(name))
        return report

    def reload(self) -> bool:
        """
        Read the configuration again and apply it; one that cannot be used
        is rejected whole and the running one stays.

        @return: whether it was applied.
        """
        if self.reloader is None:
            log.warn("reload asked for, but there is no config file to read (see --config)")
            return False
        try:
            specs = self.reloader()
        except ConfigError as e:
            log.error("config reload rejected, the running configuration stays: {problem}",
                      problem=str(e))
            return False
        report = self.apply(specs)
        log.info("config reloaded: {summary}", summary="; ".join(
            f"{what} {', '.join(names)}" for what, names in report.items() if names))
        return True

    # Service.

    def startService(self) -> None:
        super().startService()
        if hasattr(signal, "SIGHUP"):
            try:
                self._previousHandler = signal.signal(signal.SIGHUP, self._hangup)
            except ValueError:  # not the main thread (some test runners)
                self._previousHandler = None

    def _hangup(self, signum: int, frame: Any) -> None:
        log.info("SIGHUP: reloading the config file")
        # A signal handler may run in the middle of any reactor work.
        self._reactor.callFromThread(self.reload)

    def owners(self) -> list[Any]:
        """
        The services that own children: session managers and pools.
        """
        return [o for server in self if isinstance(server, BridgedServer)
                for o in server.owners()]

    def stopService(self) -> "Deferred[Any]":
        Service.stopService(self)
        if self._previousHandler is not None:
            signal.signal(signal.SIGHUP, self._previousHandler)
            self._previousHandler = None
        owners = self.owners()
        servers = [s for s in self if isinstance(s, BridgedServer)]
        d: Deferred[Any] = DeferredList([o.drain() for o in owners])

        def closePorts(_: Any) -> "Deferred[Any]":
            others = [s for s in reversed(list(self)) if s not in servers]
            return DeferredList([maybeDeferred(s.stopService) for s in others])

        def endSessions(_: Any) -> "Deferred[Any]":
            return DeferredList([maybeDeferred(s.stopService) for s in servers]
                                + list(self._retiring))

        return d.addCallback(closePorts).addCallback(endSessions)
