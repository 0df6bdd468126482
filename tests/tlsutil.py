"""
Throwaway certificate authorities and certificates for TLS tests.

Everything here is generated afresh (EC P-256 keys, quick to make), valid
from a day ago for thirty days, and written as PEM files into a directory the
caller owns.  L{makePKI} makes the whole set the tests need at once; L{CA},
L{writeKey} and L{writeCertificates} make anything else (a second server
certificate for a reload test, say).

Usage::

    pki = makePKI(tempfile.mkdtemp())
    ServerTLS(pki.serverKey, pki.serverCert, pki.clientCACert)
    ssl.create_default_context(cafile=pki.caCert)
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Optional, Sequence

import attr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The password of L{PKI.encryptedKey}.
PASSWORD = b"secret"


def makeKey() -> ec.EllipticCurvePrivateKey:
    """
    A new EC P-256 private key.
    """
    return ec.generate_private_key(ec.SECP256R1())


def _name(commonName: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mcpbridge tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, commonName),
    ])


def _keyId(key: ec.EllipticCurvePublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key)


class CA:
    """
    A certificate authority: a key and its certificate, self-signed (a root)
    or signed by another L{CA} (an intermediate).

    @ivar issuer: The CA that signed this one; L{None} for a root.
    @ivar key: The CA's private key.
    @ivar certificate: The CA's certificate.
    @ivar chain: The CA's certificate followed by those of the intermediate
        CAs above it, up to but not including the root: what a certificate
        file holds after the leaf that this CA issued.
    """

    def __init__(self, commonName: str, issuer: Optional[CA] = None) -> None:
        """
        @param commonName: The CA's common name.
        @param issuer: The CA that signs this one, or L{None} for a root.
        """
        self.issuer = issuer
        self.key = makeKey()
        signer = issuer if issuer is not None else self
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(commonName))
            .issuer_name(_name(commonName) if issuer is None else issuer.certificate.subject)
            .public_key(self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(_keyId(self.key.public_key()), critical=False)
        )
        self.certificate: x509.Certificate = _sign(builder, signer.key,
                                                   signer.key.public_key())
        self.chain: list[x509.Certificate] = [self.certificate]
        if issuer is not None and issuer.issuer is not None:
            self.chain.extend(issuer.chain)

    def issue(self, commonName: str, dnsNames: Sequence[str] = (),
              ipAddresses: Sequence[str] = (), server: bool = True,
              client: bool = False, key: Optional[ec.EllipticCurvePrivateKey] = None,
              ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """
        Issue an end-entity certificate.

        @param commonName: The subject's common name.
        @param dnsNames: DNS names for the subject alternative name.
        @param ipAddresses: IP addresses for the subject alternative name.
        @param server: Whether it may authenticate a TLS server.
        @param client: Whether it may authenticate a TLS client.
        @param key: The subject's key; a new one when L{None}.
        @return: The key and the certificate.
        """
        key = key if key is not None else makeKey()
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dnsNames]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ipAddresses]
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(commonName))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(_keyId(key.public_key()), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return key, _sign(builder, self.key, self.key.public_key())


def _sign(builder: x509.CertificateBuilder, signer: ec.EllipticCurvePrivateKey,
          signerPublic: ec.EllipticCurvePublicKey) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        builder
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signerPublic), critical=False)
        .sign(signer, hashes.SHA256())
    )


def writeKey(path: str, key: ec.EllipticCurvePrivateKey,
             password: Optional[bytes] = None) -> str:
    """
    Write C{key} to C{path} as PKCS#8 PEM, encrypted when C{password} is
    given; return C{path}.
    """
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8, encryption))
    return path


def writeCertificates(path: str, certificates: Sequence[x509.Certificate]) -> str:
    """
    Write C{certificates}, in order, to C{path} as PEM; return C{path}.
    """
    with open(path, "wb") as f:
        for certificate in certificates:
            f.write(certificate.public_bytes(serialization.Encoding.PEM))
    return path


@attr.s(auto_attribs=True, frozen=True)
class PKI:
    """
    Paths of the PEM files that L{makePKI} wrote.

    @ivar directory: Where they are.
    @ivar caCert: The root CA that issued the server's certificate (through
        an intermediate): what a client trusts.
    @ivar serverKey: The server's key.
    @ivar serverCert: The server's certificate (for C{localhost} and
        C{127.0.0.1}) followed by the intermediate CA's: a chain.
    @ivar serverLeafCert: The server's certificate alone, without the
        intermediate: a client that trusts only L{caCert} cannot verify it.
    @ivar serverSerial: The serial number of the server's certificate.
    @ivar clientCACert: The CA that issues client certificates.
    @ivar clientKey: A client's key.
    @ivar clientCert: The client's certificate, issued by L{clientCACert}.
    @ivar otherCACert: A CA that nothing here trusts.
    @ivar otherCAClientKey: A client key.
    @ivar otherCAClientCert: Its certificate, issued by L{otherCACert}.
    @ivar encryptedKey: The server's key, encrypted with L{PASSWORD}.
    @ivar mismatchedKey: A key that matches no certificate here.
    @ivar root: The L{CA} of L{caCert}.
    @ivar intermediate: The L{CA} that issued the server's certificate; it
        can issue another (for a reload test, say).
    @ivar clientCA: The L{CA} of L{clientCACert}.
    @ivar otherCA: The L{CA} of L{otherCACert}.
    """

    directory: str
    caCert: str
    serverKey: str
    serverCert: str
    serverLeafCert: str
    serverSerial: int
    clientCACert: str
    clientKey: str
    clientCert: str
    otherCACert: str
    otherCAClientKey: str
    otherCAClientCert: str
    encryptedKey: str
    mismatchedKey: str
    root: CA = attr.ib(eq=False, repr=False)
    intermediate: CA = attr.ib(eq=False, repr=False)
    clientCA: CA = attr.ib(eq=False, repr=False)
    otherCA: CA = attr.ib(eq=False, repr=False)


def makePKI(directory: str) -> PKI:
    """
    Make a fresh set of CAs, keys and certificates in C{directory} (created
    if missing).

    @return: Their paths.
    """
    os.makedirs(directory, exist_ok=True)

    def path(name: str) -> str:
        return os.path.join(directory, name)

    root = CA("Test Root CA")
    intermediate = CA("Test Intermediate CA", root)
    clientCA = CA("Test Client CA")
    otherCA = CA("Other CA")
    serverKey, serverCert = intermediate.issue(
        "localhost", dnsNames=["localhost"], ipAddresses=["127.0.0.1"])
    clientKey, clientCert = clientCA.issue("client", server=False, client=True)
    otherKey, otherCert = otherCA.issue("other client", server=False, client=True)
    return PKI(
        directory=directory,
        caCert=writeCertificates(path("ca.pem"), [root.certificate]),
        serverKey=writeKey(path("server.key"), serverKey),
        serverCert=writeCertificates(path("server.pem"), [serverCert] + intermediate.chain),
        serverLeafCert=writeCertificates(path("server-leaf.pem"), [serverCert]),
        serverSerial=serverCert.serial_number,
        clientCACert=writeCertificates(path("client-ca.pem"), [clientCA.certificate]),
        clientKey=writeKey(path("client.key"), clientKey),
        clientCert=writeCertificates(path("client.pem"), [clientCert]),
        otherCACert=writeCertificates(path("other-ca.pem"), [otherCA.certificate]),
        otherCAClientKey=writeKey(path("other-client.key"), otherKey),
        otherCAClientCert=writeCertificates(path("other-client.pem"), [otherCert]),
        encryptedKey=writeKey(path("server-encrypted.key"), serverKey, PASSWORD),
        mismatchedKey=writeKey(path("mismatched.key"), makeKey()),
        root=root, intermediate=intermediate, clientCA=clientCA, otherCA=otherCA,
    )
