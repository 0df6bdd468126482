"""
The bridge's top service: the order of a graceful stop.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred

from .pool import ChildPool
from .sessions import SessionManager


class BridgeService(MultiService):
    """
    The listening ports, the session manager and the pools of one bridge.

    Stopping happens in three steps, so clients see a clean end: first the
    managers drain (new sessions and requests get 503 while the requests in
    flight finish, and the ports stay open to say so), then the ports close,
    then every session ends and every child is stopped.
    """

    def managers(self) -> list[Any]:
        """
        The services that own children: session managers and pools.
        """
        return [s for s in self if isinstance(s, (SessionManager, ChildPool))]

    def stopService(self) -> "Deferred[Any]":
        Service.stopService(self)
        managers = self.managers()
        d: Deferred[Any] = DeferredList([m.drain() for m in managers])

        def closePorts(_: Any) -> "Deferred[Any]":
            others = [s for s in reversed(list(self)) if s not in managers]
            return DeferredList([maybeDeferred(s.stopService) for s in others])

        def endSessions(_: Any) -> "Deferred[Any]":
            return DeferredList([maybeDeferred(m.stopService) for m in managers])

        return d.addCallback(closePorts).addCallback(endSessions)
