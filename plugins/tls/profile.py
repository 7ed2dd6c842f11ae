"""The TLS termination profile (BIG-IP "client SSL profile" vocabulary) and its validation.

``parse_profile`` turns one ``[profiles.<name>]`` TOML table into a frozen ``TlsProfile``;
``apply_changes`` validates a live change (control channel ``tls.profile.set``) the same way and
says which keys changed. Every error is ``ConfigError("<path>.<key>", message, value)``.

A profile's ``ciphers``/``groups`` are validated against the names the engine speaks
(``plugins.tls.ciphers``), exposed here as ``CIPHER_SUITES``/``GROUPS`` (IANA name -> code point,
default preference order: AEAD first, then the legacy ECDHE AES-CBC suites).

Keys (defaults as DESIGN.md): ``cert``+``key`` or ``certs = [{cert, key}, ...]`` (paths relative
to the config file; ``lab_certs = true`` generates missing files), ``versions``, ``ciphers``,
``groups``, ``server_cipher_preference``, ``cache_size``, ``cache_timeout``, ``session_ticket``,
``session_ticket_timeout``, ``ticket_key_rotation``, ``ticket_key_file``, ``strict_resume``,
``alpn``, ``sni``, ``keylog``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from pipeline.errors import ConfigError
from plugins.tls.ciphers import DEFAULT_GROUPS, GROUPS_BY_NAME, SUITES

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

#: IANA name -> code point, default preference order (AEAD first, then CBC). The engine's
#: ``ciphers.SUITES`` is the single source: a profile can name exactly what the engine speaks.
CIPHER_SUITES: dict[str, int] = {s.name: s.code for s in SUITES}
CIPHER_NAMES: dict[int, str] = {v: k for k, v in CIPHER_SUITES.items()}
#: Group name -> NamedGroup code point (RFC 8422 / RFC 7748), default preference order.
GROUPS: dict[str, int] = {name: int(GROUPS_BY_NAME[name]) for name in DEFAULT_GROUPS}
#: TLS versions a profile may list, and the wire value of each.
VERSIONS: dict[str, int] = {"1.2": 0x0303}

MAX_CACHE_SIZE = 16_777_216
MAX_TIMEOUT = 7 * 86400


@dataclass(frozen=True)
class CertPair:
    """One certificate chain (leaf first) and its private key; ``names`` are the leaf's DNS SANs."""

    cert_chain: tuple[x509.Certificate, ...]
    key: PrivateKey = field(repr=False)
    names: tuple[str, ...]
    source: str = ""  # "cert.pem|key.pem" as configured (shown by tls.profile.get)

    @property
    def kind(self) -> str:
        """``rsa`` or ``ecdsa``."""
        return "rsa" if isinstance(self.key, rsa.RSAPrivateKey) else "ecdsa"


@dataclass(frozen=True)
class TlsProfile:
    """A validated profile. Replaced as a whole by a live change (never mutated)."""

    name: str
    certs: tuple[CertPair, ...]
    versions: tuple[str, ...] = ("1.2",)
    ciphers: tuple[str, ...] = tuple(CIPHER_SUITES)
    groups: tuple[str, ...] = tuple(GROUPS)
    server_cipher_preference: bool = False
    cache_size: int = 262144
    cache_timeout: int = 3600
    session_ticket: bool = False
    session_ticket_timeout: int = 0
    ticket_key_rotation: int = 3600
    ticket_key_file: str | None = None
    strict_resume: bool = False
    alpn: tuple[str, ...] = ()
    sni: tuple[str, ...] = ()
    keylog: str | None = None

    def ticket_lifetime(self) -> int:
        """Ticket lifetime hint and acceptance limit: ``session_ticket_timeout`` or ``cache_timeout``."""
        return self.session_ticket_timeout or self.cache_timeout

    # Derived once per profile object (a live change makes a new one): handshakes read these.
    @cached_property
    def cipher_codes(self) -> tuple[int, ...]:
        return tuple(CIPHER_SUITES[c] for c in self.ciphers)

    @cached_property
    def cipher_code_set(self) -> frozenset[int]:
        return frozenset(self.cipher_codes)

    @cached_property
    def group_codes(self) -> tuple[int, ...]:
        return tuple(GROUPS[g] for g in self.groups)

    @cached_property
    def version_codes(self) -> frozenset[int]:
        return frozenset(VERSIONS[v] for v in self.versions)


#: Keys a live change may touch (``name`` is fixed; ``lab_certs`` only matters at load time).
SETTABLE = tuple(f.name for f in fields(TlsProfile) if f.name not in ("name", "certs")) + (
    "cert",
    "key",
    "certs",
)
_TABLE_ONLY = ("lab_certs",)


def _bool(path: str, v: Any) -> bool:
    if type(v) is not bool:
        raise ConfigError(path, "must be true or false", v)
    return v


def _int(path: str, v: Any, lo: int, hi: int) -> int:
    if type(v) is not int:
        raise ConfigError(path, "must be an integer", v)
    if not lo <= v <= hi:
        raise ConfigError(path, f"must be between {lo} and {hi}", v)
    return v


def _str_list(path: str, v: Any, allowed: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
        raise ConfigError(path, "must be a list of strings", v)
    if len(set(v)) != len(v):
        raise ConfigError(path, "has duplicate entries", v)
    if allowed is not None:
        for x in v:
            if x not in allowed:
                raise ConfigError(path, f"unknown name {x!r} (known: {', '.join(allowed)})", v)
    return tuple(v)


def _opt_str(path: str, v: Any) -> str | None:
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise ConfigError(path, "must be a string", v)
    return v


def _names_of(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        return ()


def load_cert_pair(
    cert_file: str,
    key_file: str,
    base_dir: Path,
    path: str,
    lab_certs: bool,
    names: tuple[str, ...] = (),
) -> CertPair:
    """Load one PEM chain + key; ``lab_certs`` generates the files (SAN ``names``) when missing."""
    cpath, kpath = base_dir / cert_file, base_dir / key_file
    if lab_certs and not (cpath.exists() and kpath.exists()):
        from plugins.tls.labcerts import DEFAULT_NAMES, ensure_pair

        ensure_pair(cpath, kpath, names or DEFAULT_NAMES)
    try:
        chain = tuple(x509.load_pem_x509_certificates(cpath.read_bytes()))
    except OSError as exc:
        raise ConfigError(path + ".cert", f"cannot read: {exc.strerror}", cert_file) from None
    except ValueError:
        raise ConfigError(path + ".cert", "not a PEM certificate chain", cert_file) from None
    try:
        key = load_pem_private_key(kpath.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(path + ".key", f"cannot read: {exc.strerror}", key_file) from None
    except (ValueError, TypeError):
        raise ConfigError(path + ".key", "not an unencrypted PEM private key", key_file) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ConfigError(path + ".key", "RSA keys must be 2048 bits or more", key_file)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in ("secp256r1", "secp384r1"):
            raise ConfigError(path + ".key", "ECDSA keys must be P-256 or P-384", key_file)
    else:
        raise ConfigError(path + ".key", "only RSA and ECDSA keys are supported", key_file)
    if chain[0].public_key() != key.public_key():
        raise ConfigError(path + ".key", "does not match the certificate", key_file)
    return CertPair(chain, key, _names_of(chain[0]), f"{cert_file}|{key_file}")


def _certs(
    table: Mapping[str, Any], base_dir: Path, path: str, names: tuple[str, ...] = ()
) -> tuple[CertPair, ...] | None:
    """Certificates from ``cert``/``key`` or ``certs``; None when the table names none."""
    lab = _bool(path + ".lab_certs", table.get("lab_certs", False))
    if "certs" in table:
        if "cert" in table or "key" in table:
            raise ConfigError(path + ".certs", "use either cert+key or certs, not both", None)
        items = table["certs"]
        if not isinstance(items, list) or not items:
            raise ConfigError(path + ".certs", "must be a non-empty list of {cert, key}", items)
        pairs = []
        for i, item in enumerate(items):
            p = f"{path}.certs[{i}]"
            if not isinstance(item, Mapping) or set(item) != {"cert", "key"}:
                raise ConfigError(p, "must be a table with exactly cert and key", item)
            if not isinstance(item["cert"], str) or not isinstance(item["key"], str):
                raise ConfigError(p, "cert and key must be file names", item)
            pairs.append(load_cert_pair(item["cert"], item["key"], base_dir, p, lab, names))
        return tuple(pairs)
    if "cert" in table or "key" in table:
        cert, key = table.get("cert"), table.get("key")
        if not isinstance(cert, str):
            raise ConfigError(path + ".cert", "must be a file name (with key)", cert)
        if not isinstance(key, str):
            raise ConfigError(path + ".key", "must be a file name (with cert)", key)
        return (load_cert_pair(cert, key, base_dir, path, lab, names),)
    return None


def _fields(table: Mapping[str, Any], base_dir: Path, path: str) -> dict[str, Any]:
    """Validate every non-certificate key present in ``table``."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        p = f"{path}.{k}"
        if k in ("cert", "key", "certs", "lab_certs"):
            continue
        if k == "versions":
            out[k] = _str_list(p, v, VERSIONS)
            if not out[k]:
                raise ConfigError(p, "must name at least one version", v)
        elif k == "ciphers":
            out[k] = _str_list(p, v, CIPHER_SUITES)
            if not out[k]:
                raise ConfigError(p, "must name at least one cipher suite", v)
        elif k == "groups":
            out[k] = _str_list(p, v, GROUPS)
            if not out[k]:
                raise ConfigError(p, "must name at least one group", v)
        elif k in ("server_cipher_preference", "session_ticket", "strict_resume"):
            out[k] = _bool(p, v)
        elif k == "cache_size":
            out[k] = _int(p, v, 0, MAX_CACHE_SIZE)
        elif k == "cache_timeout":
            out[k] = _int(p, v, 1, MAX_TIMEOUT)
        elif k == "session_ticket_timeout":
            out[k] = _int(p, v, 0, MAX_TIMEOUT)
        elif k == "ticket_key_rotation":
            out[k] = _int(p, v, 1, MAX_TIMEOUT)
        elif k == "ticket_key_file":
            f = _opt_str(p, v)
            if f is not None:
                fp = base_dir / f
                if not fp.is_file():
                    raise ConfigError(p, "file not found", v)
                f = str(fp)
            out[k] = f
        elif k == "keylog":
            f = _opt_str(p, v)
            out[k] = str(base_dir / f) if f is not None else None
        elif k == "alpn":
            out[k] = _str_list(p, v)
            for x in out[k]:
                if not 0 < len(x.encode()) <= 255:
                    raise ConfigError(p, "ALPN ids are 1-255 bytes", v)
        elif k == "sni":
            out[k] = tuple(x.lower().rstrip(".") for x in _str_list(p, v))
            for x in out[k]:
                if not 0 < len(x) <= 253 or not all(c.isalnum() or c in "-.*_" for c in x):
                    raise ConfigError(p, "not a host name", v)
        else:
            raise ConfigError(p, "unknown key", v)
    return out


def parse_profile(name: str, table: Mapping[str, Any], base_dir: Path, path: str) -> TlsProfile:
    """Validate one ``[profiles.<name>]`` table into a ``TlsProfile``."""
    if not isinstance(table, Mapping):
        raise ConfigError(path, "must be a table", table)
    values = _fields(table, base_dir, path)
    certs = _certs(table, base_dir, path, values.get("sni", ()))
    if certs is None:
        raise ConfigError(path + ".cert", "a profile needs cert+key or certs", None)
    return TlsProfile(name=name, certs=certs, **values)


def apply_changes(
    profile: TlsProfile, changes: Mapping[str, Any], base_dir: Path, path: str
) -> tuple[TlsProfile, list[str]]:
    """Validate ``changes`` like ``parse_profile`` and return the new profile + changed keys."""
    if not isinstance(changes, Mapping):
        raise ConfigError(path, "changes must be a map of key to value", changes)
    for k in changes:
        if not isinstance(k, str) or (k not in SETTABLE and k not in _TABLE_ONLY):
            raise ConfigError(f"{path}.{k}", "unknown or read-only key", changes[k])
    values = _fields(changes, base_dir, path)
    certs = _certs(changes, base_dir, path, values.get("sni", profile.sni))
    if certs is not None:
        values["certs"] = certs
    changed = [k for k, v in values.items() if getattr(profile, k) != v]
    return replace(profile, **values), changed


def describe(profile: TlsProfile) -> dict[str, Any]:
    """Plain data for ``tls.profile.get`` (no key material)."""
    out: dict[str, Any] = {"name": profile.name}
    out["certs"] = [
        {"kind": c.kind, "names": list(c.names), "source": c.source} for c in profile.certs
    ]
    for f in fields(TlsProfile):
        if f.name in ("name", "certs"):
            continue
        v = getattr(profile, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


__all__ = [
    "CIPHER_NAMES",
    "CIPHER_SUITES",
    "GROUPS",
    "SETTABLE",
    "VERSIONS",
    "CertPair",
    "PrivateKey",
    "TlsProfile",
    "apply_changes",
    "describe",
    "load_cert_pair",
    "parse_profile",
]
