"""
What every request passes before the bridge's routes see it: CORS (the
preflight answered here, the response headers added), the per-client rate
limit, authentication, and the body size limit.

    Gate(BridgeApp(...).resource(), Policy(...), guard, clock)

C{/health} and C{/ping} are open to all (load balancers and orchestrators
probe them without credentials), and so is a CORS preflight (browsers send
it without credentials).  Everything else needs a valid credential when any
is configured: an API key in C{X-API-Key}, or a bearer token in
C{Authorization: Bearer}.  A refused request never reaches a route, so it
never starts a child.  An accepted one carries its credential's digest as
C{request.principal}, which the sessions it creates are bound to.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from typing import Any, Callable, Iterable, Optional

from urllib.parse import unquote_to_bytes

import attr
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException
from twisted.web.resource import Resource

from . import jsonrpc
from .guard import OriginGuard
from .logs import logger

log = logger("mcpbridge.gate")

#: Paths served to anyone: liveness and health probes.
OPEN_PATHS = frozenset({b"/health", b"/ping"})

#: Request headers browsers may send cross-origin: what MCP clients send.
ALLOWED_HEADERS = ("Content-Type", "Accept", "Authorization", "X-API-Key",
                   "Mcp-Session-Id", "MCP-Protocol-Version", "Mcp-Method", "Mcp-Name",
                   "Last-Event-ID")
#: Response headers a cross-origin page may read.
EXPOSED_HEADERS = ("Mcp-Session-Id", "MCP-Protocol-Version", "WWW-Authenticate",
                   "Retry-After")
METHODS = b"GET, POST, DELETE, OPTIONS"
#: The stateless revision's per-argument headers, whatever the tool.
_PARAM_HEADER = re.compile(rb"mcp-param-[a-z0-9_.-]{1,100}")


class CredentialError(Exception):
    """
    A bearer token file that cannot be used.
    """


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def readTokenFile(path: str) -> list[str]:
    """
    The tokens in a file: one per line; blank lines and lines starting
    with C{#} are skipped, and surrounding white space is dropped.

    @raise CredentialError: when the file cannot be read or holds none.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CredentialError(f"--bearer-token-file {path}: cannot read it: {e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialError(f"--bearer-token-file {path}: not UTF-8 text") from None
    tokens = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            if any(c.isspace() for c in line):
                raise CredentialError(f"--bearer-token-file {path}: a token must not "
                                      f"contain white space (one token per line)")
            tokens.append(line)
    if not tokens:
        raise CredentialError(f"--bearer-token-file {path}: no token in it")
    return tokens


class Credentials:
    """
    The API keys and bearer tokens a client may present, kept only as
    digests and compared in constant time.

    @param apiKeys: accepted in C{X-API-Key}.
    @param tokenFile: a file of bearer tokens, accepted in
        C{Authorization: Bearer}; read again by L{reload}.
    """

    def __init__(self, apiKeys: Iterable[str] = (), tokenFile: Optional[str] = None) -> None:
        self._keys = [_digest(k.encode("utf-8")) for k in apiKeys]
        self.tokenFile = tokenFile
        self._tokens: list[bytes] = []
        if tokenFile:
            self.reload()

    @property
    def enabled(self) -> bool:
        return bool(self._keys or self._tokens)

    @property
    def count(self) -> int:
        return len(self._keys) + len(self._tokens)

    def reload(self) -> None:
        """
        Read the bearer token file again.

        @raise CredentialError: when it cannot be used; the tokens stay.
        """
        if self.tokenFile:
            self._tokens = [_digest(t.encode("utf-8")) for t in readTokenFile(self.tokenFile)]

    @staticmethod
    def _matches(given: bytes, digests: list[bytes]) -> Optional[bytes]:
        """
        The digest C{given} matches, if any.  Every digest is compared, so
        the time taken does not say which (or whether any) matched.
        """
        candidate = _digest(given)
        found = False
        for digest in digests:
            found |= hmac.compare_digest(candidate, digest)
        return candidate if found else None

    def identify(self, request: IRequest) -> tuple[Optional[bytes], Optional[str]]:
        """
        Who a request comes from.

        @return: the digest of the valid credential it carries (L{None}
            when no credential is needed) and L{None}; or L{None} and why
            it is refused.
        """
        if not self.enabled:
            return None, None
        key = request.getHeader(b"x-api-key")
        authorization = request.getHeader(b"authorization")
        if key is not None and self._keys:
            found = self._matches(key.strip(), self._keys)
            if found is not None:
                return found, None
        if authorization is not None and self._tokens:
            scheme, _, token = authorization.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                found = self._matches(token.strip(), self._tokens)
                if found is not None:
                    return found, None
        if key is None and authorization is None:
            return None, "no credentials"
        return None, "invalid credentials"

    def challenges(self, problem: str) -> list[bytes]:
        """
        The C{WWW-Authenticate} values of a 401.
        """
        values = []
        if self._tokens:
            value = b'Bearer realm="mcpbridge"'
            if problem == "invalid credentials":
                value += b', error="invalid_token"'
            values.append(value)
        if self._keys:
            values.append(b'ApiKey realm="mcpbridge", header="X-API-Key"')
        return values


class RateLimiter:
    """
    A token bucket per client: C{rate} requests a second on average, up to
    C{burst} at once.
    """

    def __init__(self, rate: float, burst: int, clock: Any, maxClients: int = 10000) -> None:
        self.rate = rate
        self.burst = max(1, burst or math.ceil(2 * rate))
        self.clock = clock
        self.maxClients = maxClients
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, client: str) -> Optional[int]:
        """
        Spend one request of C{client}'s.

        @return: L{None} when allowed, else the seconds to wait.
        """
        if not self.enabled:
            return None
        now = self.clock.seconds()
        tokens, then = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
        if client not in self._buckets and len(self._buckets) >= self.maxClients:
            self._forgetFull(now)
        self._buckets[client] = (tokens - 1.0, now)
        return None

    def _forgetFull(self, now: float) -> None:
        """
        Drop the buckets that have filled up again: they are as good as new.
        """
        full = [c for c, (tokens, then) in self._buckets.items()
                if tokens + (now - then) * self.rate >= self.burst]
        for client in full:
            del self._buckets[client]


@attr.s(auto_attribs=True, frozen=True)
class CORS:
    """
    How cross-origin requests from allowed origins are answered.
    """

    allowCredentials: bool = False
    maxAge: int = 600


#: Paths whose GET has no effect, so a HEAD may be answered like it.
_HEAD_PATHS = OPEN_PATHS | {b"/status"}


def _unreadableURL(request: IRequest) -> Optional[str]:
    """
    Why the request's path or C{Host} cannot be routed (they must be
    UTF-8 once percent-decoded), or L{None}.
    """
    try:
        unquote_to_bytes(request.path).decode("utf-8")
    except UnicodeDecodeError:
        return "the path is not UTF-8 once percent-decoded"
    host = request.getHeader(b"host")
    if host is not None:
        try:
            host.decode("utf-8")
        except UnicodeDecodeError:
            return "the Host header is not UTF-8"
    return None


def _clientOf(request: IRequest) -> str:
    address = request.getClientAddress()
    return str(getattr(address, "host", None) or type(address).__name__)


def _refuse(request: IRequest, status: int, message: str,
            retryAfter: Optional[int] = None) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    if retryAfter is not None:
        request.setHeader(b"retry-after", b"%d" % retryAfter)
    return jsonrpc.dumps(jsonrpc.errorResponse(None, jsonrpc.INVALID_REQUEST, message))


class Gate(Resource):
    """
    Wraps the bridge's resource with CORS, the rate limit, authentication
    and the body size limit.
    """

    isLeaf = True

    def __init__(self, wrapped: Any, guard: OriginGuard, credentials: Credentials,
                 limiter: RateLimiter, cors: CORS = CORS(),
                 lean: Optional[Callable[[IRequest], Any]] = None) -> None:
        super().__init__()
        self.wrapped = wrapped
        #: Renders C{/mcp} without the router (L{None}: not served that way).
        self.lean = lean
        self.guard = guard
        self.credentials = credentials
        self.limiter = limiter
        self.cors = cors

    def render(self, request: IRequest) -> Any:
        origin = request.getHeader(b"origin")
        corsOrigin = origin if origin is not None and self.guard.originAllowed(origin) \
            else None
        if origin is not None:
            request.setHeader(b"vary", b"Origin")
        if request.method == b"OPTIONS":
            return self._options(request, origin, corsOrigin)
        if corsOrigin is not None:
            request.setHeader(b"access-control-allow-origin", corsOrigin)
            request.setHeader(b"access-control-expose-headers",
                              ", ".join(EXPOSED_HEADERS).encode("ascii"))
            if self.cors.allowCredentials:
                request.setHeader(b"access-control-allow-credentials", b"true")
        if request.path not in OPEN_PATHS:
            client = _clientOf(request)
            wait = self.limiter.take(client)
            if wait is not None:
                log.debug("rate limit: {client} must wait {seconds} s",
                          client=client, seconds=wait)
                return _refuse(request, 429, "Too Many Requests: this client's request "
                               "rate is over the limit (see --rate-limit)", retryAfter=wait)
            principal, problem = self.credentials.identify(request)
            # The routes bind new sessions to it: another client's
            # credential cannot use them, even knowing their ids.
            request.principal = principal  # type: ignore[attr-defined]
            if problem is not None:
                log.info("refused {method} {path} from {client}: {problem}",
                         method=request.method.decode("ascii", "replace"),
                         path=request.path.decode("ascii", "replace")[:200],
                         client=client, problem=problem)
                for value in self.credentials.challenges(problem):
                    request.responseHeaders.addRawHeader(b"www-authenticate", value)
                return _refuse(request, 401, f"Unauthorized: {problem} (send an API key in "
                               f"X-API-Key or a token in Authorization: Bearer)")
        if getattr(request, "tooLarge", False):
            site = getattr(getattr(request, "channel", None), "site", None)
            limit = getattr(site, "maxBodySize", 0)
            return _refuse(request, 413, f"Content Too Large: the request body is over "
                           f"the limit of {limit} bytes (see --max-body-size)")
        if request.method == b"HEAD" and request.path not in _HEAD_PATHS:
            # The routes would take it for a GET, which opens sessions.
            request.setHeader(b"allow", METHODS)
            return _refuse(request, 405, "Method Not Allowed: HEAD is served only for "
                           "/health, /ping and /status")
        if self.lean is not None and request.path == b"/mcp":
            result = self.lean(request)
            if result is not None:
                return result
        # Only the router needs the path and Host in UTF-8.
        problem = _unreadableURL(request)
        if problem is not None:
            return _refuse(request, 400, f"Bad Request: {problem}")
        try:
            return self.wrapped.render(request)
        except HTTPException as e:
            # Raised before any route: a Host the URL router cannot take.
            return _refuse(request, e.code or 400, f"Bad Request: {e.description}")

    def _options(self, request: IRequest, origin: Optional[bytes],
                 corsOrigin: Optional[bytes]) -> bytes:
        """
        A CORS preflight, or a plain C{OPTIONS}: what may be sent here.
        """
        requested = request.getHeader(b"access-control-request-method")
        if origin is None or requested is None:
            request.setResponseCode(204)
            request.setHeader(b"allow", METHODS)
            return b""
        if corsOrigin is None:
            log.info("refused a CORS preflight from origin {origin!r}",
                     origin=origin.decode("ascii", "replace")[:200])
            return _refuse(request, 403, "Forbidden: this Origin is not allowed "
                           "(see --allow-origin)")
        headers = list(ALLOWED_HEADERS)
        for name in (request.getHeader(b"access-control-request-headers") or b"").split(b","):
            name = name.strip().lower()
            if _PARAM_HEADER.fullmatch(name) and len(headers) < 100:
                headers.append(name.decode("ascii"))
        request.setResponseCode(204)
        request.setHeader(b"access-control-allow-origin", corsOrigin)
        request.setHeader(b"access-control-allow-methods", METHODS)
        request.setHeader(b"access-control-allow-headers", ", ".join(headers).encode("ascii"))
        request.setHeader(b"access-control-max-age", b"%d" % self.cors.maxAge)
        if self.cors.allowCredentials:
            request.setHeader(b"access-control-allow-credentials", b"true")
        return b""
