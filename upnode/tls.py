# -*- test-case-name: upnode.test.integration.test_tls -*-
"""
TLS for upnode clients that fails closed.

Stock Twisted's certificate check logs a traceback and lets the connection
proceed when service_identity raises anything other than
C{VerificationError} (a certificate with no subjectAltName raises
C{CertificateError}).  Here any failure to verify the certificate for the
host name ends the handshake, and the reason reaches the client's C{error}
event.  Our dnode protocol writes nothing before the handshake is complete.
For example::

    up = upnode.connect({"endpoint": "tls:example.com:7001"})
    up = upnode.connect({"endpoint": "tls:localhost:7001:trustRoots=ca.pem"})
    up = upnode.connect(upnode.tls.clientEndpoint(reactor, "example.com", 7001))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from OpenSSL.SSL import TLS_METHOD, VERIFY_FAIL_IF_NO_PEER_CERT, VERIFY_PEER, Connection, Context
from OpenSSL.SSL import Error as SSLError
from service_identity.hazmat import DNS_ID, IPAddress_ID, ServiceID, verify_service_identity
from service_identity.pyopenssl import extract_patterns, verify_hostname, verify_ip_address
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = [
    "FailClosedClientTLS",
    "checkServerDescription",
    "clientEndpoint",
    "loadTrustRoot",
    "parseDescription",
    "verifyServerIdentity",
]


@implementer(IOpenSSLClientConnectionCreator)
class FailClosedClientTLS:
    """
    Client TLS options that verify the chain against C{trustRoot} and the
    certificate against C{hostname}, and end the handshake on any failure.
    """

    def __init__(
        self,
        hostname: str,
        trustRoot: Any = None,
        clientCertificate: Optional[PrivateCertificate] = None,
    ) -> None:
        self.hostname = hostname
        self._options = optionsForClientTLS(hostname, trustRoot, clientCertificate)
        serviceId: ServiceID
        if isIPAddress(hostname) or isIPv6Address(hostname):
            serviceId = IPAddress_ID(hostname)
        else:
            serviceId = DNS_ID(hostname)
        self._serviceId = serviceId

    def clientConnectionForTLS(self, tlsProtocol: Any) -> Connection:
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        serviceId = self._serviceId

        def verify(conn: Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
            if not ok:
                return False  # OpenSSL's own verdict on the chain: untrusted, expired...
            if depth != 0:
                return True
            try:
                verify_service_identity(extract_patterns(cert), [serviceId], [])
            except Exception:
                # Whatever went wrong (wrong name, no subjectAltName, a
                # certificate it cannot read), the answer is no.
                tlsProtocol.failVerification(Failure())
                return False
            return True

        connection.set_verify(VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT, verify)
        return connection


def loadTrustRoot(path: Optional[str]) -> Any:
    """
    The trust root for C{path}: a PEM file of one or more certificates, a
    folder of C{*.pem} files, or (None) the platform's trust store.
    """
    if path is None:
        return platformTrust()
    where = Path(path)
    files = sorted(where.glob("*.pem")) if where.is_dir() else [where]
    certificates: List[Certificate] = []
    for file in files:
        text = file.read_bytes()
        for block in text.split(b"-----END CERTIFICATE-----")[:-1]:
            certificates.append(Certificate.loadPEM(block + b"-----END CERTIFICATE-----\n"))
    if not certificates:
        raise ValueError(f"no certificate found in {path}")
    return trustRootFromCertificates(certificates)


def clientEndpoint(
    reactor: Any,
    host: str,
    port: int,
    trustRoots: Optional[str] = None,
    certificate: Optional[str] = None,
    privateKey: Optional[str] = None,
    timeout: float = 30,
) -> Any:
    """
    A TLS client endpoint to C{host}:C{port} that fails closed.
    """
    clientCertificate = None
    if certificate is not None:
        keyPem = Path(privateKey or certificate).read_bytes()
        clientCertificate = PrivateCertificate.loadPEM(Path(certificate).read_bytes() + keyPem)
    creator = FailClosedClientTLS(host, loadTrustRoot(trustRoots), clientCertificate)
    return wrapClientTLS(creator, HostnameEndpoint(reactor, host, port, timeout=timeout))


def parseDescription(description: str) -> Optional[Tuple[List[str], Dict[str, str]]]:
    """
    Split a C{tls:} or C{ssl:} client description (Twisted's syntax:
    colon-separated, C{\\:} for a literal colon, C{key=value} keywords) into
    positional and keyword arguments; None for any other kind.
    """
    parts: List[str] = []
    current = ""
    escaped = False
    for ch in description:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    kind, rest = parts[0], parts[1:]
    if kind not in ("tls", "ssl"):
        return None
    args = [p for p in rest if "=" not in p]
    kwargs = dict(p.split("=", 1) for p in rest if "=" in p)
    return args, kwargs


def clientFromDescription(reactor: Any, description: str) -> Optional[Any]:
    """
    Our fail-closed endpoint for a C{tls:} or C{ssl:} client description:
    C{tls:HOST:PORT} or C{tls:host=HOST:port=PORT}, with C{trustRoots}
    (C{caCertsDir} for C{ssl:}), C{certificate}/C{certKey}, C{privateKey},
    C{timeout}.  None when the description is of another kind.
    """
    parsed = parseDescription(description)
    if parsed is None:
        return None
    args, kwargs = parsed
    host = kwargs.pop("host", args[0] if args else None)
    port = kwargs.pop("port", args[1] if len(args) > 1 else None)
    if host is None or port is None:
        raise ValueError(f"{description!r} needs a host and a port")
    trustRoots = kwargs.pop("trustRoots", None) or kwargs.pop("caCertsDir", None)
    certificate = kwargs.pop("certificate", None) or kwargs.pop("certKey", None)
    privateKey = kwargs.pop("privateKey", None)
    timeout = float(kwargs.pop("timeout", 30))
    for ignored in ("verify", "method"):
        kwargs.pop(ignored, None)  # verification is always on
    if kwargs:
        raise ValueError(f"unsupported TLS options {sorted(kwargs)} in {description!r}")
    return clientEndpoint(reactor, host, int(port), trustRoots, certificate, privateKey, timeout)




def verifyServerIdentity(transport: Any) -> Optional[Exception]:
    """
    Check, after a client's TLS handshake, that the server's certificate
    is valid for the host we connected to, whatever TLS options made the
    connection (a stock Twisted endpoint lets some through with only a
    logged traceback).  The host is the name we sent in SNI, or else the
    address we connected to.  Returns the reason it is not, or None.
    """
    try:
        connection = transport.getHandle()
        name = connection.get_servername()
        if name:
            verify_hostname(connection, name.decode("ascii"))
        else:
            verify_ip_address(connection, transport.getPeer().host)
    except Exception as e:
        # Whatever went wrong (wrong name, no subjectAltName, no
        # certificate, one it cannot read), the answer is no.
        return e
    return None


#: How to make a key and a self-signed certificate that OpenSSL and our
#: clients accept (a subjectAltName for the host: clients check it, not
#: the CN), as the error for a refused key suggests.
SELF_SIGNED_COMMAND = (
    "openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 365"
    ' -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"'
)


def checkServerDescription(description: str) -> None:
    """
    Load the key and certificate of an C{ssl:} server description into an
    OpenSSL context now, so that one it refuses (a key smaller than its
    security level allows, a key that does not match) is one clear error
    when listening, not a traceback on every connection.

    @raise ValueError: OpenSSL refuses them.
    """
    parsed = parseDescription(description)
    if parsed is None or description.split(":", 1)[0] != "ssl":
        return
    _, kwargs = parsed
    key = kwargs.get("privateKey")
    cert = kwargs.get("certKey", key)
    if key is None or cert is None:
        return  # Twisted's own parser says what is missing
    context = Context(TLS_METHOD)
    try:
        context.use_certificate_chain_file(cert)
        context.use_privatekey_file(key)
        context.check_privatekey()
    except SSLError as e:
        reasons = "; ".join(str(part[2]) for part in e.args[0]) if e.args and e.args[0] else str(e)
        hint = ""
        if "too small" in reasons:
            hint = (
                " This OpenSSL refuses keys below its security level (RSA under 2048 bits among them,"
                " such as the 1024-bit key of Node's upnode example); make a new key and a"
                " certificate naming the host (our clients check its subjectAltName), for example"
                f" `{SELF_SIGNED_COMMAND}`."
            )
        raise ValueError(f"the TLS key {key} and certificate {cert} cannot be used: {reasons}.{hint}") from None
