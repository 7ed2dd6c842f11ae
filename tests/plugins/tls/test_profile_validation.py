"""parse_profile / apply_changes: defaults from DESIGN.md, every error names path.key and the
value, unknown keys refused, certificate loading, lab certificate generation."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import ConfigError
from plugins.tls.ciphers import SUITES
from plugins.tls.labcerts import ensure_lab_certs
from plugins.tls.profile import (
    CIPHER_SUITES,
    GROUPS,
    TlsProfile,
    apply_changes,
    describe,
    parse_profile,
)

P = "profiles.clientssl"


@pytest.fixture(scope="module")
def certdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    ensure_lab_certs(d, ("tapnf.lab", "www.tapnf.lab"))
    return d


def parse(certdir: Path, **table: Any) -> TlsProfile:
    base: dict[str, Any] = {"cert": "ecdsa.pem", "key": "ecdsa.key"}
    base.update(table)
    return parse_profile("clientssl", base, certdir, P)


def err(certdir: Path, **table: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(certdir, **table)
    return info.value


def test_defaults_are_the_design_tables(certdir: Path) -> None:
    p = parse(certdir)
    assert (p.cache_size, p.cache_timeout, p.session_ticket) == (262144, 3600, False)
    assert (p.session_ticket_timeout, p.ticket_key_rotation, p.ticket_key_file) == (0, 3600, None)
    assert (p.strict_resume, p.server_cipher_preference, p.versions) == (False, False, ("1.2",))
    assert p.ticket_lifetime() == 3600
    assert p.ciphers == tuple(s.name for s in SUITES)  # AEAD first, then CBC
    assert p.groups == ("x25519", "secp256r1", "secp384r1")
    assert p.certs[0].kind == "ecdsa" and p.certs[0].names == ("tapnf.lab", "www.tapnf.lab")


def test_names_match_the_engine() -> None:
    assert CIPHER_SUITES == {s.name: s.code for s in SUITES}
    assert list(GROUPS.values()) == [29, 23, 24]


def test_values_parsed(certdir: Path) -> None:
    p = parse(
        certdir,
        cache_size=0,
        cache_timeout=60,
        session_ticket=True,
        session_ticket_timeout=30,
        ticket_key_rotation=120,
        strict_resume=True,
        ciphers=["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
        groups=["secp384r1"],
        alpn=["h2", "http/1.1"],
        sni=["WWW.tapnf.lab."],
        server_cipher_preference=True,
        keylog="keys.log",
    )
    assert p.ticket_lifetime() == 30 and p.cipher_codes == (0xC02C,) and p.group_codes == (24,)
    assert p.sni == ("www.tapnf.lab",) and p.keylog == str(certdir / "keys.log")


@pytest.mark.parametrize(
    "key,value,words",
    [
        ("cache_size", -1, "between 0"),
        ("cache_size", "big", "integer"),
        ("cache_size", True, "integer"),
        ("cache_timeout", 0, "between 1"),
        ("session_ticket", "yes", "true or false"),
        ("session_ticket_timeout", 10**9, "between 0"),
        ("ticket_key_rotation", 1.5, "integer"),
        ("ciphers", ["TLS_RSA_WITH_RC4_128_MD5"], "unknown name"),
        ("ciphers", [], "at least one"),
        ("ciphers", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "list of strings"),
        ("groups", ["x448"], "unknown name"),
        ("groups", ["x25519", "x25519"], "duplicate"),
        ("versions", ["1.1"], "unknown name"),
        ("alpn", ["x" * 256], "1-255"),
        ("sni", ["bad name!"], "host name"),
        ("ticket_key_file", "missing.keys", "not found"),
        ("keylog", 5, "string"),
        ("cache_sise", 10, "unknown key"),
    ],
)
def test_errors_name_the_key_and_value(certdir: Path, key: str, value: Any, words: str) -> None:
    e = err(certdir, **{key: value})
    assert e.path == f"{P}.{key}" and e.value == value and words in e.message


def test_cert_errors(certdir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_profile("x", {}, certdir, P)
    assert info.value.path == P + ".cert"
    e = err(certdir, cert="nope.pem")
    assert e.path == P + ".cert" and e.value == "nope.pem" and "cannot read" in e.message
    e = err(certdir, key="rsa.key")
    assert e.path == P + ".key" and "does not match" in e.message
    (tmp_path / "junk.pem").write_text("hello")
    e = parse_profile_err(tmp_path, {"cert": "junk.pem", "key": "k"})
    assert e.path == P + ".cert" and "PEM" in e.message
    e = err(certdir, certs=[{"cert": "rsa.pem", "key": "rsa.key"}])
    assert e.path == P + ".certs" and "not both" in e.message
    e = parse_profile_err(certdir, {"certs": [{"cert": "rsa.pem"}]})
    assert e.path == P + ".certs[0]"
    e = parse_profile_err(certdir, {"certs": []})
    assert e.path == P + ".certs"


def parse_profile_err(base: Path, table: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_profile("clientssl", table, base, P)
    return info.value


def test_several_pairs(certdir: Path) -> None:
    p = parse_profile(
        "c",
        {
            "certs": [
                {"cert": "rsa.pem", "key": "rsa.key"},
                {"cert": "ecdsa384.pem", "key": "ecdsa384.key"},
            ]
        },
        certdir,
        P,
    )
    assert [c.kind for c in p.certs] == ["rsa", "ecdsa"]
    assert len(p.certs[0].cert_chain) == 2  # leaf + lab CA
    assert "key=" not in repr(p.certs[0])  # the private key stays out of reprs


def test_lab_certs_generated_on_first_use(tmp_path: Path) -> None:
    table = {
        "certs": [
            {"cert": "lab/rsa.pem", "key": "lab/rsa.key"},
            {"cert": "lab/ecdsa.pem", "key": "lab/ecdsa.key"},
        ],
        "lab_certs": True,
        "sni": ["vs.tapnf.lab"],
    }
    p = parse_profile("c", table, tmp_path, P)
    assert [c.kind for c in p.certs] == ["rsa", "ecdsa"]
    assert p.certs[0].names == ("vs.tapnf.lab",)
    assert (tmp_path / "lab" / "ca.pem").exists()
    before = (tmp_path / "lab" / "rsa.pem").read_bytes()
    parse_profile("c", table, tmp_path, P)
    assert (tmp_path / "lab" / "rsa.pem").read_bytes() == before  # idempotent


def test_ticket_key_file_path_resolved(certdir: Path, tmp_path: Path) -> None:
    (certdir / "t.keys").write_text(base64.b64encode(bytes(80)).decode() + "\n")
    p = parse(certdir, ticket_key_file="t.keys")
    assert p.ticket_key_file == str(certdir / "t.keys")


def test_apply_changes(certdir: Path) -> None:
    p = parse(certdir)
    new, changed = apply_changes(p, {"cache_size": 10, "session_ticket": False}, certdir, P)
    assert changed == ["cache_size"] and new.cache_size == 10 and p.cache_size == 262144
    same, changed = apply_changes(new, {"cache_size": 10}, certdir, P)
    assert changed == [] and same == new
    with pytest.raises(ConfigError) as info:
        apply_changes(p, {"cache_size": 5, "cache_timeout": -1}, certdir, P)
    assert info.value.path == P + ".cache_timeout" and info.value.value == -1
    with pytest.raises(ConfigError) as info:
        apply_changes(p, {"name": "other"}, certdir, P)
    assert info.value.path == P + ".name"
    new, changed = apply_changes(p, {"cert": "rsa.pem", "key": "rsa.key"}, certdir, P)
    assert changed == ["certs"] and new.certs[0].kind == "rsa"


def test_describe_is_plain_data_without_keys(certdir: Path) -> None:
    d = describe(parse(certdir, alpn=["h2"]))
    assert d["cache_size"] == 262144 and d["alpn"] == ["h2"]
    assert d["certs"] == [
        {"kind": "ecdsa", "names": ["tapnf.lab", "www.tapnf.lab"], "source": "ecdsa.pem|ecdsa.key"}
    ]
    assert "PRIVATE" not in repr(d)
