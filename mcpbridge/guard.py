"""
Host and Origin validation: the defence against DNS rebinding.

A browser page on another site can reach a bridge on localhost through a
host name it controls; the Host header then names that site, and a
cross-site request carries its Origin.  Only the names configured (by
default the loopback names) are served.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Iterable, Optional
from urllib.parse import urlsplit

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _splitHost(value: str) -> tuple[str, Optional[str]]:
    """
    Split a Host header value into (lower-case host, port or None).
    """
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return value, None
        host, rest = value[1:end], value[end + 1:]
        return host, rest[1:] if rest.startswith(":") else None
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit():
        return value, None
    return host, port


class OriginGuard:
    """
    Decides whether a request's C{Host} and C{Origin} may be served.

    @param allowedHosts: host names (any port), C{host:port} pairs, patterns
        with C{*}, or C{"*"} for any host.  The loopback names are always
        allowed.
    @param allowedOrigins: exact origins (C{https://app.example.com}),
        patterns with C{*}, or C{"*"}.  Loopback origins (any scheme, any
        port) are always allowed; a request without C{Origin} (not from a
        browser) is allowed.
    """

    def __init__(self, allowedHosts: Iterable[str] = (),
                 allowedOrigins: Iterable[str] = ()) -> None:
        self.allowedHosts = [_splitHost(h) for h in allowedHosts if h.strip()]
        self.allowedOrigins = [o.strip().lower().rstrip("/") for o in allowedOrigins
                               if o.strip()]
        self.anyHost = ("*", None) in self.allowedHosts
        self._hosts: dict[bytes, bool] = {}
        self.anyOrigin = "*" in self.allowedOrigins

    def hostAllowed(self, header: Optional[bytes]) -> bool:
        if header is None or self.anyHost:
            return True
        # Clients send the same Host on every request: decide each once.
        known = self._hosts.get(header)
        if known is None:
            known = self._hostAllowed(header)
            if len(self._hosts) >= 256:
                self._hosts.clear()
            self._hosts[header] = known
        return known

    def _hostAllowed(self, header: bytes) -> bool:
        try:
            value = header.decode("ascii")
        except UnicodeDecodeError:
            return False
        host, port = _splitHost(value)
        if host in LOOPBACK_HOSTS:
            return True
        return any(fnmatchcase(host, aHost) for aHost, aPort in self.allowedHosts
                   if aPort is None or aPort == port)

    def originAllowed(self, header: Optional[bytes]) -> bool:
        if header is None or self.anyOrigin:
            return True
        try:
            origin = header.decode("ascii").strip().lower().rstrip("/")
        except UnicodeDecodeError:
            return False
        try:
            parts = urlsplit(origin)
            host = parts.hostname
        except ValueError:
            return False
        if parts.scheme in ("http", "https") and host in LOOPBACK_HOSTS:
            return True
        return any(fnmatchcase(origin, pattern) for pattern in self.allowedOrigins)

    def check(self, host: Optional[bytes], origin: Optional[bytes]) -> Optional[tuple[int, str]]:
        """
        @return: L{None} when allowed, else the HTTP status and a reason.
        """
        if not self.hostAllowed(host):
            return 421, "Misdirected Request: this Host is not served (see --allow-host)"
        if not self.originAllowed(origin):
            return 403, "Forbidden: this Origin is not allowed (see --allow-origin)"
        return None
