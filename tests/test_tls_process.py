"""
TLS over real processes: a real ``twistd -n mcpbridge`` serving HTTPS, on
Twisted's own C{ssl:} endpoint and with C{--tls-key}/C{--tls-cert} around
C{tcp:}, C{unix:} and C{systemd:} (socket-activated) endpoints, with mutual
TLS, SIGHUP reloads of the certificate, the startup errors, and refusing
TLS 1.1.  (L{tests.test_tls} tests L{mcpbridge.tls} in-process.)

Clients: treq (an Agent whose policy is C{optionsForClientTLS} trusting the
test CA only), the official Python MCP SDK client
(C{tests/clients/python_client.py}), and the standard library's C{ssl}.
Every client verifies the bridge's certificate against the test CA (the
bridge serves its certificate and the intermediate CA's; clients trust the
root only).  Every bridge listens on 127.0.0.1 or on a unix socket in a
temporary directory; every wait is bounded; at cleanup every process that
was below a bridge must be gone.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Dict, Generator, List, Optional, Sequence, Tuple

import treq
from cryptography import x509
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import reactor, task, tcp
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.trial import unittest as trial
from twisted.web.client import Agent, HTTPConnectionPool, ResponseNeverReceived
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from tests import support
from tests.support import (
    HOST, PYTHON_CLIENT, TWISTD, Bridge, child_env, free_port, http_request, run_json,
    wait_until)
from tests.tlsutil import PKI, makePKI, writeCertificates, writeKey

DEMO = [sys.executable, "-m", "mcpbridge.demo_server"]
#: No pool children (nothing here needs them), and quick child stops.
OPTIONS = ["--pool-size", "0", "--stdin-grace", "0.5", "--term-grace", "1"]
CLIENT_TIMEOUT = 60.0
JSON_HEADERS = {"accept": "application/json, text/event-stream",
                "content-type": "application/json"}


def initialize_body(id: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "tls-process-test", "version": "1"}}}).encode()


def rpc_message(headers: Dict[str, str], body: bytes) -> Dict[str, Any]:
    """The JSON-RPC message of a response, sent as JSON or as one SSE event."""
    if headers.get("content-type", "").startswith("text/event-stream"):
        for line in body.decode("utf-8").splitlines():
            if line.startswith("data:"):
                message: Dict[str, Any] = json.loads(line[5:].strip())
                return message
        raise AssertionError(f"no data in the event stream: {body!r}")
    answer: Dict[str, Any] = json.loads(body)
    return answer


def temporary_directory(case: Any) -> str:
    directory = tempfile.mkdtemp(prefix="mcpbridge-tlsp-")
    case.addCleanup(shutil.rmtree, directory, True)
    return directory


def client_context(pki: PKI, cert: Optional[str] = None, key: Optional[str] = None,
                   minimum: Optional[ssl.TLSVersion] = None,
                   maximum: Optional[ssl.TLSVersion] = None) -> ssl.SSLContext:
    """
    A standard library client context that trusts the test root CA only and
    checks the server's name (verification on, strict X.509 checks).
    """
    context = ssl.create_default_context(cafile=pki.caCert)
    context.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
    if cert is not None:
        context.load_cert_chain(cert, key)
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    return context


def tls_options(pki: PKI, client_ca: bool = False) -> List[str]:
    options = ["--tls-key", pki.serverKey, "--tls-cert", pki.serverCert]
    if client_ca:
        options += ["--tls-client-ca", pki.clientCACert]
    return options


def handshake(port: int, context: ssl.SSLContext,
              hostname: str = "localhost") -> Tuple[Optional[str], int]:
    """
    A TLS handshake with 127.0.0.1:C{port}: (TLS version, serial number of
    the server's certificate).

    @raise ssl.SSLError: The handshake failed.
    """
    with socket.create_connection((HOST, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=hostname) as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return tls.version(), x509.load_der_x509_certificate(der).serial_number


def served_serial(port: int, context: ssl.SSLContext) -> Optional[int]:
    """The serial number a new connection sees, or L{None} if it fails."""
    try:
        return handshake(port, context)[1]
    except OSError:
        return None


def plain_http(connect: Any) -> bytes:
    """
    Send a plain-HTTP request on a new connection (C{connect()} returns the
    socket) and return what comes back before the connection ends (or
    5 seconds pass); a reset connection returns what came before it.
    """
    data = b""
    with connect() as s:
        s.settimeout(5)
        try:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
    return data


def unix_request(path: str, context: ssl.SSLContext, method: str, target: str,
                 body: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None,
                 timeout: float = 10.0) -> Tuple[int, Dict[str, str], bytes, Optional[str]]:
    """
    One HTTPS request over the unix socket C{path}, verifying the server as
    C{localhost}: (status, lower-cased headers, body, TLS version).
    """
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    try:
        raw.connect(path)
        tls = context.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise
    conn = http.client.HTTPConnection("localhost", timeout=timeout)
    conn.sock = tls  # http.client uses a socket it is given as it is
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return (response.status, {k.lower(): v for k, v in response.getheaders()}, data,
                tls.version())
    finally:
        conn.close()


class SDKMixin:
    """Runs the official Python SDK client's C{basic} scenario."""

    def sdk(self, bridge: Bridge, env: Dict[str, str]) -> Tuple[int, Any, str]:
        rc, result, stdout, stderr = run_json(
            [sys.executable, PYTHON_CLIENT, "basic", bridge.url], timeout=CLIENT_TIMEOUT,
            env=env)
        return rc, result, stderr

    def assert_sdk_ok(self, bridge: Bridge, env: Dict[str, str]) -> Dict[str, Any]:
        assert bridge.url.startswith("https://"), bridge.url
        rc, result, stderr = self.sdk(bridge, env)
        case: Any = self
        if rc != 0 or not isinstance(result, dict) or not result.get("ok"):
            case.fail(f"the SDK client failed (exit {rc}): {result}\n"
                      f"client stderr:\n{stderr[-3000:]}\n"
                      f"bridge log:\n{bridge.current_log()[-3000:]}")
        case.assertEqual(result["echo"], "hello bridge")
        case.assertTrue(result["session_id"])
        return result

    def assert_sdk_refused(self, bridge: Bridge, env: Dict[str, str]) -> str:
        """The SDK client fails, for a TLS reason; return what it said."""
        rc, result, stderr = self.sdk(bridge, env)
        said = f"{result}\n{stderr}"
        case: Any = self
        case.assertNotEqual(rc, 0, said[-3000:])
        case.assertFalse(isinstance(result, dict) and result.get("ok"), said[-3000:])
        # Refused in the handshake, or (TLS 1.3, where the server checks the
        # client's certificate after the client's handshake is done) by the
        # connection ending before any HTTP answer.
        case.assertRegex(said, r"(?i)ssl|tls|certificate|handshake|alert|ReadError|"
                               r"ConnectError|RemoteProtocolError", said[-3000:])
        return said


# ------------------------------------------------- Twisted's ssl: endpoint ---

@implementer(IPolicyForHTTPS)
class TrustOnly:
    """
    An L{Agent} policy: C{optionsForClientTLS} for the host of the URL,
    trusting one CA only.
    """

    def __init__(self, caPath: str) -> None:
        with open(caPath, "rb") as f:
            self.trustRoot = Certificate.loadPEM(f.read())

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return optionsForClientTLS(hostname.decode("ascii"), trustRoot=self.trustRoot)


class SSLEndpointTests(trial.TestCase, support.BridgeTestCase, SDKMixin):
    """
    C{--port ssl:...}: Twisted's own TLS endpoint, given the key, the
    certificate and (C{extraCertChain=}) the intermediate CA's certificate.
    """

    def setUp(self) -> None:
        self.pki = makePKI(temporary_directory(self))
        self.before = self.client_connections()

    def endpoint(self) -> str:
        chain = writeCertificates(os.path.join(self.pki.directory, "chain.pem"),
                                  self.pki.intermediate.chain)
        return (f"ssl:{{port}}:privateKey={self.pki.serverKey}:"
                f"certKey={self.pki.serverLeafCert}:extraCertChain={chain}:"
                f"interface={{host}}")

    def client_connections(self) -> set[Any]:
        return {s for s in set(reactor.getReaders()) | set(reactor.getWriters())
                if isinstance(s, tcp.Client)}

    @inlineCallbacks
    def settle(self) -> Generator[Deferred[Any], Any, None]:
        """Wait (bounded) for the client connections this test opened to close."""
        for _ in range(500):
            if self.client_connections() <= self.before:
                return
            yield task.deferLater(reactor, 0.01, lambda: None)

    def treq_client(self, caPath: str) -> treq.client.HTTPClient:
        """A treq client trusting C{caPath} only, a new connection per request."""
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        return treq.client.HTTPClient(Agent(reactor, contextFactory=TrustOnly(caPath),
                                            pool=pool))

    @inlineCallbacks
    def test_treq_and_sdk(self) -> Generator[Deferred[Any], Any, None]:
        """
        treq, verifying 127.0.0.1 against the test CA, gets C{/health} and
        initializes a session; a treq client trusting another CA is refused
        the handshake; the SDK client runs its C{basic} scenario.
        """
        bridge = self.start_bridge(DEMO, OPTIONS, endpoint=self.endpoint(),
                                   tls=client_context(self.pki))
        self.addCleanup(self.settle)
        client = self.treq_client(self.pki.caCert)
        response = yield client.get(f"{bridge.base}/health")
        self.assertEqual(response.code, 200)
        health = yield treq.json_content(response)
        self.assertIsInstance(health, dict)

        headers_out: Dict[Any, Any] = dict(JSON_HEADERS)
        response = yield client.post(bridge.url, data=initialize_body(), headers=headers_out)
        body = yield treq.content(response)
        self.assertEqual(response.code, 200, body)
        headers = {k.decode().lower(): v[-1].decode()
                   for k, v in response.headers.getAllRawHeaders()}
        self.assertTrue(headers.get("mcp-session-id"), headers)
        answer = rpc_message(headers, body)
        self.assertEqual(answer["id"], 1)
        self.assertIn("serverInfo", answer["result"])

        other = self.treq_client(self.pki.otherCACert)
        failure = yield self.assertFailure(other.get(f"{bridge.base}/health"),
                                           ResponseNeverReceived)
        self.assertTrue(any(r.check(SSL.Error, VerificationError) for r in failure.reasons),
                        failure.reasons)

        self.assert_sdk_ok(bridge, {"MCPBRIDGE_CLIENT_CAFILE": self.pki.caCert})
        self.assertIn("ssl:", bridge.current_log())

    def test_tls11_refused(self) -> None:
        """
        The C{ssl:} endpoint negotiates TLS 1.2 and newer only: a TLS
        1.1-only client is refused, a TLS 1.2-only one is served.
        """
        bridge = self.start_bridge(DEMO, OPTIONS, endpoint=self.endpoint(),
                                   tls=client_context(self.pki))
        assert_tls11_refused(self, bridge.port, self.pki)


def tls11_context(pki: PKI) -> ssl.SSLContext:
    """
    A client context for TLS 1.1 only, its ciphers opened to security
    level 0 (without which OpenSSL 3 will not offer TLS 1.1 at all).

    @raise trial.SkipTest: The local OpenSSL cannot be set up so.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            context = client_context(pki, minimum=ssl.TLSVersion.TLSv1_1,
                                     maximum=ssl.TLSVersion.TLSv1_1)
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError) as e:
            raise trial.SkipTest(f"the local OpenSSL cannot be set up for TLS 1.1: {e}")
    return context


def assert_tls11_refused(case: Any, port: int, pki: PKI) -> None:
    """
    A TLS 1.1-only client is refused by the server at 127.0.0.1:C{port} with
    a C{protocol_version} alert; a TLS 1.2-only client gets in.
    """
    context = tls11_context(pki)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            result = handshake(port, context)
        except ssl.SSLError as e:
            error = e
        else:
            case.fail(f"a TLS 1.1 client got in: {result}")
    if error.reason in ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE",
                        "UNSUPPORTED_PROTOCOL"):
        raise trial.SkipTest(f"the local OpenSSL refuses to offer TLS 1.1: {error}")
    case.assertEqual(error.reason, "TLSV1_ALERT_PROTOCOL_VERSION", str(error))
    tls12 = client_context(pki, minimum=ssl.TLSVersion.TLSv1_2,
                           maximum=ssl.TLSVersion.TLSv1_2)
    case.assertEqual(handshake(port, tls12)[0], "TLSv1.2")
    status, _, _ = http_request(port, "GET", "/health", tls=tls12)
    case.assertEqual(status, 200)


# ----------------------------------------------- --tls-key and --tls-cert ---

class TLSOptionTests(support.BridgeTestCase, SDKMixin):
    """C{--tls-key}/C{--tls-cert} around plain endpoints."""

    def setUp(self) -> None:
        self.pki = makePKI(temporary_directory(self))
        self.context = client_context(self.pki)
        self.sdk_env = {"MCPBRIDGE_CLIENT_CAFILE": self.pki.caCert}

    def start(self, *options: str, **kw: Any) -> Bridge:
        kw.setdefault("tls", self.context)
        return self.start_bridge(DEMO, [*OPTIONS, *tls_options(self.pki), *options], **kw)

    def test_tcp(self) -> None:
        """
        On a C{tcp:} port the SDK client works over https (verifying the
        chain the bridge sends); a plain-HTTP request to the same port gets
        no 200 (and the bridge serves on).
        """
        bridge = self.start()
        self.assert_sdk_ok(bridge, self.sdk_env)
        answer = plain_http(lambda: socket.create_connection((HOST, bridge.port), timeout=5))
        self.assertFalse(answer.startswith(b"HTTP/1.1 200") or b" 200 " in answer[:20],
                         answer[:200])
        self.assertEqual(bridge.health()["_status"], 200)
        self.assertEqual(handshake(bridge.port, self.context)[1], self.pki.serverSerial)
        self.assertIn("(TLS)", bridge.current_log())

    def test_unix(self) -> None:
        """
        On a C{unix:} socket (given besides a C{tcp:} port): a standard
        library client verifying C{localhost} gets C{/health} and
        initializes a session; plain HTTP on the socket gets no 200.
        """
        path = os.path.join(temporary_directory(self), "bridge.sock")
        bridge = self.start("--port", f"unix:{path}")
        self.assertTrue(os.path.exists(path))
        status, _, body, version = unix_request(path, self.context, "GET", "/health")
        self.assertEqual(status, 200, body)
        self.assertIn(version, ("TLSv1.2", "TLSv1.3"))
        self.assertIsInstance(json.loads(body), dict)
        status, headers, body, _ = unix_request(path, self.context, "POST", "/mcp",
                                                initialize_body(), JSON_HEADERS)
        self.assertEqual(status, 200, body)
        self.assertTrue(headers.get("mcp-session-id"), headers)
        answer = rpc_message(headers, body)
        self.assertEqual(answer["id"], 1)
        self.assertIn("serverInfo", answer["result"])

        def connect() -> socket.socket:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(path)
            return s

        answer_bytes = plain_http(connect)
        self.assertFalse(answer_bytes.startswith(b"HTTP/1.1 200"), answer_bytes[:200])
        # A client that trusts another CA is refused on the socket too.
        with self.assertRaises(ssl.SSLCertVerificationError):
            unix_request(path, ssl.create_default_context(cafile=self.pki.otherCACert),
                         "GET", "/health")

    def test_systemd(self) -> None:
        """
        A socket inherited by systemd socket activation (fd 3, LISTEN_FDS=1,
        LISTEN_FDNAMES, LISTEN_PID the bridge's pid), given as C{systemd:domain=INET:index=0}:
        it serves TLS with the chain, and plain HTTP on it gets no 200.
        """
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind((HOST, 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        bridge = SocketActivatedBridge(
            listener.fileno(), DEMO,
            [*OPTIONS, *tls_options(self.pki), "--port", "systemd:domain=INET:index=0"],
            env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "mcpbridge"}, tls=self.context).start()
        self.addCleanup(self._stop, bridge, True)
        listener.close()  # only the bridge has it now
        version, serial = handshake(port, self.context)
        self.assertEqual(serial, self.pki.serverSerial)
        status, _, body = http_request(port, "GET", "/health", tls=self.context)
        self.assertEqual(status, 200, body)
        status, headers, body = http_request(port, "POST", "/mcp", initialize_body(),
                                             JSON_HEADERS, tls=self.context)
        self.assertEqual(status, 200, body)
        self.assertIn("serverInfo", rpc_message(headers, body)["result"])
        answer = plain_http(lambda: socket.create_connection((HOST, port), timeout=5))
        self.assertFalse(answer.startswith(b"HTTP/1.1 200"), answer[:200])
        self.assertIn("systemd:domain=INET:index=0", bridge.current_log())

    def test_mutual_tls(self) -> None:
        """
        With C{--tls-client-ca}: the SDK client with the right client
        certificate works; without a client certificate, or with one from
        another CA, it fails and never reaches the bridge (one session only
        is started, the right client's).
        """
        bridge = self.start(
            "--tls-client-ca", self.pki.clientCACert,
            tls=client_context(self.pki, self.pki.clientCert, self.pki.clientKey))
        right = {**self.sdk_env, "MCPBRIDGE_CLIENT_CERT": self.pki.clientCert,
                 "MCPBRIDGE_CLIENT_KEY": self.pki.clientKey}
        other = {**self.sdk_env, "MCPBRIDGE_CLIENT_CERT": self.pki.otherCAClientCert,
                 "MCPBRIDGE_CLIENT_KEY": self.pki.otherCAClientKey}
        # All three at once, for time.
        with ThreadPoolExecutor(3) as pool:
            runs: List[Future[Any]] = [
                pool.submit(self.assert_sdk_ok, bridge, right),
                pool.submit(self.assert_sdk_refused, bridge, self.sdk_env),
                pool.submit(self.assert_sdk_refused, bridge, other)]
            for run in runs:
                run.result()
        sessions = [line for line in bridge.current_log().splitlines()
                    if "mcpbridge.sessions" in line and " started (protocol" in line]
        self.assertEqual(len(sessions), 1, bridge.current_log()[-3000:])
        self.assertEqual(bridge.health()["_status"], 200)

    def test_sighup_reload(self) -> None:
        """
        SIGHUP reads the certificate files again: new connections see the
        new certificate; a broken certificate file is rejected (the log says
        so, naming it) and the previous certificate is still served.
        """
        bridge = self.start()
        self.assertEqual(served_serial(bridge.port, self.context), self.pki.serverSerial)
        key, certificate = self.pki.intermediate.issue(
            "localhost", dnsNames=["localhost"], ipAddresses=["127.0.0.1"])
        self.assertNotEqual(certificate.serial_number, self.pki.serverSerial)
        writeKey(self.pki.serverKey, key)
        writeCertificates(self.pki.serverCert, [certificate, *self.pki.intermediate.chain])
        # Nothing is read before the signal.
        self.assertEqual(served_serial(bridge.port, self.context), self.pki.serverSerial)

        os.kill(bridge.pid, signal.SIGHUP)
        new = certificate.serial_number
        self.assertTrue(wait_until(lambda: served_serial(bridge.port, self.context) == new,
                                   10), bridge.current_log()[-3000:])
        self.assertTrue(wait_until(lambda: "config reloaded" in bridge.current_log(), 10),
                        bridge.current_log()[-3000:])
        self.assertEqual(bridge.health()["_status"], 200)

        with open(self.pki.serverCert, "wb") as f:
            f.write(b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
                    b"-----END CERTIFICATE-----\n")
        os.kill(bridge.pid, signal.SIGHUP)

        def rejected() -> List[str]:
            return [line for line in bridge.current_log().splitlines()
                    if "reload rejected" in line and self.pki.serverCert in line]

        self.assertTrue(wait_until(rejected, 10), bridge.current_log()[-3000:])
        self.assertEqual(served_serial(bridge.port, self.context), new)
        self.assertEqual(bridge.health()["_status"], 200)

    def test_tls11_refused(self) -> None:
        """
        A TLS 1.1-only client is refused with a C{protocol_version} alert;
        a TLS 1.2-only client is served.
        """
        bridge = self.start()
        assert_tls11_refused(self, bridge.port, self.pki)


#: Runs in the bridge's process before twistd: moves the inherited socket
#: to fd 3 and sets LISTEN_PID to its own pid, which exec keeps.
_ACTIVATE = """\
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


class SocketActivatedBridge(Bridge):
    """
    A bridge given the listening socket C{fd} as systemd would (fd 3,
    LISTEN_PID); the environment must say LISTEN_FDS=1 and LISTEN_FDNAMES
    (systemd 227 and newer always set both; Twisted ignores LISTEN_FDS
    without LISTEN_FDNAMES).
    """

    def __init__(self, fd: int, *args: Any, **kw: Any) -> None:
        kw["pass_fds"] = (fd,)
        super().__init__(*args, **kw)
        self.fd = fd

    def argv(self) -> List[str]:
        return [sys.executable, "-c", _ACTIVATE, str(self.fd), *super().argv()]


# ------------------------------------------------------- startup errors ---

def run_all(cases: Sequence[Sequence[str]],
            timeout: float = 30.0) -> List[Tuple[int, str, str]]:
    """
    Run C{twistd -n mcpbridge} with each list of arguments, all at once,
    until each exits (it is expected to); a process still running at
    C{timeout} is killed (that pid only) and reported with status None.

    @return: (exit status, stdout, stderr) of each.
    """
    procs = []
    for args in cases:
        procs.append(subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "mcpbridge",
             "--port", f"tcp:{free_port()}:interface={HOST}", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=child_env(), cwd=tempfile.gettempdir()))
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
            status: Any = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            status = None
        results.append((status, out.decode("utf-8", "replace"),
                        err.decode("utf-8", "replace")))
    return results


class StartupErrorTests(support.BridgeTestCase):
    def setUp(self) -> None:
        self.pki = makePKI(temporary_directory(self))

    def test_bad_files(self) -> None:
        """
        A missing key file, a key that does not match the certificate, or an
        encrypted key: exit status 2 and exactly one line on stderr, starting
        C{mcpbridge:}, naming the file.
        """
        pki = self.pki
        missing = os.path.join(pki.directory, "missing.key")
        cases = [
            (["--tls-key", missing, "--tls-cert", pki.serverCert],
             [missing, "cannot read it"]),
            (["--tls-key", pki.mismatchedKey, "--tls-cert", pki.serverCert],
             [pki.mismatchedKey, pki.serverCert, "does not match"]),
            (["--tls-key", pki.encryptedKey, "--tls-cert", pki.serverCert],
             [pki.encryptedKey, "encrypted"]),
        ]
        results = run_all([[*args, "--", *DEMO] for args, _ in cases])
        for (args, expected), (status, out, err) in zip(cases, results):
            said = f"{args}: exit {status}\nstdout:\n{out}\nstderr:\n{err}"
            self.assertEqual(status, 2, said)
            lines = err.strip().splitlines()
            self.assertEqual(len(lines), 1, said)
            self.assertTrue(lines[0].startswith("mcpbridge: "), said)
            for text in expected:
                self.assertIn(text, lines[0], said)
            self.assertNotIn("Traceback", out + err, said)

    def test_usage_errors(self) -> None:
        """
        Options that do not go together are usage errors (twistd's exit
        status, not 0): a key without a certificate, a client CA alone, an C{ssl:} port with C{--tls-key}, and an C{ssl:}
        port asking for TLS 1.0 (C{method=}, or Twisted's C{sslmethod=}).
        """
        pki = self.pki
        ssl_port = (f"ssl:{free_port()}:privateKey={pki.serverKey}:"
                    f"certKey={pki.serverLeafCert}:interface={HOST}")
        cases = [
            (["--tls-key", pki.serverKey], "--tls-key and --tls-cert go together"),
            (["--tls-client-ca", pki.clientCACert], "--tls-client-ca needs --tls-key"),
            (["--port", ssl_port, *tls_options(pki)], "has TLS of its own"),
            (["--port", f"{ssl_port}:method=TLSv1_METHOD"], "method=TLSv1_METHOD"),
            (["--port", f"{ssl_port}:sslmethod=TLSv1_METHOD"],
             "sslmethod=TLSv1_METHOD is refused"),
        ]
        results = run_all([[*args, "--", *DEMO] for args, _ in cases])
        for (args, expected), (status, out, err) in zip(cases, results):
            said = f"{args}: exit {status}\nstdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}"
            self.assertIsNotNone(status, said)
            self.assertNotEqual(status, 0, said)
            self.assertIn(expected, out + err, said)
            self.assertNotIn("Traceback", out + err, said)
