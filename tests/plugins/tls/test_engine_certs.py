"""Certificate and signature-scheme selection: by suite type, SNI and signature_algorithms; every
scheme the engine can make is verified with the certificate's public key."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from plugins.tls import messages as m
from plugins.tls.certs import CertResolver, prepare
from plugins.tls.ciphers import SCHEME_INFO
from tests.plugins.tls.engine_harness import (
    Server,
    cert_pair,
    client_context,
    handshake,
    profile,
)
from tests.plugins.tls.raw_client import RawClient, hello

ET = m.ExtensionType
HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


def _verify(pub: object, scheme: int, sig: bytes, data: bytes) -> None:
    kind, pad, h = SCHEME_INFO[scheme]
    algo = HASHES[h]
    if kind == "ECDSA":
        assert isinstance(pub, ec.EllipticCurvePublicKey)
        pub.verify(sig, data, ec.ECDSA(algo))
    elif pad == "pss":
        assert isinstance(pub, rsa.RSAPublicKey)
        pub.verify(sig, data, padding.PSS(padding.MGF1(algo), algo.digest_size), algo)
    else:
        assert isinstance(pub, rsa.RSAPublicKey)
        pub.verify(sig, data, padding.PKCS1v15(), algo)


@pytest.mark.parametrize(
    ("suite", "cert", "offered", "expected"),
    [
        (0xC02F, "rsa", [0x0804, 0x0401], 0x0804),
        (0xC02F, "rsa", [0x0401], 0x0401),
        (0xC02F, "rsa", [0x0601, 0x0806], 0x0806),  # PSS preferred over PKCS#1
        (0xC030, "rsa", [0x0501], 0x0501),
        (0xC02B, "p256", [0x0403], 0x0403),
        (0xC02B, "p256", [0x0603, 0x0503], 0x0503),
        (0xC02C, "p384", [0x0503], 0x0503),
        (0xC02B, "p384", [0x0603], 0x0603),
    ],
)
def test_signature_scheme_choice_and_signature_verifies(
    suite: int, cert: str, offered: list[int], expected: int
) -> None:
    server = Server(profile(certs=(cert,)))
    c = RawClient(server.connect())
    sigalgs = len(offered * 2).to_bytes(2, "big") + b"".join(s.to_bytes(2, "big") for s in offered)
    groups = bytes.fromhex("0006001d00170018")
    c.send_hello(
        hello(
            suites=(suite,),
            extensions=((ET.signature_algorithms, sigalgs), (ET.supported_groups, groups)),
        )
    )
    assert c.ske is not None and c.ch is not None and c.server_hello is not None
    group, point, scheme, sig = c.ske
    assert scheme == expected
    params = m.ecdhe_params(group, point)
    pub = cert_pair(cert).cert_chain[0].public_key()
    _verify(pub, scheme, sig, c.ch.random + c.server_hello.random + params)


def test_ecdsa_cert_requires_its_curve_in_supported_groups() -> None:
    server = Server(profile(certs=("p384",)))
    c = RawClient(server.connect())
    c.send_hello(
        hello(suites=(0xC02B,), extensions=((ET.supported_groups, bytes.fromhex("0002001d")),))
    )
    assert c.alerts == [(2, 40)]  # P-384 not offered: no usable certificate


def test_suite_type_picks_certificate() -> None:
    server = Server(profile(certs=("rsa", "p256")))
    for ciphers, kind in (
        ("ECDHE-RSA-AES128-GCM-SHA256", "rsa"),
        ("ECDHE-ECDSA-AES128-GCM-SHA256", "p256"),
    ):
        client, _, _ = handshake(server, client_context(ciphers))
        der = client.obj.getpeercert(binary_form=True)
        assert der == cert_pair(kind).cert_chain[0].public_bytes(Encoding.DER)


def test_sni_picks_matching_pair_and_falls_back_to_first() -> None:
    a, b = cert_pair("rsa", "a.tapnf.test"), cert_pair("rsa", "b.tapnf.test")
    from plugins.tls.profile import TlsProfile

    server = Server(TlsProfile(name="sni", certs=(a, b)))
    for sni, want in (("b.tapnf.test", b), ("a.tapnf.test", a), ("other.test", a), (None, a)):
        client, _, _ = handshake(server, client_context(), server_hostname=sni)
        assert client.obj.getpeercert(binary_form=True) == want.cert_chain[0].public_bytes(
            Encoding.DER
        )


def test_wildcard_names() -> None:
    wild = prepare(cert_pair("p256", "*.lab.test").cert_chain, cert_pair("p256", "*.lab.test").key)
    assert wild.matches("www.lab.test")
    assert not wild.matches("lab.test") and not wild.matches("a.b.lab.test")
    resolver = CertResolver([wild])
    assert resolver.choose("RSA", "www.lab.test", [0x0804], None) is None
    pick = resolver.choose("ECDSA", "www.lab.test", [0x0403], [23])
    assert pick is not None and pick[1] == 0x0403
