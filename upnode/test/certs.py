"""
Certificates the TLS tests make for themselves: a CA, and server
certificates that are good, for the wrong name, without subjectAltName,
expired, or self-signed (untrusted).
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Dict, List, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuerKey: ec.EllipticCurvePrivateKey,
    names: Optional[List[x509.GeneralName]],
    notBefore: datetime.datetime,
    notAfter: datetime.datetime,
    ca: bool = False,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore)
        .not_valid_after(notAfter)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuerKey, hashes.SHA256())


LOCALHOST = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]


def makeCertificates(folder: Path) -> Dict[str, Path]:
    """
    Write C{ca.pem} and, for each case, C{CASE.key} and C{CASE.pem} into
    C{folder}; return the paths by name (C{"ca"}, C{"good"}, ...).
    """
    folder.mkdir(parents=True, exist_ok=True)
    caKey = _key()
    caName = _name("upnode test CA")
    year = datetime.timedelta(days=365)
    ca = _certificate("upnode test CA", caKey, caName, caKey, None, NOW - year, NOW + year, ca=True)
    paths = {"ca": folder / "ca.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    strangerKey = _key()
    cases = {
        "good": (caName, caKey, LOCALHOST, NOW - year, NOW + year),
        "wrongname": (caName, caKey, [x509.DNSName("example.com")], NOW - year, NOW + year),
        "nosan": (caName, caKey, None, NOW - year, NOW + year),
        "expired": (caName, caKey, LOCALHOST, NOW - 2 * year, NOW - year),
        "untrusted": (_name("stranger"), strangerKey, LOCALHOST, NOW - year, NOW + year),
    }
    for case, (issuer, issuerKey, names, start, end) in cases.items():
        key = strangerKey if case == "untrusted" else _key()
        cert = _certificate("localhost", key, issuer, issuerKey, names, start, end)
        (folder / f"{case}.key").write_bytes(_pem(key))
        (folder / f"{case}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[case] = folder / f"{case}.pem"
        paths[case + ".key"] = folder / f"{case}.key"
    return paths


def makeSmallRSA(folder: Path) -> Dict[str, Path]:
    """
    A self-signed certificate for localhost with a 1024-bit RSA key, as in
    Node's upnode TLS example: C{small.key} and C{small.pem}.
    """
    from cryptography.hazmat.primitives.asymmetric import rsa

    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    year = datetime.timedelta(days=365)
    cert = _certificate("localhost", key, _name("localhost"), key, LOCALHOST, NOW - year, NOW + year)  # type: ignore[arg-type]
    paths = {"small.key": folder / "small.key", "small": folder / "small.pem"}
    paths["small.key"].write_bytes(_pem(key))  # type: ignore[arg-type]
    paths["small"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return paths


if __name__ == "__main__":
    import sys

    for name, path in makeCertificates(Path(sys.argv[1] if len(sys.argv) > 1 else ".")).items():
        print(name, path)
