"""Cipher suites, groups and signature schemes tapnf speaks (TLS 1.2, ECDHE only).

AEAD suites (AES-GCM per RFC 5288/5289, ChaCha20-Poly1305 per RFC 7905) come first, then the
legacy ECDHE AES-CBC suites (RFC 4492/5289), which are only ever used with a constant-time record
check and Encrypt-then-MAC (RFC 7366) when the client offers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

_FIXED_IV_LEN = {"gcm": 4, "chacha": 12, "cbc": 0}


@dataclass(frozen=True)
class CipherSuite:
    code: int
    name: str  # IANA name
    auth: str  # "ECDSA" | "RSA": the certificate type the suite needs
    bulk: str  # "gcm" | "chacha" | "cbc"
    key_len: int
    prf_hash: str  # "sha256" | "sha384"
    mac_hash: str | None = None  # CBC only: "sha1" | "sha256" | "sha384"
    mac_len: int = 0
    # Derived once (read on every handshake): AEAD or not, the implicit IV length per side.
    aead: bool = field(init=False, repr=False, compare=False)
    fixed_iv_len: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "aead", self.bulk != "cbc")
        object.__setattr__(self, "fixed_iv_len", _FIXED_IV_LEN[self.bulk])

    def key_block_len(self) -> int:
        return 2 * (self.mac_len + self.key_len + self.fixed_iv_len)


def _s(
    code: int, name: str, auth: str, bulk: str, key_len: int, prf_hash: str, mac: str = ""
) -> CipherSuite:
    mac_len = {"": 0, "sha1": 20, "sha256": 32, "sha384": 48}[mac]
    return CipherSuite(code, name, auth, bulk, key_len, prf_hash, mac or None, mac_len)


SUITES: tuple[CipherSuite, ...] = (
    _s(0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDSA", "gcm", 16, "sha256"),
    _s(0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "RSA", "gcm", 16, "sha256"),
    _s(0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDSA", "gcm", 32, "sha384"),
    _s(0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "RSA", "gcm", 32, "sha384"),
    _s(0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDSA", "chacha", 32, "sha256"),
    _s(0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "RSA", "chacha", 32, "sha256"),
    _s(0xC023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDSA", "cbc", 16, "sha256", "sha256"),
    _s(0xC027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "RSA", "cbc", 16, "sha256", "sha256"),
    _s(0xC024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", "ECDSA", "cbc", 32, "sha384", "sha384"),
    _s(0xC028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", "RSA", "cbc", 32, "sha384", "sha384"),
    _s(0xC009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDSA", "cbc", 16, "sha256", "sha1"),
    _s(0xC013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "RSA", "cbc", 16, "sha256", "sha1"),
    _s(0xC00A, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDSA", "cbc", 32, "sha256", "sha1"),
    _s(0xC014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "RSA", "cbc", 32, "sha256", "sha1"),
)
SUITES_BY_CODE: dict[int, CipherSuite] = {s.code: s for s in SUITES}
SUITES_BY_NAME: dict[str, CipherSuite] = {s.name: s for s in SUITES}
DEFAULT_CIPHERS: tuple[str, ...] = tuple(s.name for s in SUITES)

TLS_EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF
TLS_FALLBACK_SCSV = 0x5600


class Group(IntEnum):
    secp256r1 = 23
    secp384r1 = 24
    x25519 = 29


GROUPS_BY_NAME: dict[str, Group] = {g.name: g for g in Group}
GROUP_NAMES: dict[int, str] = {int(g): g.name for g in Group}
DEFAULT_GROUPS: tuple[str, ...] = ("x25519", "secp256r1", "secp384r1")


class SignatureScheme(IntEnum):
    rsa_pkcs1_sha1 = 0x0201
    ecdsa_sha1 = 0x0203
    rsa_pkcs1_sha256 = 0x0401
    rsa_pkcs1_sha384 = 0x0501
    rsa_pkcs1_sha512 = 0x0601
    ecdsa_secp256r1_sha256 = 0x0403
    ecdsa_secp384r1_sha384 = 0x0503
    ecdsa_secp521r1_sha512 = 0x0603
    rsa_pss_rsae_sha256 = 0x0804
    rsa_pss_rsae_sha384 = 0x0805
    rsa_pss_rsae_sha512 = 0x0806


SS = SignatureScheme
# (key type, padding, hash) per scheme we can sign with
SCHEME_INFO: dict[int, tuple[str, str, str]] = {
    SS.rsa_pss_rsae_sha256: ("RSA", "pss", "sha256"),
    SS.rsa_pss_rsae_sha384: ("RSA", "pss", "sha384"),
    SS.rsa_pss_rsae_sha512: ("RSA", "pss", "sha512"),
    SS.rsa_pkcs1_sha256: ("RSA", "pkcs1", "sha256"),
    SS.rsa_pkcs1_sha384: ("RSA", "pkcs1", "sha384"),
    SS.rsa_pkcs1_sha512: ("RSA", "pkcs1", "sha512"),
    SS.ecdsa_secp256r1_sha256: ("ECDSA", "", "sha256"),
    SS.ecdsa_secp384r1_sha384: ("ECDSA", "", "sha384"),
    SS.ecdsa_secp521r1_sha512: ("ECDSA", "", "sha512"),
    SS.rsa_pkcs1_sha1: ("RSA", "pkcs1", "sha1"),
    SS.ecdsa_sha1: ("ECDSA", "", "sha1"),
}
# RFC 5246 §7.4.1.4.1: a client without signature_algorithms is assumed to accept SHA-1.
DEFAULT_CLIENT_SCHEMES: tuple[int, ...] = (SS.rsa_pkcs1_sha1, SS.ecdsa_sha1)


def suite_name(code: int) -> str:
    s = SUITES_BY_CODE.get(code)
    return s.name if s else f"0x{code:04x}"


__all__ = [
    "DEFAULT_CIPHERS",
    "DEFAULT_CLIENT_SCHEMES",
    "DEFAULT_GROUPS",
    "GROUPS_BY_NAME",
    "GROUP_NAMES",
    "SCHEME_INFO",
    "SUITES",
    "SUITES_BY_CODE",
    "SUITES_BY_NAME",
    "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    "TLS_FALLBACK_SCSV",
    "CipherSuite",
    "Group",
    "is_supported_group",
    "SignatureScheme",
    "suite_name",
]


_GROUP_CODES = frozenset(int(g) for g in Group)


def is_supported_group(code: int) -> bool:
    return code in _GROUP_CODES
