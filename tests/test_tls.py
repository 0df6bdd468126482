"""
Tests of L{mcpbridge.tls}: real TLS handshakes over loopback TCP between a
twisted.web site wrapped by L{ServerTLS} and real clients (treq, and the
standard library's C{ssl} in a thread), for server verification, the
certificate chain, TLS versions, mutual TLS and reloading; and the one-line
L{TLSError} messages for every kind of unusable file.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import ssl
import tempfile
import warnings
from typing import Any, Generator, Optional

import treq
from OpenSSL import SSL
from service_identity import VerificationError
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from twisted.internet import reactor, task, tcp, threads
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, ResponseNeverReceived
from twisted.web.iweb import IPolicyForHTTPS
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mcpbridge.tls import MAX_FILE_SIZE, ServerTLS, TLSError

from .tlsutil import PASSWORD, PKI, makeKey, makePKI, writeCertificates, writeKey

_pki: Optional[PKI] = None


def pki() -> PKI:
    """
    The PKI shared by every test here, made once (into a temporary
    directory removed at exit).  Tests that change files use copies.
    """
    global _pki
    if _pki is None:
        directory = tempfile.mkdtemp(prefix="mcpbridge-tls-")
        atexit.register(shutil.rmtree, directory, True)
        _pki = makePKI(directory)
    return _pki


def temporaryDirectory(case: SynchronousTestCase) -> str:
    """
    A new directory, removed after C{case}.  (Unlike C{mktemp}, which under
    pytest makes directories in the working directory.)
    """
    directory = tempfile.mkdtemp(prefix="mcpbridge-tls-")
    case.addCleanup(shutil.rmtree, directory, True)
    return directory


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


def copy(path: str, directory: str, name: str) -> str:
    return write(os.path.join(directory, name), read(path))


class Hello(Resource):
    """
    Answers C{GET} with whether the request came over TLS and the common
    name of the client's certificate, if any.
    """

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        peer = None
        transport = request.channel.transport
        if hasattr(transport, "getPeerCertificate"):
            certificate = transport.getPeerCertificate()
            if certificate is not None:
                peer = certificate.to_cryptography().subject.rfc4514_string()
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"secure": bool(request.isSecure()), "client": peer}).encode()


@implementer(IPolicyForHTTPS)
class TrustOnly:
    """
    A policy for L{Agent} that trusts one CA only, checks the server's
    certificate against C{hostname} (whatever the URL says) and may present
    a client certificate.
    """

    def __init__(self, caPath: str, hostname: str = "localhost",
                 clientKey: Optional[str] = None, clientCert: Optional[str] = None) -> None:
        self.trustRoot = Certificate.loadPEM(read(caPath))
        self.hostname = hostname
        # The client certificate goes to the context as cryptography's
        # objects (pyOpenSSL's, which PrivateCertificate would pass, are
        # deprecated there); CertificateOptions only hands them on.
        self.clientCertificate: dict[str, Any] = (
            {"privateKey": serialization.load_pem_private_key(read(clientKey), None),
             "certificate": x509.load_pem_x509_certificate(read(clientCert))}
            if clientKey and clientCert else {})

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return optionsForClientTLS(self.hostname, trustRoot=self.trustRoot,
                                   extraCertificateOptions=self.clientCertificate)


def stdlibContext(caPath: str, clientKey: Optional[str] = None,
                  clientCert: Optional[str] = None,
                  minimum: Optional[ssl.TLSVersion] = None,
                  maximum: Optional[ssl.TLSVersion] = None) -> ssl.SSLContext:
    """
    A standard library client context that trusts C{caPath} only, with
    strict X.509 checks where Python offers them.
    """
    context = ssl.create_default_context(cafile=caPath)
    context.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
    if clientKey and clientCert:
        context.load_cert_chain(clientCert, clientKey)
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    return context


class StdlibClient:
    """
    A blocking HTTP/1.1 client on one TLS connection (kept open between
    requests), using the standard library; call it from a thread.
    """

    def __init__(self, port: int, context: ssl.SSLContext,
                 hostname: str = "localhost") -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            self.socket = context.wrap_socket(raw, server_hostname=hostname)
        except BaseException:
            raw.close()
            raise
        self.buffer = b""

    @property
    def version(self) -> Optional[str]:
        return self.socket.version()

    @property
    def peerSerial(self) -> int:
        der = self.socket.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    def get(self) -> tuple[int, dict[str, Any]]:
        """
        C{GET /}; return the status and the JSON body.
        """
        self.socket.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self._receive()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), json.loads(body)

    def _receive(self) -> None:
        data = self.socket.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    def close(self) -> None:
        self.socket.close()


def stdlibGet(port: int, context: ssl.SSLContext,
              hostname: str = "localhost") -> tuple[Optional[str], int, dict[str, Any], int]:
    """
    One request on a new connection: (TLS version, status, body, serial
    number of the server's certificate).
    """
    client = StdlibClient(port, context, hostname)
    try:
        status, body = client.get()
        return client.version, status, body, client.peerSerial
    finally:
        client.close()


class LoopbackTestCase(TestCase):
    """
    Serves L{Hello} over TLS on 127.0.0.1 and leaves the reactor as clean
    as it found it.
    """

    def setUp(self) -> None:
        self.pki = pki()
        self.before = self.connections()

    def serve(self, serverTLS: ServerTLS) -> int:
        """
        Listen with C{serverTLS} around a L{Hello} site; return the port.
        """
        factory = serverTLS.wrap(Site(Hello()))
        # listenTCP is annotated as taking a ServerFactory; any factory works.
        port: Any = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[arg-type]
        self.addCleanup(self.settle, port, factory)
        return port.getHost().port

    @inlineCallbacks
    def settle(self, port: Any, factory: Any) -> Generator[Deferred[Any], Any, None]:
        """
        Stop listening, drop any connection still open, and wait for every
        socket this test opened to be gone.
        """
        yield port.stopListening()
        for protocol in list(factory.protocols):
            protocol.transport.abortConnection()
        for _ in range(500):
            if self.connections() <= self.before:
                return
            yield task.deferLater(reactor, 0.01, lambda: None)

    def connections(self) -> set[Any]:
        """
        The TCP connections in the reactor.
        """
        return {s for s in set(reactor.getReaders()) | set(reactor.getWriters())
                if isinstance(s, tcp.Connection)}

    def agent(self, caPath: Optional[str] = None, **policy: Any) -> treq.client.HTTPClient:
        """
        A treq client that trusts C{caPath} (by default the test CA) and
        opens a new connection for each request.
        """
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        contextFactory = TrustOnly(caPath or self.pki.caCert, **policy)
        return treq.client.HTTPClient(Agent(reactor, contextFactory=contextFactory,
                                            pool=pool))

    @inlineCallbacks
    def treqGet(self, client: treq.client.HTTPClient,
                port: int) -> Generator[Deferred[Any], Any, tuple[int, dict[str, Any]]]:
        response = yield client.get(f"https://127.0.0.1:{port}/")
        body = yield treq.json_content(response)
        return response.code, body

    def inThread(self, f: Any, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return threads.deferToThread(f, *args, **kwargs)

    @inlineCallbacks
    def assertRefused(self, d: Deferred[Any]) -> Generator[Deferred[Any], Any, Any]:
        """
        C{d}, a treq request, fails with a TLS error; return it.
        """
        failure = yield self.assertFailure(d, ResponseNeverReceived)
        self.assertTrue(any(r.check(SSL.Error, VerificationError)
                            for r in failure.reasons), failure.reasons)
        return failure


class VerificationTests(LoopbackTestCase):
    """
    Clients verify the server's certificate and its chain.
    """

    def setUp(self) -> None:
        super().setUp()
        self.tls = ServerTLS(self.pki.serverKey, self.pki.serverCert)
        self.port = self.serve(self.tls)

    @inlineCallbacks
    def test_treq(self) -> Generator[Deferred[Any], Any, None]:
        """
        treq, trusting only the test CA and checking the name C{localhost},
        gets a 200 over TLS; the application sees a secure request and no
        client certificate.
        """
        code, body = yield self.treqGet(self.agent(), self.port)
        self.assertEqual(code, 200)
        self.assertEqual(body, {"secure": True, "client": None})

    @inlineCallbacks
    def test_ipAddress(self) -> Generator[Deferred[Any], Any, None]:
        """
        The certificate is valid for the address C{127.0.0.1} too.
        """
        code, _ = yield self.treqGet(self.agent(hostname="127.0.0.1"), self.port)
        self.assertEqual(code, 200)

    @inlineCallbacks
    def test_wrongName(self) -> Generator[Deferred[Any], Any, None]:
        """
        A client checking another name refuses the certificate.
        """
        yield self.assertRefused(self.treqGet(self.agent(hostname="example.com"), self.port))

    @inlineCallbacks
    def test_stdlibChain(self) -> Generator[Deferred[Any], Any, None]:
        """
        The standard library client, trusting only the root CA, verifies the
        chain: the intermediate CA comes from the certificate file.
        """
        version, status, body, serial = yield self.inThread(
            stdlibGet, self.port, stdlibContext(self.pki.caCert))
        self.assertEqual((status, body["secure"]), (200, True))
        self.assertEqual(serial, self.pki.serverSerial)
        self.assertEqual(len(self.tls.chain), 1)

    @inlineCallbacks
    def test_leafOnly(self) -> Generator[Deferred[Any], Any, None]:
        """
        Served without its intermediate, the same certificate fails the
        same client's verification: the chain is what made it pass.
        """
        port = self.serve(ServerTLS(self.pki.serverKey, self.pki.serverLeafCert))
        e = yield self.assertFailure(
            self.inThread(stdlibGet, port, stdlibContext(self.pki.caCert)),
            ssl.SSLCertVerificationError)
        self.assertIn("unable to get local issuer certificate", str(e))

    @inlineCallbacks
    def test_otherCATreq(self) -> Generator[Deferred[Any], Any, None]:
        """
        treq trusting another CA refuses the server.
        """
        yield self.assertRefused(self.treqGet(self.agent(self.pki.otherCACert), self.port))

    @inlineCallbacks
    def test_otherCAStdlib(self) -> Generator[Deferred[Any], Any, None]:
        """
        The standard library client trusting another CA refuses the server.
        """
        yield self.assertFailure(
            self.inThread(stdlibGet, self.port, stdlibContext(self.pki.otherCACert)),
            ssl.SSLCertVerificationError)


class VersionTests(LoopbackTestCase):
    """
    Only TLS 1.2 and newer are negotiated.
    """

    def setUp(self) -> None:
        super().setUp()
        self.port = self.serve(ServerTLS(self.pki.serverKey, self.pki.serverCert))

    @inlineCallbacks
    def test_tls12(self) -> Generator[Deferred[Any], Any, None]:
        """
        A TLS 1.2-only client connects.
        """
        context = stdlibContext(self.pki.caCert, minimum=ssl.TLSVersion.TLSv1_2,
                                maximum=ssl.TLSVersion.TLSv1_2)
        version, status, _, _ = yield self.inThread(stdlibGet, self.port, context)
        self.assertEqual((version, status), ("TLSv1.2", 200))

    @inlineCallbacks
    def test_tls13(self) -> Generator[Deferred[Any], Any, None]:
        """
        A TLS 1.3-only client connects.
        """
        if not ssl.HAS_TLSv1_3:
            raise SkipTest("the local OpenSSL has no TLS 1.3")
        context = stdlibContext(self.pki.caCert, minimum=ssl.TLSVersion.TLSv1_3)
        version, status, _, _ = yield self.inThread(stdlibGet, self.port, context)
        self.assertEqual((version, status), ("TLSv1.3", 200))

    @inlineCallbacks
    def test_tls11(self) -> Generator[Deferred[Any], Any, None]:
        """
        A TLS 1.1-only client is refused by the server (a C{protocol_version}
        alert).  Its ciphers are opened to security level 0, without which
        OpenSSL 3 will not even offer TLS 1.1.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context = stdlibContext(self.pki.caCert, minimum=ssl.TLSVersion.TLSv1_1,
                                    maximum=ssl.TLSVersion.TLSv1_1)
        try:
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        except ssl.SSLError as e:
            raise SkipTest(f"the local OpenSSL cannot be set up for TLS 1.1: {e}")
        error = yield self.assertFailure(self.inThread(stdlibGet, self.port, context),
                                         ssl.SSLError)
        if error.reason in ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE"):
            raise SkipTest(f"the local OpenSSL refuses to offer TLS 1.1: {error}")
        self.assertEqual(error.reason, "TLSV1_ALERT_PROTOCOL_VERSION", str(error))


class MutualTLSTests(LoopbackTestCase):
    """
    With client CAs, a client must present a certificate signed by one.
    """

    def setUp(self) -> None:
        super().setUp()
        self.tls = ServerTLS(self.pki.serverKey, self.pki.serverCert, self.pki.clientCACert)
        self.port = self.serve(self.tls)

    @inlineCallbacks
    def test_noCertificate(self) -> Generator[Deferred[Any], Any, None]:
        """
        A client without a certificate is refused.
        """
        yield self.assertRefused(self.treqGet(self.agent(), self.port))

    @inlineCallbacks
    def test_noCertificateTLS12(self) -> Generator[Deferred[Any], Any, None]:
        """
        A TLS 1.2 client without a certificate fails in the handshake
        itself.
        """
        context = stdlibContext(self.pki.caCert, maximum=ssl.TLSVersion.TLSv1_2)
        e = yield self.assertFailure(self.inThread(stdlibGet, self.port, context),
                                     ssl.SSLError)
        self.assertEqual(e.reason, "SSLV3_ALERT_HANDSHAKE_FAILURE", str(e))

    @inlineCallbacks
    def test_otherCA(self) -> Generator[Deferred[Any], Any, None]:
        """
        A client whose certificate another CA signed is refused.
        """
        client = self.agent(clientKey=self.pki.otherCAClientKey,
                            clientCert=self.pki.otherCAClientCert)
        yield self.assertRefused(self.treqGet(client, self.port))
        context = stdlibContext(self.pki.caCert, self.pki.otherCAClientKey,
                                self.pki.otherCAClientCert)
        e = yield self.assertFailure(self.inThread(stdlibGet, self.port, context),
                                     ssl.SSLError)
        self.assertEqual(e.reason, "TLSV1_ALERT_UNKNOWN_CA", str(e))

    @inlineCallbacks
    def test_rightCertificate(self) -> Generator[Deferred[Any], Any, None]:
        """
        A client with a certificate from the client CA gets a 200, and the
        application sees who it is.
        """
        client = self.agent(clientKey=self.pki.clientKey, clientCert=self.pki.clientCert)
        code, body = yield self.treqGet(client, self.port)
        self.assertEqual(code, 200)
        self.assertEqual(body["client"], "CN=client,O=mcpbridge tests")
        context = stdlibContext(self.pki.caCert, self.pki.clientKey, self.pki.clientCert)
        _, status, _, _ = yield self.inThread(stdlibGet, self.port, context)
        self.assertEqual(status, 200)

    def test_clientCANames(self) -> None:
        """
        The server tells clients which CAs it accepts.
        """
        connection = self.tls.serverConnectionForTLS(None)  # type: ignore[arg-type]
        names = [n.get_components() for n in connection.get_client_ca_list()]
        self.assertEqual(names, [[(b"O", b"mcpbridge tests"), (b"CN", b"Test Client CA")]])
        self.assertTrue(self.tls.mutual)


class ReloadTests(LoopbackTestCase):
    """
    L{ServerTLS.reload} serves new files to new connections, leaves open
    connections alone, and keeps the old files when the new ones are bad.
    """

    def setUp(self) -> None:
        super().setUp()
        self.directory = temporaryDirectory(self)
        self.keyPath = copy(self.pki.serverKey, self.directory, "key.pem")
        self.certPath = copy(self.pki.serverCert, self.directory, "cert.pem")
        self.tls = ServerTLS(self.keyPath, self.certPath)
        self.port = self.serve(self.tls)

    def replace(self, commonName: str = "localhost (renewed)") -> int:
        """
        Put a new key and certificate (same names, same issuer) in place of
        the files; return its serial number.
        """
        key, certificate = self.pki.intermediate.issue(
            commonName, dnsNames=["localhost"], ipAddresses=["127.0.0.1"])
        writeKey(self.keyPath, key)
        writeCertificates(self.certPath, [certificate] + self.pki.intermediate.chain)
        return certificate.serial_number

    @inlineCallbacks
    def test_newConnectionsOnly(self) -> Generator[Deferred[Any], Any, None]:
        """
        After a reload a new connection gets the new certificate, and a
        connection opened before it keeps the old one and keeps working.
        """
        context = stdlibContext(self.pki.caCert)
        old = yield self.inThread(StdlibClient, self.port, context)
        self.addCleanup(old.close)
        status, _ = yield self.inThread(old.get)
        self.assertEqual(status, 200)

        serial = self.replace()
        self.assertEqual(self.tls.serialNumber, self.pki.serverSerial)
        self.tls.reload()
        self.assertEqual(self.tls.serialNumber, serial)
        self.assertIn("CN=localhost (renewed)", self.tls.subject)

        _, status, _, newSerial = yield self.inThread(stdlibGet, self.port, context)
        self.assertEqual((status, newSerial), (200, serial))
        code, _ = yield self.treqGet(self.agent(), self.port)
        self.assertEqual(code, 200)

        status, _ = yield self.inThread(old.get)
        self.assertEqual(status, 200)
        self.assertEqual(old.peerSerial, self.pki.serverSerial)

    @inlineCallbacks
    def test_badReloadKeepsOld(self) -> Generator[Deferred[Any], Any, None]:
        """
        A reload that finds a broken certificate, or a key that no longer
        matches it (a rotation half done), raises L{TLSError} and the old
        certificate is still served.
        """
        goodCert = read(self.certPath)
        write(self.certPath, b"-----BEGIN CERTIFICATE-----\nnot base64\n"
                             b"-----END CERTIFICATE-----\n")
        e = self.assertRaises(TLSError, self.tls.reload)
        self.assertIn(f"--tls-cert {self.certPath}: certificate 1 in it cannot be parsed",
                      str(e))
        write(self.certPath, goodCert)
        writeKey(self.keyPath, makeKey())
        e = self.assertRaises(TLSError, self.tls.reload)
        self.assertEqual(str(e), f"--tls-key {self.keyPath} does not match the "
                                 f"certificate in --tls-cert {self.certPath}")

        self.assertEqual(self.tls.serialNumber, self.pki.serverSerial)
        _, status, _, serial = yield self.inThread(
            stdlibGet, self.port, stdlibContext(self.pki.caCert))
        self.assertEqual((status, serial), (200, self.pki.serverSerial))

    @inlineCallbacks
    def test_clientCA(self) -> Generator[Deferred[Any], Any, None]:
        """
        A reload reads the client CA file again: a CA added to it is
        accepted from then on.
        """
        clientCAPath = copy(self.pki.clientCACert, self.directory, "client-ca.pem")
        tls = ServerTLS(self.keyPath, self.certPath, clientCAPath)
        port = self.serve(tls)
        client = self.agent(clientKey=self.pki.otherCAClientKey,
                            clientCert=self.pki.otherCAClientCert)
        yield self.assertRefused(self.treqGet(client, port))

        write(clientCAPath, read(self.pki.clientCACert) + read(self.pki.otherCACert))
        tls.reload()
        self.assertEqual(len(tls.clientCAs), 2)
        code, body = yield self.treqGet(client, port)
        self.assertEqual(code, 200)
        self.assertEqual(body["client"], "CN=other client,O=mcpbridge tests")


class ErrorTests(SynchronousTestCase):
    """
    Every unusable file is a L{TLSError} whose text is one line naming the
    option, the file and the problem.
    """

    def setUp(self) -> None:
        self.pki = pki()
        self.directory = temporaryDirectory(self)

    def path(self, name: str, data: Optional[bytes] = None) -> str:
        path = os.path.join(self.directory, name)
        if data is not None:
            write(path, data)
        return path

    def error(self, keyPath: Optional[str] = None, certPath: Optional[str] = None,
              clientCAPath: Optional[str] = None) -> str:
        """
        The message of the L{TLSError} that L{ServerTLS} raises for these
        files (the good ones by default).
        """
        e = self.assertRaises(TLSError, ServerTLS, keyPath or self.pki.serverKey,
                              certPath or self.pki.serverCert, clientCAPath)
        message = str(e)
        self.assertNotIn("\n", message)
        self.assertNotIn("Traceback", message)
        return message

    def test_missingKey(self) -> None:
        """
        A key file that does not exist.
        """
        path = self.path("nowhere.pem")
        self.assertEqual(self.error(keyPath=path),
                         f"--tls-key {path}: cannot read it: "
                         f"[Errno 2] No such file or directory")

    def test_keyIsDirectory(self) -> None:
        """
        A directory given as the key file.
        """
        self.assertEqual(self.error(keyPath=self.directory),
                         f"--tls-key {self.directory}: cannot read it: "
                         f"[Errno 21] Is a directory")

    def test_unreadableKey(self) -> None:
        """
        A key file that may not be read.
        """
        if os.geteuid() == 0:
            raise SkipTest("root can read a file with mode 000")
        path = copy(self.pki.serverKey, self.directory, "key.pem")
        os.chmod(path, 0)
        self.assertEqual(self.error(keyPath=path),
                         f"--tls-key {path}: cannot read it: [Errno 13] Permission denied")

    def test_notPEMKey(self) -> None:
        """
        A key file with no PEM in it, or only a certificate.
        """
        path = self.path("key.der", b"\x30\x82\x01\x00 not PEM")
        self.assertEqual(self.error(keyPath=path), f"--tls-key {path}: no PEM private key in it")
        self.assertEqual(self.error(keyPath=self.pki.serverCert),
                         f"--tls-key {self.pki.serverCert}: no PEM private key in it")

    def test_garbageKey(self) -> None:
        """
        A PEM private key block that does not hold a key.
        """
        path = self.path("key.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                    b"-----END PRIVATE KEY-----\n")
        self.assertTrue(self.error(keyPath=path).startswith(
            f"--tls-key {path}: cannot parse its private key: "))

    def test_twoKeys(self) -> None:
        """
        A key file with two keys in it.
        """
        path = self.path("keys.pem", read(self.pki.serverKey) + read(self.pki.mismatchedKey))
        self.assertEqual(self.error(keyPath=path),
                         f"--tls-key {path}: 2 private keys in it; give exactly one")

    def test_encryptedKey(self) -> None:
        """
        Encrypted keys, PKCS#8 or traditional OpenSSL, are refused.
        """
        path = self.pki.encryptedKey
        self.assertEqual(self.error(keyPath=path),
                         f"--tls-key {path}: encrypted private keys are not supported")
        key = serialization.load_pem_private_key(read(self.pki.serverKey), None)
        traditional = self.path("traditional.pem", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(PASSWORD)))
        self.assertEqual(self.error(keyPath=traditional),
                         f"--tls-key {traditional}: encrypted private keys are not supported")

    def test_keyCannotSign(self) -> None:
        """
        A key of a kind that cannot sign (X25519).
        """
        path = self.path("x25519.pem", x25519.X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        self.assertEqual(self.error(keyPath=path),
                         f"--tls-key {path}: a X25519PrivateKey cannot sign for TLS; "
                         f"use an RSA, EC or Ed25519 key")

    def test_emptyCert(self) -> None:
        """
        An empty certificate file.
        """
        path = self.path("empty.pem", b"")
        self.assertEqual(self.error(certPath=path),
                         f"--tls-cert {path}: no PEM certificate in it")

    def test_missingCert(self) -> None:
        """
        A certificate file that does not exist.
        """
        path = self.path("nowhere.pem")
        self.assertEqual(self.error(certPath=path),
                         f"--tls-cert {path}: cannot read it: "
                         f"[Errno 2] No such file or directory")

    def test_garbageCert(self) -> None:
        """
        A PEM certificate block that does not hold a certificate; the
        message says which one in the file.
        """
        path = self.path("cert.pem", read(self.pki.serverLeafCert)
                         + b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        self.assertTrue(self.error(certPath=path).startswith(
            f"--tls-cert {path}: certificate 2 in it cannot be parsed: "))

    def test_tooLarge(self) -> None:
        """
        A file far larger than any PEM file (a wrong path, say) is not read
        whole.
        """
        path = self.path("big", b"A" * (MAX_FILE_SIZE + 1))
        self.assertEqual(self.error(certPath=path),
                         f"--tls-cert {path}: larger than 1024 KiB, not a PEM file")

    def test_mismatch(self) -> None:
        """
        A key that is not the certificate's.
        """
        key = self.pki.mismatchedKey
        self.assertEqual(self.error(keyPath=key),
                         f"--tls-key {key} does not match the certificate in "
                         f"--tls-cert {self.pki.serverCert}")

    def test_chainOrder(self) -> None:
        """
        A certificate file with the chain before the leaf.
        """
        leaf, intermediate = x509.load_pem_x509_certificates(read(self.pki.serverCert))
        path = writeCertificates(self.path("reversed.pem"), [intermediate, leaf])
        self.assertEqual(self.error(certPath=path),
                         f"--tls-cert {path}: the certificate of --tls-key "
                         f"{self.pki.serverKey} must come first in it, before the chain")

    def test_missingClientCA(self) -> None:
        """
        A client CA file that does not exist.
        """
        path = self.path("nowhere.pem")
        self.assertEqual(self.error(clientCAPath=path),
                         f"--tls-client-ca {path}: cannot read it: "
                         f"[Errno 2] No such file or directory")

    def test_emptyClientCA(self) -> None:
        """
        A client CA file with no certificate in it.
        """
        path = self.path("ca.pem", read(self.pki.clientKey))
        self.assertEqual(self.error(clientCAPath=path),
                         f"--tls-client-ca {path}: no PEM certificate in it")


class ServerTLSTests(SynchronousTestCase):
    """
    What L{ServerTLS} provides besides connections.
    """

    def setUp(self) -> None:
        self.pki = pki()

    def test_interface(self) -> None:
        """
        It is an L{IOpenSSLServerConnectionCreator}, and C{wrap} puts a
        server-side L{TLSMemoryBIOFactory} around a factory.
        """
        tls = ServerTLS(self.pki.serverKey, self.pki.serverCert)
        self.assertTrue(verifyObject(IOpenSSLServerConnectionCreator, tls))
        site = Site(Hello())
        wrapped = tls.wrap(site)
        self.assertIsInstance(wrapped, TLSMemoryBIOFactory)
        self.assertIs(wrapped.wrappedFactory, site)

    def test_combinedFile(self) -> None:
        """
        The key and the certificates may be in one file, in any order.
        """
        directory = temporaryDirectory(self)
        path = write(os.path.join(directory, "both.pem"),
                     read(self.pki.serverCert) + read(self.pki.serverKey))
        tls = ServerTLS(path, path)
        self.assertEqual(tls.serialNumber, self.pki.serverSerial)
        self.assertEqual(len(tls.chain), 1)

    def test_status(self) -> None:
        """
        C{status()} is JSON-ready and C{describe()} one line; both say what
        is served.
        """
        tls = ServerTLS(self.pki.serverKey, self.pki.serverCert, self.pki.clientCACert)
        self.assertEqual(tls.subject, "CN=localhost,O=mcpbridge tests")
        self.assertEqual(tls.issuer, "CN=Test Intermediate CA,O=mcpbridge tests")
        self.assertEqual(tls.names, ["localhost", "127.0.0.1"])
        self.assertIsNotNone(tls.notAfter.tzinfo)
        self.assertLess(tls.notBefore, tls.notAfter)
        status = json.loads(json.dumps(tls.status()))
        self.assertEqual(status["serialNumber"], format(self.pki.serverSerial, "x"))
        self.assertEqual(status["clientCAs"], ["CN=Test Client CA,O=mcpbridge tests"])
        self.assertEqual(status["chainLength"], 1)
        self.assertEqual(status["certificate"], self.pki.serverCert)
        description = tls.describe()
        self.assertNotIn("\n", description)
        self.assertIn("client certificates required, from 1 CA in", description)
        self.assertFalse(ServerTLS(self.pki.serverKey, self.pki.serverCert).mutual)
