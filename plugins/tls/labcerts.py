"""Lab certificates, generated on first use with ``cryptography`` (never committed).

``ensure_lab_certs(directory)`` makes, once, a lab CA and three leaf pairs signed by it —
RSA-2048, ECDSA P-256 and ECDSA P-384 — and returns their paths::

    ca.pem                      the CA certificate (clients: ``-CAfile ca.pem``, ``--cacert``)
    ca.key                      the CA key (kept to sign more leaves; lab use only)
    rsa.pem / rsa.key           RSA-2048 leaf chain (leaf + CA) and key
    ecdsa.pem / ecdsa.key       ECDSA P-256 leaf chain and key
    ecdsa384.pem / ecdsa384.key ECDSA P-384 leaf chain and key

Existing files are kept (idempotent). Leaves carry SAN = the given names (default ``tapnf.lab``;
IP literals become IP SANs). Keys are written with mode 0600. This module reads no clock of its own beyond
certificate validity (``datetime.now``) — it runs at configuration time, not in the data path.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("tapnf.lab",)
LEAVES = {"rsa": "rsa", "ecdsa": "ecdsa-p256", "ecdsa384": "ecdsa-p384"}
_VALID_DAYS = 825

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _new_key(kind: str) -> Key:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: Key) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _load_or_make_ca(directory: Path) -> tuple[x509.Certificate, Key]:
    cert_p, key_p = directory / "ca.pem", directory / "ca.key"
    if cert_p.exists() and key_p.exists():
        key = serialization.load_pem_private_key(key_p.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        return x509.load_pem_x509_certificate(cert_p.read_bytes()), key
    key = _new_key("ecdsa-p256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tapnf lab CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_p, key)
    cert_p.write_bytes(_pem(cert))
    return cert, key


def make_leaf(
    ca_cert: x509.Certificate, ca_key: Key, kind: str, names: tuple[str, ...]
) -> tuple[x509.Certificate, Key]:
    """A leaf of ``kind`` (rsa|ecdsa-p256|ecdsa-p384) for ``names``, signed by the CA."""
    key = _new_key(kind)
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def self_signed(kind: str, name: str, days: int = 3650) -> tuple[x509.Certificate, Key]:
    """A self-signed certificate of ``kind`` (rsa|ecdsa-p256|ecdsa-p384) for ``name`` (CN and DNS
    SAN), valid from 2026-01-01: benchmarks and tests that need a pair without files."""
    key = _new_key(kind)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _kind_for(file_name: str) -> str:
    low = file_name.lower()
    if "rsa" in low:
        return "rsa"
    if "384" in low:
        return "ecdsa-p384"
    return "ecdsa-p256"


def ensure_pair(cert_path: Path, key_path: Path, names: tuple[str, ...] = DEFAULT_NAMES) -> None:
    """Generate ``cert_path``/``key_path`` (chain leaf+CA) if either is missing.

    The key type follows the file name: containing ``rsa`` -> RSA-2048, ``384`` -> ECDSA P-384,
    anything else (e.g. ``ecdsa``) -> ECDSA P-256. The CA lives beside the cert (``ca.pem``).
    """
    if cert_path.exists() and key_path.exists():
        return
    ca_cert, ca_key = _load_or_make_ca(cert_path.parent)
    cert, key = make_leaf(ca_cert, ca_key, _kind_for(cert_path.name), names or DEFAULT_NAMES)
    _write_key(key_path, key)
    cert_path.write_bytes(_pem(cert) + _pem(ca_cert))


def ensure_lab_certs(directory: Path, names: tuple[str, ...] = DEFAULT_NAMES) -> dict[str, Path]:
    """Create (once) the lab CA and RSA/ECDSA leaves in ``directory``; return their paths.

    Keys of the result: ``ca``, ``ca_key``, and ``<leaf>_cert``/``<leaf>_key`` for ``rsa``,
    ``ecdsa`` (P-256) and ``ecdsa384``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _load_or_make_ca(directory)
    out = {"ca": directory / "ca.pem", "ca_key": directory / "ca.key"}
    for stem in LEAVES:
        cert_p, key_p = directory / f"{stem}.pem", directory / f"{stem}.key"
        ensure_pair(cert_p, key_p, names)
        out[f"{stem}_cert"], out[f"{stem}_key"] = cert_p, key_p
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m plugins.tls.labcerts DIR [NAME...]``: create the lab certificates in DIR."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m plugins.tls.labcerts DIR [NAME...]", file=sys.stderr)
        return 2
    for role, path in ensure_lab_certs(Path(args[0]), tuple(args[1:]) or DEFAULT_NAMES).items():
        print(f"{role}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["DEFAULT_NAMES", "ensure_lab_certs", "ensure_pair", "main", "make_leaf"]
