"""Lab certificates: CA + RSA-2048 / ECDSA P-256 / P-384 leaves, verifiable by OpenSSL with
-CAfile, idempotent, keys private."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from plugins.tls.labcerts import ensure_lab_certs


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return ensure_lab_certs(tmp_path_factory.mktemp("lab"), ("tapnf.lab", "10.0.0.2"))


def test_files_and_key_types(lab: dict[str, Path]) -> None:
    assert set(lab) == {
        "ca",
        "ca_key",
        "rsa_cert",
        "rsa_key",
        "ecdsa_cert",
        "ecdsa_key",
        "ecdsa384_cert",
        "ecdsa384_key",
    }
    rsa_key = load_pem_private_key(lab["rsa_key"].read_bytes(), None)
    assert isinstance(rsa_key, rsa.RSAPrivateKey) and rsa_key.key_size == 2048
    for name, curve in (("ecdsa_key", "secp256r1"), ("ecdsa384_key", "secp384r1")):
        k = load_pem_private_key(lab[name].read_bytes(), None)
        assert isinstance(k, ec.EllipticCurvePrivateKey) and k.curve.name == curve
    for name in ("rsa_key", "ecdsa_key", "ecdsa384_key", "ca_key"):
        assert stat.S_IMODE(lab[name].stat().st_mode) == 0o600


def test_chain_san_and_issuer(lab: dict[str, Path]) -> None:
    ca = x509.load_pem_x509_certificate(lab["ca"].read_bytes())
    for name in ("rsa_cert", "ecdsa_cert", "ecdsa384_cert"):
        chain = x509.load_pem_x509_certificates(lab[name].read_bytes())
        assert len(chain) == 2 and chain[1] == ca
        chain[0].verify_directly_issued_by(ca)
        san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["tapnf.lab"]
        assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.2"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_verifies_with_cafile(lab: dict[str, Path]) -> None:
    for name in ("rsa_cert", "ecdsa_cert", "ecdsa384_cert"):
        out = subprocess.run(
            [
                "openssl",
                "verify",
                "-CAfile",
                str(lab["ca"]),
                "-purpose",
                "sslserver",
                str(lab[name]),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0 and ": OK" in out.stdout, out.stderr


def test_idempotent(lab: dict[str, Path]) -> None:
    before = {k: p.read_bytes() for k, p in lab.items()}
    again = ensure_lab_certs(lab["ca"].parent)
    assert again == lab and {k: p.read_bytes() for k, p in again.items()} == before


def test_missing_leaf_is_regenerated_under_the_same_ca(
    lab: dict[str, Path], tmp_path: Path
) -> None:
    d = tmp_path / "c"
    first = ensure_lab_certs(d)
    ca = first["ca"].read_bytes()
    first["ecdsa_key"].unlink()
    second = ensure_lab_certs(d)
    assert second["ca"].read_bytes() == ca and second["ecdsa_key"].exists()
    leaf = x509.load_pem_x509_certificates(second["ecdsa_cert"].read_bytes())[0]
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from plugins.tls.labcerts import main

    assert main([]) == 2
    assert main([str(tmp_path / "m"), "x.lab"]) == 0
    out = capsys.readouterr().out
    assert f"ca\t{tmp_path / 'm' / 'ca.pem'}" in out
    leaf = x509.load_pem_x509_certificates((tmp_path / "m" / "rsa.pem").read_bytes())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["x.lab"]
