"""TLS 1.2 handshake message codec (RFC 5246 §7.4 and the extension RFCs), Buffer-based.

Parsers raise :class:`~pipeline.errors.DecodeError` for malformed bytes and
:class:`~plugins.tls.alerts.TlsAlert` for well-formed but illegal content (duplicate extensions,
bad point formats); emitters return the message body without the 4-byte handshake header
(``frame`` adds it). ``ClientHello`` and ``HelloExtensions``, built once per handshake, are plain
slotted dataclasses (read-only by convention; a frozen dataclass costs five times as much to build).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from pipeline.buffer import Buffer
from pipeline.errors import ApiError, DecodeError
from plugins.tls.alerts import TlsAlert


class HandshakeType(IntEnum):
    hello_request = 0
    client_hello = 1
    server_hello = 2
    new_session_ticket = 4
    certificate = 11
    server_key_exchange = 12
    certificate_request = 13
    server_hello_done = 14
    certificate_verify = 15
    client_key_exchange = 16
    finished = 20


class ExtensionType(IntEnum):
    server_name = 0
    supported_groups = 10
    ec_point_formats = 11
    signature_algorithms = 13
    alpn = 16
    encrypt_then_mac = 22
    extended_master_secret = 23
    session_ticket = 35
    supported_versions = 43
    renegotiation_info = 0xFF01


HT = HandshakeType
ET = ExtensionType
MAX_HANDSHAKE_MESSAGE = 1 << 16  # bound on any message we accept from a client


_U16 = struct.Struct("!H").pack
_U32 = struct.Struct("!I").pack
_FRAME_HEAD = struct.Struct("!I").pack


def frame(msg_type: int, body: bytes) -> bytes:
    """Handshake header (type, uint24 length) + body."""
    if len(body) > 0xFFFFFF:
        raise ApiError("handshake message longer than 2^24-1 bytes")
    return _FRAME_HEAD((msg_type << 24) | len(body)) + body


_CH_HEAD = struct.Struct("!H32sB").unpack_from  # ClientHello version, random, session ID length
_EXT_HEADER = struct.Struct("!HH").unpack_from  # extension type, length
_ECDHE_HEAD = struct.Struct("!BHB").pack  # curve_type, NamedCurve, ECPoint length
_U16_STRUCTS: dict[int, struct.Struct] = {}


def _u16s(count: int) -> struct.Struct:
    """A compiled ``!<count>H`` (cached: lists of 16-bit codes are parsed on every ClientHello)."""
    s = _U16_STRUCTS.get(count)
    if s is None:
        s = struct.Struct(f"!{count}H")
        if len(_U16_STRUCTS) < 512:  # bounded: a count is at most 2^15 anyway
            _U16_STRUCTS[count] = s
    return s


def is_grease(v: int) -> bool:
    """RFC 8701 GREASE values 0x?A?A."""
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


# ---- ClientHello -----------------------------------------------------------------------------
@dataclass(slots=True)
class ClientHello:
    version: int
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: bytes = b"\x00"
    extensions: tuple[tuple[int, bytes], ...] = ()  # raw, in order; None-block when absent
    has_extensions_block: bool = True

    @classmethod
    def parse(cls, body: bytes) -> ClientHello:
        # Hot path (one per handshake): direct indexing instead of Buffer blocks; same checks.
        b = bytes(body)
        n = len(b)
        if n < 35:
            raise DecodeError("truncated ClientHello")
        version, random, sid_len = _CH_HEAD(b)
        if sid_len > 32:
            raise DecodeError("session_id longer than 32 bytes")
        p = 35 + sid_len
        if p + 2 > n:
            raise DecodeError("truncated ClientHello")
        session_id = b[35:p]
        cs_len = (b[p] << 8) | b[p + 1]
        p += 2
        if cs_len < 2 or cs_len % 2:
            raise DecodeError("cipher_suites length must be even and non-zero")
        if p + cs_len + 1 > n:
            raise DecodeError("truncated ClientHello")
        suites = _u16s(cs_len // 2).unpack_from(b, p)
        p += cs_len
        cm_len = b[p]
        p += 1
        if not cm_len:
            raise DecodeError("empty compression_methods")
        if p + cm_len > n:
            raise DecodeError("truncated ClientHello")
        compression = b[p : p + cm_len]
        p += cm_len
        exts: list[tuple[int, bytes]] = []
        has_block = p < n
        if has_block:
            if p + 2 > n:
                raise DecodeError("truncated extensions block")
            end = p + 2 + ((b[p] << 8) | b[p + 1])
            p += 2
            if end > n:
                raise DecodeError("truncated extensions block")
            seen: set[int] = set()
            header = _EXT_HEADER
            while p < end:
                if p + 4 > end:
                    raise DecodeError("truncated extension header")
                code, ext_len = header(b, p)
                q = p + 4 + ext_len
                if q > end:
                    raise DecodeError("truncated extension")
                if code in seen:
                    raise TlsAlert("duplicate_extension", f"extension {code} twice")
                seen.add(code)
                exts.append((code, b[p + 4 : q]))
                p = q
            if end != n:
                raise DecodeError(f"{n - end} trailing bytes")
        return cls(version, random, session_id, suites, compression, tuple(exts), has_block)

    def emit(self) -> bytes:
        buf = Buffer()
        buf.push_uint16(self.version)
        buf.push_bytes(self.random)
        buf.push_opaque(1, self.session_id)
        with buf.push_block(2):
            for s in self.cipher_suites:
                buf.push_uint16(s)
        buf.push_opaque(1, self.compression_methods)
        if self.has_extensions_block or self.extensions:
            with buf.push_block(2):
                for code, data in self.extensions:
                    buf.push_uint16(code)
                    buf.push_opaque(2, data)
        return buf.data()

    def ext(self, code: int) -> bytes | None:
        for c, data in self.extensions:
            if c == code:
                return data
        return None


@dataclass(slots=True)
class HelloExtensions:
    """The ClientHello extensions the server acts on, decoded."""

    sni: str | None = None
    groups: tuple[int, ...] | None = None
    point_formats: bytes | None = None
    signature_algorithms: tuple[int, ...] | None = None
    alpn: tuple[str, ...] | None = None
    ems: bool = False
    etm: bool = False
    ticket: bytes | None = None
    renegotiation_info: bytes | None = None
    supported_versions: tuple[int, ...] | None = None
    unknown: tuple[int, ...] = field(default=())


def _body_len(data: bytes, len_bytes: int, what: str) -> int:
    """The length of a vector behind a 1- or 2-byte length prefix that must fill ``data``."""
    n = len(data) - len_bytes
    if n < 0 or (data[0] if len_bytes == 1 else (data[0] << 8) | data[1]) != n:
        raise DecodeError(f"{what}: bad length")
    return n


def _vec(data: bytes, len_bytes: int, what: str) -> bytes:
    """The body of a length-prefixed vector that must fill ``data`` exactly."""
    _body_len(data, len_bytes, what)
    return data[len_bytes:]


def _u16_list(what: str, len_bytes: int = 2) -> Callable[[bytes], tuple[int, ...]]:
    """Decoder of a length-prefixed list of 16-bit codes that fills the extension exactly."""

    def decode(data: bytes) -> tuple[int, ...]:
        n = _body_len(data, len_bytes, what)  # as _vec, without the copy
        if n % 2 or not n:
            raise DecodeError(f"{what}: bad list length")
        return _u16s(n // 2).unpack_from(data, len_bytes)

    return decode


_groups = _u16_list("supported_groups")
_signature_algorithms = _u16_list("signature_algorithms")
_supported_versions = _u16_list("supported_versions", 1)


def _parse_sni(data: bytes) -> str | None:
    v = _vec(data, 2, "server_name")
    if not v:
        raise DecodeError("server_name: empty list")
    host: str | None = None
    p, n = 0, len(v)
    while p < n:
        if p + 3 > n:
            raise DecodeError("server_name: truncated entry")
        name_type, ln = v[p], (v[p + 1] << 8) | v[p + 2]
        p += 3
        if p + ln > n:
            raise DecodeError("server_name: truncated name")
        name = v[p : p + ln]
        p += ln
        if name_type != 0:
            continue
        if host is not None:
            raise DecodeError("server_name: two host names")
        if not name:
            raise DecodeError("server_name: empty host name")
        try:
            host = name.decode("ascii").rstrip(".").lower()
        except UnicodeDecodeError:
            raise DecodeError("server_name: not ASCII") from None
    return host


def _parse_alpn(data: bytes) -> tuple[str, ...]:
    v = _vec(data, 2, "alpn")
    if len(v) < 2:
        raise DecodeError("alpn: empty list")
    out: list[str] = []
    p, n = 0, len(v)
    while p < n:
        ln = v[p]
        if not ln or p + 1 + ln > n:
            raise DecodeError("alpn: bad protocol name")
        out.append(v[p + 1 : p + 1 + ln].decode("latin-1"))
        p += 1 + ln
    return tuple(out)


def _empty(what: str) -> Callable[[bytes], bool]:
    """Decoder of an extension that must be empty (its presence is the information)."""

    def decode(data: bytes) -> bool:
        if data:
            raise DecodeError(f"{what}: must be empty")
        return True

    return decode


def _point_formats(data: bytes) -> bytes:
    formats = _vec(data, 1, "ec_point_formats")
    if not formats:
        raise DecodeError("ec_point_formats: empty")
    if 0 not in formats:
        raise TlsAlert("no_uncompressed_point_format")
    return formats


# extension code -> (HelloExtensions field, decoder); a dispatch table, one entry per extension
_EXTENSION_DECODERS: dict[int, tuple[str, Callable[[bytes], object]]] = {
    ET.server_name: ("sni", _parse_sni),
    ET.supported_groups: ("groups", _groups),
    ET.ec_point_formats: ("point_formats", _point_formats),
    ET.signature_algorithms: ("signature_algorithms", _signature_algorithms),
    ET.alpn: ("alpn", _parse_alpn),
    ET.extended_master_secret: ("ems", _empty("extended_master_secret")),
    ET.encrypt_then_mac: ("etm", _empty("encrypt_then_mac")),
    ET.session_ticket: ("ticket", lambda d: d),
    ET.renegotiation_info: ("renegotiation_info", lambda d: _vec(d, 1, "renegotiation_info")),
    ET.supported_versions: ("supported_versions", _supported_versions),
}
_DECODERS_BY_INT = {int(k): v for k, v in _EXTENSION_DECODERS.items()}


def parse_extensions(ch: ClientHello) -> HelloExtensions:
    """Decode the extensions the server uses; unknown ones (incl. GREASE) are kept by code only."""
    ext = HelloExtensions()
    unknown: list[int] = []
    decoders = _DECODERS_BY_INT
    for code, data in ch.extensions:
        entry = decoders.get(code)
        if entry is None:
            unknown.append(code)
        else:
            setattr(ext, entry[0], entry[1](data))
    if unknown:
        ext.unknown = tuple(unknown)
    return ext


# ---- server messages -------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerHello:
    random: bytes
    session_id: bytes
    cipher_suite: int
    extensions: tuple[tuple[int, bytes], ...] = ()
    version: int = 0x0303

    def emit(self) -> bytes:
        # Hot path (one per handshake): plain concatenation, no Buffer blocks.
        if len(self.session_id) > 32:
            raise ApiError("session_id longer than 32 bytes")
        head = b"".join(
            (
                self.version.to_bytes(2, "big"),
                self.random,
                bytes((len(self.session_id),)),
                self.session_id,
                self.cipher_suite.to_bytes(2, "big"),
                b"\x00",
            )
        )
        if not self.extensions:
            return head
        exts = b"".join(
            code.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data
            for code, data in self.extensions
        )
        return head + len(exts).to_bytes(2, "big") + exts

    @classmethod
    def parse(cls, body: bytes) -> ServerHello:
        buf = Buffer(body)
        version = buf.pull_uint16()
        random = buf.pull_bytes(32)
        session_id = buf.pull_opaque(1)
        if len(session_id) > 32:
            raise DecodeError("session_id longer than 32 bytes")
        suite = buf.pull_uint16()
        if buf.pull_uint8() != 0:
            raise DecodeError("compression method must be null")
        exts: list[tuple[int, bytes]] = []
        if not buf.eof():
            with buf.pull_block(2):
                while not buf.eof():
                    exts.append((buf.pull_uint16(), buf.pull_opaque(2)))
        buf.expect_end()
        return cls(random, session_id, suite, tuple(exts), version)


def extensions_block(extensions: tuple[tuple[int, bytes], ...]) -> bytes:
    """The uint16-length-prefixed extensions block of a hello (``b""`` when there are none)."""
    if not extensions:
        return b""
    exts = b"".join(_U16(code) + _U16(len(data)) + data for code, data in extensions)
    if len(exts) > 0xFFFF:
        raise ApiError("extensions block longer than 2^16-1 bytes")
    return _U16(len(exts)) + exts


def server_hello(random: bytes, session_id: bytes, cipher_suite: int, ext_block: bytes) -> bytes:
    """ServerHello body (TLS 1.2, null compression) with an already encoded extensions block:
    the same bytes as ``ServerHello(...).emit()``, for the per-handshake path."""
    if len(session_id) > 32 or len(random) != 32:
        raise ApiError("ServerHello random must be 32 bytes, session_id at most 32")
    return (
        b"".join(
            (
                b"\x03\x03",
                random,
                bytes((len(session_id),)),
                session_id,
                _U16(cipher_suite),
                b"\x00",
            )
        )
        + ext_block
    )


def certificate(chain_der: list[bytes] | tuple[bytes, ...]) -> bytes:
    buf = Buffer()
    with buf.push_block(3):
        for der in chain_der:
            buf.push_opaque(3, der)
    return buf.data()


def ecdhe_params(group: int, public: bytes) -> bytes:
    """ServerECDHParams: curve_type named_curve(3), NamedCurve, ECPoint (RFC 8422 §5.4)."""
    return _ECDHE_HEAD(3, group, len(public)) + public


def server_key_exchange(params: bytes, scheme: int, signature: bytes) -> bytes:
    if len(signature) > 0xFFFF:
        raise ApiError("signature longer than 2^16-1 bytes")
    return b"".join((params, _U16(scheme), _U16(len(signature)), signature))


def parse_server_key_exchange(body: bytes) -> tuple[int, bytes, int, bytes]:
    """(group, public point, scheme, signature) — used by tests and tools."""
    buf = Buffer(body)
    if buf.pull_uint8() != 3:
        raise DecodeError("curve_type must be named_curve")
    group = buf.pull_uint16()
    public = buf.pull_opaque(1)
    scheme = buf.pull_uint16()
    sig = buf.pull_opaque(2)
    buf.expect_end()
    return group, public, scheme, sig


def parse_client_key_exchange(body: bytes) -> bytes:
    """ClientECDiffieHellmanPublic: the client's point, <1..2^8-1>."""
    buf = Buffer(body)
    point = buf.pull_opaque(1)
    buf.expect_end()
    if not point:
        raise DecodeError("empty ECDH public value")
    return point


def client_key_exchange(point: bytes) -> bytes:
    return bytes([len(point)]) + point


def new_session_ticket(lifetime_hint: int, ticket: bytes) -> bytes:
    if len(ticket) > 0xFFFF or not 0 <= lifetime_hint <= 0xFFFFFFFF:
        raise ApiError("ticket or lifetime hint out of range")
    return b"".join((_U32(lifetime_hint), _U16(len(ticket)), ticket))


def parse_new_session_ticket(body: bytes) -> tuple[int, bytes]:
    buf = Buffer(body)
    hint = buf.pull_uint32()
    ticket = buf.pull_opaque(2)
    buf.expect_end()
    return hint, ticket


def parse_finished(body: bytes) -> bytes:
    if len(body) != 12:
        raise DecodeError(f"Finished of {len(body)} bytes (want 12)")
    return body


__all__ = [
    "MAX_HANDSHAKE_MESSAGE",
    "ClientHello",
    "ExtensionType",
    "HandshakeType",
    "HelloExtensions",
    "ServerHello",
    "certificate",
    "client_key_exchange",
    "extensions_block",
    "ecdhe_params",
    "frame",
    "is_grease",
    "new_session_ticket",
    "parse_client_key_exchange",
    "parse_extensions",
    "parse_finished",
    "parse_new_session_ticket",
    "parse_server_key_exchange",
    "server_hello",
    "server_key_exchange",
]
