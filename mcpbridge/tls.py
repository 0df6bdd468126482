"""
TLS on every listening port: C{--tls-key}, C{--tls-cert} and
C{--tls-client-ca}.

L{ServerTLS} reads the PEM files, checks them (the key matches the first
certificate, nothing is encrypted or malformed) and builds one OpenSSL
context that negotiates TLS 1.2 or newer and, given client CAs, requires a
client certificate signed by one of them (mutual TLS).  L{ServerTLS.wrap}
puts TLS around any protocol factory, so it works on every endpoint,
including sockets inherited from systemd, which Twisted's C{ssl:} endpoint
cannot wrap.  L{ServerTLS.reload} (on SIGHUP) reads the files again: new
connections get the new context, open ones keep theirs, and a reload that
fails leaves the old context in place.

A key and its certificates may share one file: each reader picks out the
PEM blocks it wants and ignores the others.
"""

from __future__ import annotations

import datetime
import re
from typing import TYPE_CHECKING, Any, Optional, cast

import attr
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from OpenSSL import SSL
from OpenSSL.crypto import X509
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, IProtocolFactory
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    TLSVersion,
    trustRootFromCertificates,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted.protocols.tls import TLSMemoryBIOProtocol

#: The largest key or certificate file read; PEM files are a few KiB.
MAX_FILE_SIZE = 1024 * 1024

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
_CERTIFICATE_LABELS = (b"CERTIFICATE", b"X509 CERTIFICATE")
_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
              ed448.Ed448PrivateKey, dsa.DSAPrivateKey)


class TLSError(Exception):
    """
    A key, certificate or CA file that cannot be used.  C{str(e)} is one
    clear line naming the option, the file and the problem.
    """

    def __str__(self) -> str:
        return " ".join(super().__str__().split())


def _oneLine(error: BaseException) -> str:
    """
    A library's error message as one line, without its links to FAQs.
    """
    text = " ".join(str(error).split()) or type(error).__name__
    return re.sub(r"\s*See https?://\S+ for more details\.", "", text)


def _sslReason(error: SSL.Error) -> str:
    """
    The reasons OpenSSL gave, from a pyOpenSSL error.
    """
    reasons = [str(entry[2]) for entry in (error.args[0] if error.args else [])
               if isinstance(entry, tuple) and len(entry) == 3]
    return "; ".join(reasons) or _oneLine(error)


def _read(option: str, path: str) -> bytes:
    """
    The contents of a key or certificate file.

    @param option: The option that named it, for the message.
    @raise TLSError: It cannot be read, or is far too large for a PEM file.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_SIZE + 1)
    except OSError as e:
        reason = f"[Errno {e.errno}] {e.strerror}" if e.errno else _oneLine(e)
        raise TLSError(f"{option} {path}: cannot read it: {reason}")
    if len(data) > MAX_FILE_SIZE:
        raise TLSError(f"{option} {path}: larger than {MAX_FILE_SIZE // 1024} KiB, "
                       f"not a PEM file")
    return data


def _blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    """
    The PEM blocks in C{data}: (label, the whole block), in order.
    """
    return [(m.group(1), m.group(0)) for m in _PEM.finditer(data)]


def loadCertificates(option: str, path: str) -> list[x509.Certificate]:
    """
    Every certificate in a PEM file, in order.

    @param option: The option that named the file, for messages.
    @param path: The file.
    @raise TLSError: The file cannot be read, holds no certificate, or holds
        one that cannot be parsed.
    """
    blocks = [block for label, block in _blocks(_read(option, path))
              if label in _CERTIFICATE_LABELS]
    if not blocks:
        raise TLSError(f"{option} {path}: no PEM certificate in it")
    certificates = []
    for number, block in enumerate(blocks, 1):
        try:
            certificates.append(x509.load_pem_x509_certificate(block))
        except ValueError as e:
            raise TLSError(f"{option} {path}: certificate {number} in it cannot be "
                           f"parsed: {_oneLine(e)}")
    return certificates


def loadPrivateKey(option: str, path: str) -> PrivateKeyTypes:
    """
    The private key in a PEM file.

    @param option: The option that named the file, for messages.
    @param path: The file.
    @return: A C{cryptography} private key.
    @raise TLSError: The file cannot be read, holds no private key or more
        than one, or its key is encrypted, malformed or of a kind OpenSSL
        cannot serve with.
    """
    blocks = [(label, block) for label, block in _blocks(_read(option, path))
              if label.endswith(b"PRIVATE KEY")]
    if not blocks:
        raise TLSError(f"{option} {path}: no PEM private key in it")
    if len(blocks) > 1:
        raise TLSError(f"{option} {path}: {len(blocks)} private keys in it; "
                       f"give exactly one")
    label, block = blocks[0]
    encrypted = TLSError(f"{option} {path}: encrypted private keys are not supported")
    if label == b"ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in block:
        raise encrypted
    try:
        key = serialization.load_pem_private_key(block, password=None)
    except TypeError:
        raise encrypted
    except UnsupportedAlgorithm as e:
        raise TLSError(f"{option} {path}: unsupported private key: {_oneLine(e)}")
    except ValueError as e:
        raise TLSError(f"{option} {path}: cannot parse its private key: {_oneLine(e)}")
    return key


def _publicBytes(publicKey: PublicKeyTypes) -> bytes:
    """
    A public key as DER SubjectPublicKeyInfo, for comparing keys.
    """
    return publicKey.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)


def _names(certificate: x509.Certificate) -> list[str]:
    """
    The DNS names and IP addresses a certificate is for.
    """
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return ([str(n) for n in san.value.get_values_for_type(x509.DNSName)]
            + [str(a) for a in san.value.get_values_for_type(x509.IPAddress)])


@attr.s(auto_attribs=True, frozen=True)
class _Loaded:
    """
    One reading of the files: the OpenSSL context built from them and what
    is worth reporting about them.
    """

    context: SSL.Context
    certificate: x509.Certificate
    chain: list[x509.Certificate]
    clientCAs: list[x509.Certificate]
    loadedAt: datetime.datetime


def _load(keyPath: str, certPath: str, clientCAPath: Optional[str]) -> _Loaded:
    """
    Read and check the files and build an OpenSSL context from them.

    @raise TLSError: Anything is wrong with them.
    """
    key = loadPrivateKey("--tls-key", keyPath)
    if not isinstance(key, _KEY_TYPES):
        raise TLSError(f"--tls-key {keyPath}: a {type(key).__name__} cannot sign for TLS; "
                       f"use an RSA, EC or Ed25519 key")
    certificates = loadCertificates("--tls-cert", certPath)
    leaf, chain = certificates[0], certificates[1:]
    keyBytes = _publicBytes(key.public_key())
    if _publicBytes(leaf.public_key()) != keyBytes:
        if any(_publicBytes(c.public_key()) == keyBytes for c in chain):
            raise TLSError(f"--tls-cert {certPath}: the certificate of --tls-key "
                           f"{keyPath} must come first in it, before the chain")
        raise TLSError(f"--tls-key {keyPath} does not match the certificate in "
                       f"--tls-cert {certPath}")
    clientCAs: list[x509.Certificate] = []
    if clientCAPath is not None:
        for ca in loadCertificates("--tls-client-ca", clientCAPath):
            if ca not in clientCAs:
                clientCAs.append(ca)

    # The context takes cryptography's keys and certificates directly (it
    # warns that pyOpenSSL's own are deprecated); CertificateOptions only
    # hands them on, though its annotations still name pyOpenSSL's types.
    # The trust store still takes pyOpenSSL's certificates only.
    options = CertificateOptions(
        privateKey=cast(Any, key),
        certificate=cast(Any, leaf),
        extraCertChain=cast(Any, chain),
        raiseMinimumTo=TLSVersion.TLSv1_2,
        trustRoot=(trustRootFromCertificates(
            [Certificate(X509.from_cryptography(ca)) for ca in clientCAs])
            if clientCAs else None),
    )
    try:
        context = options.getContext()
    except SSL.Error as e:
        raise TLSError(f"--tls-cert {certPath} with --tls-key {keyPath}: OpenSSL "
                       f"refuses them: {_sslReason(e)}")
    try:
        for ca in clientCAs:
            context.add_client_ca(ca)
    except SSL.Error as e:
        raise TLSError(f"--tls-client-ca {clientCAPath}: OpenSSL refuses it: "
                       f"{_sslReason(e)}")
    return _Loaded(context, leaf, chain, clientCAs,
                   datetime.datetime.now(datetime.timezone.utc))


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """
    The TLS settings of every listening port, reloadable.

    @ivar keyPath: The C{--tls-key} file.
    @ivar certPath: The C{--tls-cert} file: the certificate, then its chain.
    @ivar clientCAPath: The C{--tls-client-ca} file, or L{None} when clients
        need no certificate.
    """

    def __init__(self, keyPath: str, certPath: str,
                 clientCAPath: Optional[str] = None) -> None:
        """
        Read the files at once.

        @param keyPath: A PEM file holding the private key (unencrypted).
        @param certPath: A PEM file holding the certificate of that key, then
            any intermediate CA certificates.
        @param clientCAPath: A PEM file of CA certificates: when given, a
            client must present a certificate signed by one of them.
        @raise TLSError: Anything is wrong with the files.
        """
        self.keyPath = keyPath
        self.certPath = certPath
        self.clientCAPath = clientCAPath
        self._current = _load(keyPath, certPath, clientCAPath)

    def reload(self) -> None:
        """
        Read the files again.  Connections made from now on use what they
        hold; open connections keep what they started with.

        @raise TLSError: Anything is wrong with the files; what was loaded
            before stays in use.
        """
        self._current = _load(self.keyPath, self.certPath, self.clientCAPath)

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """
        A new server connection on the current context.
        """
        return SSL.Connection(self._current.context, None)

    def wrap(self, factory: IProtocolFactory) -> TLSMemoryBIOFactory:
        """
        Put TLS around the protocols C{factory} builds.

        @param factory: The factory of an endpoint (an HTTP C{Site}, say).
        @return: The factory to listen with instead; its C{protocols} are
            the connections open through it.
        """
        return TLSMemoryBIOFactory(self, False, factory)

    @property
    def certificate(self) -> x509.Certificate:
        """
        The certificate served (the leaf).
        """
        return self._current.certificate

    @property
    def chain(self) -> list[x509.Certificate]:
        """
        The intermediate certificates served after it.
        """
        return list(self._current.chain)

    @property
    def clientCAs(self) -> list[x509.Certificate]:
        """
        The CAs a client certificate must be signed by; empty when clients
        need none.
        """
        return list(self._current.clientCAs)

    @property
    def subject(self) -> str:
        """
        The subject of the certificate served, as RFC 4514 text.
        """
        return self.certificate.subject.rfc4514_string()

    @property
    def issuer(self) -> str:
        """
        The issuer of the certificate served, as RFC 4514 text.
        """
        return self.certificate.issuer.rfc4514_string()

    @property
    def serialNumber(self) -> int:
        """
        The serial number of the certificate served.
        """
        return self.certificate.serial_number

    @property
    def names(self) -> list[str]:
        """
        The DNS names and IP addresses the certificate served is for.
        """
        return _names(self.certificate)

    @property
    def notBefore(self) -> datetime.datetime:
        """
        When the certificate served becomes valid (UTC).
        """
        return self.certificate.not_valid_before_utc

    @property
    def notAfter(self) -> datetime.datetime:
        """
        When the certificate served expires (UTC).
        """
        return self.certificate.not_valid_after_utc

    @property
    def fingerprint(self) -> str:
        """
        The SHA-256 fingerprint of the certificate served, in hex.
        """
        return self.certificate.fingerprint(hashes.SHA256()).hex()

    @property
    def loadedAt(self) -> datetime.datetime:
        """
        When the files in use were read (UTC).
        """
        return self._current.loadedAt

    @property
    def mutual(self) -> bool:
        """
        Whether clients must present a certificate.
        """
        return bool(self._current.clientCAs)

    def status(self) -> dict[str, Any]:
        """
        What is being served, as JSON-ready values (for C{/status}).
        """
        return {
            "key": self.keyPath,
            "certificate": self.certPath,
            "clientCA": self.clientCAPath,
            "subject": self.subject,
            "issuer": self.issuer,
            "serialNumber": format(self.serialNumber, "x"),
            "names": self.names,
            "notBefore": self.notBefore.isoformat(),
            "notAfter": self.notAfter.isoformat(),
            "fingerprint": self.fingerprint,
            "chainLength": len(self._current.chain),
            "clientCAs": [ca.subject.rfc4514_string() for ca in self._current.clientCAs],
            "loadedAt": self.loadedAt.isoformat(),
        }

    def describe(self) -> str:
        """
        What is being served, as one line for a log.
        """
        text = (f"certificate {self.subject} (serial {self.serialNumber:x}, "
                f"expires {self.notAfter.isoformat()}) from {self.certPath}")
        if self.mutual:
            count = len(self._current.clientCAs)
            text += (f"; client certificates required, from {count} "
                     f"CA{'s' if count != 1 else ''} in {self.clientCAPath}")
        return text
