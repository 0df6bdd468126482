"""
Unit tests for L{mcpbridge.guard.OriginGuard}: Host and Origin validation.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mcpbridge.guard import OriginGuard


class HostTests(SynchronousTestCase):
    def test_loopbackByDefault(self) -> None:
        """
        Only loopback names, with any port, are served by default; a request
        without Host (HTTP/1.0) is too.
        """
        guard = OriginGuard()
        for host in (b"localhost", b"localhost:3000", b"127.0.0.1:8080", b"[::1]:3000",
                     b"LOCALHOST", None):
            self.assertTrue(guard.hostAllowed(host), host)
        for host in (b"evil.example.com", b"127.0.0.1.evil.com", b"localhost.evil.com:3000",
                     b"[::2]", b"\xff"):
            self.assertFalse(guard.hostAllowed(host), host)

    def test_configured(self) -> None:
        """
        --allow-host takes a name (any port), name:port (that port only) and
        patterns with *.
        """
        guard = OriginGuard(["mcp.example.com", "api.example.com:443", "*.internal"])
        self.assertTrue(guard.hostAllowed(b"mcp.example.com"))
        self.assertTrue(guard.hostAllowed(b"MCP.example.com:8443"))
        self.assertTrue(guard.hostAllowed(b"api.example.com:443"))
        self.assertFalse(guard.hostAllowed(b"api.example.com:8443"))
        self.assertFalse(guard.hostAllowed(b"api.example.com"))
        self.assertTrue(guard.hostAllowed(b"box.internal:3000"))
        self.assertFalse(guard.hostAllowed(b"example.com"))

    def test_any(self) -> None:
        """
        --allow-host '*' serves any Host.
        """
        self.assertTrue(OriginGuard(["*"]).hostAllowed(b"whatever.example"))


class OriginTests(SynchronousTestCase):
    def test_loopbackByDefault(self) -> None:
        """
        Loopback origins on any port and scheme pass, as does a request with
        no Origin; others, and the opaque "null" origin, do not.
        """
        guard = OriginGuard()
        for origin in (None, b"http://localhost:5173", b"https://127.0.0.1", b"http://[::1]:3000"):
            self.assertTrue(guard.originAllowed(origin), origin)
        for origin in (b"http://evil.example.com", b"null", b"file://localhost",
                       b"http://localhost.evil.com", b"http://[bad"):
            self.assertFalse(guard.originAllowed(origin), origin)

    def test_configured(self) -> None:
        """
        --allow-origin takes exact origins (a trailing slash and case do not
        matter) and patterns with *.
        """
        guard = OriginGuard(allowedOrigins=["https://app.example.com/", "https://*.corp.example"])
        self.assertTrue(guard.originAllowed(b"https://APP.example.com"))
        self.assertFalse(guard.originAllowed(b"http://app.example.com"))
        self.assertTrue(guard.originAllowed(b"https://team.corp.example"))
        self.assertFalse(guard.originAllowed(b"https://corp.example.evil"))

    def test_check(self) -> None:
        """
        check() names the status: 421 for the Host, 403 for the Origin.
        """
        guard = OriginGuard()
        self.assertIsNone(guard.check(b"127.0.0.1:1", b"http://localhost:2"))
        self.assertEqual(guard.check(b"evil.example.com", None)[0], 421)
        self.assertEqual(guard.check(b"127.0.0.1", b"http://evil.example.com")[0], 403)
