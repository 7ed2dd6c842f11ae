"""The TLS 1.2 server handshake: one small class per state (rustls style).

Each state holds only its own data and has ``handle(hs, msg) -> next state``; ``ACCEPTS`` lists the
message kinds it takes (the connection raises ``unexpected_<message>_in_<state>`` for any other).
``Handshake`` carries what every state shares (randoms, transcript, negotiated parameters, the
resumption decision) and the few outputs states need (queue a handshake message, send
ChangeCipherSpec, switch keys). The full and abbreviated flights follow RFC 5246 §7.3, RFC 5077
§3.1 (ticket issue/resume) and RFC 7627 (extended master secret).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from plugins.tls import messages as m
from plugins.tls import prf
from plugins.tls.alerts import TlsAlert
from plugins.tls.certs import CertEntry, CertResolver, sign
from plugins.tls.ciphers import (
    DEFAULT_CLIENT_SCHEMES,
    SUITES_BY_CODE,
    TLS_EMPTY_RENEGOTIATION_INFO_SCSV,
    TLS_FALLBACK_SCSV,
    CipherSuite,
    Group,
    is_supported_group,
)
from plugins.tls.keylog import client_random_line
from plugins.tls.record import CT_CHANGE_CIPHER_SPEC, CT_HANDSHAKE, RecordLayer, make_protection
from plugins.tls.resumption import Decision, HelloOffer
from plugins.tls.session import SessionState

HT = m.HandshakeType
ET = m.ExtensionType
CCS = 0x100  # pseudo message kind for ChangeCipherSpec
TLS12 = 0x0303
# Plain ints on the per-handshake path: reading an IntEnum member costs ~70 ns, and arithmetic
# on one (the handshake header) is slower than on an int.
_SERVER_HELLO = int(HT.server_hello)
_SERVER_KEY_EXCHANGE = int(HT.server_key_exchange)
_SERVER_HELLO_DONE = m.frame(HT.server_hello_done, b"")  # the whole message: empty body
_NEW_SESSION_TICKET = int(HT.new_session_ticket)
_FINISHED = int(HT.finished)
_X25519 = int(Group.x25519)

_ORDERS: dict[int, int] = {
    Group.secp256r1: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    Group.secp384r1: int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
}
_CURVES: dict[int, ec.EllipticCurve] = {
    Group.secp256r1: ec.SECP256R1(),
    Group.secp384r1: ec.SECP384R1(),
}


class Resumption(Protocol):
    """What the engine needs from ``plugins.tls.resumption.ProfileRuntime``."""

    profile: Any

    def decide(
        self, offer: HelloOffer, wall_now: float, rng: Callable[[int], bytes]
    ) -> Decision: ...

    def finish_full(self, decision: Decision, state: SessionState, wall_now: float) -> None: ...

    def new_ticket(self, state: SessionState, wall_now: float) -> tuple[bytes, int, str]: ...

    def session_closed(self, session_id: bytes, clean: bool, wall_now: float) -> None: ...


class Message:
    """One handshake message (or ChangeCipherSpec) as the states see it."""

    __slots__ = ("body", "kind", "raw")

    def __init__(self, kind: int, body: bytes, raw: bytes = b"") -> None:
        self.kind = kind  # HandshakeType, or CCS
        self.body = body
        self.raw = raw  # full handshake message (header + body) for the transcript


class Handshake:
    """Shared handshake data and the outputs states use; owned by the connection.

    A plain class with class-level defaults (one per handshake: only the per-connection fields
    are set in ``__init__``). Secrets (``master_secret``, key block, keyed PRF) are never in a
    repr: the class has none but ``object``'s."""

    wall_now: float = 0.0
    # negotiated
    client_random: bytes = b""
    server_random: bytes = b""
    client_session_id: bytes = b""
    session_id: bytes = b""
    suite: CipherSuite | None = None
    group: int | None = None
    sni: str | None = None
    alpn: str | None = None
    ems: bool = False
    etm: bool = False
    secure_renegotiation: bool = False
    master_secret: bytes = b""
    decision: Decision | None = None
    offered: str = "none"
    tickets_issued: int = 0
    ticket_key: str | None = None
    complete: bool = False
    _transcript: Any = None
    # transcript_hash() until the next message: with EMS the session hash (RFC 7627) is also
    # what the client's Finished covers (ChangeCipherSpec is not a handshake message).
    _digest: bytes | None = None
    # Messages before the suite (and so the transcript hash) is known: the ClientHello, as is
    # (b"" + raw is raw itself: no copy).
    _pending: bytes = b""
    _key_block: bytes = b""
    _ms_key: prf.HmacKey | None = None  # keyed with master_secret

    def __init__(
        self,
        runtime: Resumption,
        resolver: CertResolver,
        rng: Callable[[int], bytes],
        record: RecordLayer,
        keylog: Callable[[str], None] | None,
    ) -> None:
        self.runtime = runtime
        self.resolver = resolver
        self.rng = rng
        # The connection's record layer, not callbacks into the connection: no reference cycle,
        # so a finished connection is freed by reference counting (a cycle left every connection
        # to the cyclic GC: ~5 µs per resumed handshake).
        self.record = record
        self.out = bytearray()  # handshake messages queued for the next handshake record
        self.keylog = keylog
        self.history: list[str] = []

    # ---- transcript ----------------------------------------------------------------------
    def add(self, raw: bytes) -> None:
        if self._transcript is None:
            self._pending += raw
        else:
            self._transcript.update(raw)
            self._digest = None

    def start_transcript(self, suite: CipherSuite) -> None:
        self._transcript = prf.new_hash(suite.prf_hash, self._pending)
        self._pending = b""

    def transcript_hash(self) -> bytes:
        digest = self._digest
        if digest is None:
            digest = self._digest = self._transcript.copy().digest()
        return digest

    def send(self, msg_type: int, body: bytes) -> None:
        self.send_raw(m.frame(msg_type, body))

    def send_raw(self, raw: bytes) -> None:
        """Queue already framed handshake messages (one, or a flight's worth concatenated)."""
        self.add(raw)
        self.out += raw

    def flush(self) -> None:
        """The queued handshake messages as one record."""
        out = self.out
        if out:
            self.record.write(CT_HANDSHAKE, bytes(out))
            out.clear()

    def send_ccs(self) -> None:
        """Flush the queued handshake messages, send ChangeCipherSpec and switch write keys."""
        self.flush()
        self.record.write(CT_CHANGE_CIPHER_SPEC, b"\x01")
        self.record.change_write(self.protection(server_write=True))

    # ---- keys ----------------------------------------------------------------------------
    def derive_keys(self) -> None:
        assert self.suite is not None
        s = self.suite
        self._ms_key = prf.HmacKey(s.prf_hash, self.master_secret)
        self._key_block = prf.key_block(
            s.prf_hash, self._ms_key, self.server_random, self.client_random, s.key_block_len()
        )
        if self.keylog is not None:  # the line is only formatted when someone logs it
            self.keylog(client_random_line(self.client_random, self.master_secret))

    def protection(self, server_write: bool) -> Any:
        assert self.suite is not None
        return make_protection(self.suite, self._key_block, server_write, self.etm, self.rng)

    def finished(self, sender: str, handshake_hash: bytes) -> bytes:
        assert self.suite is not None and self._ms_key is not None
        return prf.verify_data(self.suite.prf_hash, self._ms_key, sender, handshake_hash)

    def session_state(self) -> SessionState:
        assert self.suite is not None
        return SessionState(
            TLS12, self.suite.code, self.master_secret, self.ems, self.sni, self.alpn, self.wall_now
        )

    def issue_ticket(self, state: SessionState) -> None:
        ticket, hint, key_name = self.runtime.new_ticket(state, self.wall_now)
        self.send(_NEW_SESSION_TICKET, m.new_session_ticket(hint, ticket))
        self.tickets_issued += 1
        self.ticket_key = key_name
        self.history.append("t")

    def send_server_finished(self) -> None:
        self.send_ccs()
        self.history.append("g")
        self.send(_FINISHED, self.finished("server", self.transcript_hash()))
        self.history.append("f")


class State:
    NAME: ClassVar[str] = "state"
    ACCEPTS: ClassVar[frozenset[int]] = frozenset()

    def handle(self, hs: Handshake, msg: Message) -> State:
        raise NotImplementedError


# ---- ClientHello -----------------------------------------------------------------------------
def _check_version(ch: m.ClientHello, ext: m.HelloExtensions) -> None:
    if ext.supported_versions is not None:
        versions = [v for v in ext.supported_versions if not m.is_grease(v)]
        if TLS12 not in versions:
            if any(v > TLS12 for v in versions):
                raise TlsAlert("tls13_only", "supported_versions lacks TLS 1.2")
            raise TlsAlert("version_too_old", "supported_versions lacks TLS 1.2")
    if ch.version < TLS12:
        if TLS_FALLBACK_SCSV in ch.cipher_suites:
            raise TlsAlert("inappropriate_fallback")
        raise TlsAlert("version_too_old", f"client_version 0x{ch.version:04x}")


def _choose_group(hs: Handshake, client_groups: tuple[int, ...] | None) -> int | None:
    ours = hs.runtime.profile.group_codes
    if client_groups is None:  # RFC 8422 §4: no extension, any curve; prefer P-256 as most common
        return Group.secp256r1 if Group.secp256r1 in ours else (ours[0] if ours else None)
    if hs.runtime.profile.server_cipher_preference:
        for g in ours:
            if g in client_groups:
                return g
        return None
    for g in client_groups:
        if g in ours and is_supported_group(g):
            return g
    return None


def _suite_order(hs: Handshake, offered: tuple[int, ...]) -> list[CipherSuite]:
    # A profile's codes are validated against ciphers.SUITES: every enabled code has a suite.
    profile = hs.runtime.profile
    if profile.server_cipher_preference:
        return [SUITES_BY_CODE[c] for c in profile.cipher_codes if c in offered]
    enabled_set = profile.cipher_code_set
    return [SUITES_BY_CODE[c] for c in offered if c in enabled_set]


def _choose_alpn(hs: Handshake, client: tuple[str, ...] | None) -> str | None:
    ours = hs.runtime.profile.alpn
    if not ours or client is None:
        return None
    for proto in ours:
        if proto in client:
            return str(proto)
    raise TlsAlert("no_application_protocol", f"client offered {list(client)}")


def _server_hello_extensions(
    reneg: bool, ems: bool, etm: bool, point_formats: bool, ticket: bool, alpn: str | None
) -> bytes:
    exts: list[tuple[int, bytes]] = []
    if reneg:
        exts.append((ET.renegotiation_info, b"\x00"))
    if ems:
        exts.append((ET.extended_master_secret, b""))
    if etm:
        exts.append((ET.encrypt_then_mac, b""))
    if point_formats:
        exts.append((ET.ec_point_formats, b"\x01\x00"))
    if ticket:
        exts.append((ET.session_ticket, b""))
    if alpn is not None:
        proto = alpn.encode("latin-1")
        exts.append((ET.alpn, (len(proto) + 1).to_bytes(2, "big") + bytes([len(proto)]) + proto))
    return m.extensions_block(tuple(exts))


# Encoded ServerHello extension blocks by what they say (a few dozen combinations in practice;
# ALPN names come from profiles, not clients). Bounded: past the bound, blocks are not cached.
_SH_EXTENSIONS: dict[tuple[bool, bool, bool, bool, bool, str | None], bytes] = {}
_SH_EXTENSIONS_MAX = 256


class ExpectClientHello(State):
    NAME = "expect_client_hello"
    ACCEPTS = frozenset({HT.client_hello})

    def handle(self, hs: Handshake, msg: Message) -> State:
        hs.history.append("c")
        hs.add(msg.raw)
        ch = m.ClientHello.parse(msg.body)
        hs.client_random, hs.client_session_id = ch.random, ch.session_id
        ext = m.parse_extensions(ch)
        hs.sni = ext.sni
        _check_version(ch, ext)
        if 0 not in ch.compression_methods:
            raise TlsAlert("no_null_compression")
        if ext.renegotiation_info not in (None, b""):
            raise TlsAlert(
                "bad_renegotiation_info", "non-empty renegotiation_info in initial hello"
            )
        hs.secure_renegotiation = (
            ext.renegotiation_info is not None
            or TLS_EMPTY_RENEGOTIATION_INFO_SCSV in ch.cipher_suites
        )
        hs.offered = "ticket" if ext.ticket else ("session_id" if ch.session_id else "none")
        offer = HelloOffer(ch.session_id, ext.ticket, ch.cipher_suites, ext.sni, ext.ems)
        decision = hs.runtime.decide(offer, hs.wall_now, hs.rng)
        hs.decision = decision
        hs.offered = decision.offered
        hs.session_id = decision.server_session_id
        hs.server_random = hs.rng(32)
        hs.alpn = _choose_alpn(hs, ext.alpn)
        if decision.resumed is not None:
            return self._resume(hs, ch, ext, decision, decision.resumed)
        return self._full(hs, ch, ext, decision)

    def _server_hello(
        self, hs: Handshake, ext: m.HelloExtensions, send_ticket_ext: bool, point_formats: bool
    ) -> bytes:
        """The framed ServerHello (the caller queues it, with the rest of its flight)."""
        assert hs.suite is not None
        key = (
            hs.secure_renegotiation,
            hs.ems,
            hs.etm,
            point_formats and ext.point_formats is not None,
            send_ticket_ext,
            hs.alpn,
        )
        block = _SH_EXTENSIONS.get(key)
        if block is None:
            block = _server_hello_extensions(*key)
            if len(_SH_EXTENSIONS) < _SH_EXTENSIONS_MAX:
                _SH_EXTENSIONS[key] = block
        hs.history.append("s")
        return m.frame(
            _SERVER_HELLO, m.server_hello(hs.server_random, hs.session_id, hs.suite.code, block)
        )

    def _resume(
        self,
        hs: Handshake,
        ch: m.ClientHello,
        ext: m.HelloExtensions,
        decision: Decision,
        state: SessionState,
    ) -> State:
        suite = SUITES_BY_CODE.get(state.cipher_suite)
        if suite is None or suite.code not in ch.cipher_suites:
            raise TlsAlert("internal_error", "resumed suite not offered")
        hs.suite, hs.ems, hs.master_secret = suite, state.ems, state.master_secret
        hs.etm = ext.etm and not suite.aead
        hs.start_transcript(suite)
        hs.send_raw(self._server_hello(hs, ext, decision.send_ticket_ext, point_formats=False))
        hs.derive_keys()
        if decision.send_ticket_ext:
            hs.issue_ticket(state)
        if decision.ticket_key:
            # A resumed handshake names the key that *opened* the ticket (the re-issued ticket's
            # key is the current one); that is what explains the resumption.
            hs.ticket_key = decision.ticket_key
        hs.send_server_finished()
        return EXPECT_CCS_RESUMED

    def _full(
        self, hs: Handshake, ch: m.ClientHello, ext: m.HelloExtensions, decision: Decision
    ) -> State:
        suites = _suite_order(hs, ch.cipher_suites)
        if not suites:
            raise TlsAlert("no_shared_cipher", "no enabled suite offered")
        group = _choose_group(hs, ext.groups)
        if group is None:
            raise TlsAlert("no_shared_group")
        schemes = ext.signature_algorithms or DEFAULT_CLIENT_SCHEMES
        chosen: tuple[CipherSuite, CertEntry, int] | None = None
        for suite in suites:
            pick = hs.resolver.choose(
                suite.auth, ext.sni, schemes, ext.groups, ext.signature_algorithms is None
            )
            if pick is not None:
                chosen = (suite, pick[0], pick[1])
                break
        if chosen is None:
            raise TlsAlert("no_usable_certificate", "no certificate fits the offered suites")
        suite, cert, scheme = chosen
        hs.suite, hs.group = suite, group
        hs.ems = ext.ems
        hs.etm = ext.etm and not suite.aead
        hs.start_transcript(suite)
        server_hello = self._server_hello(hs, ext, decision.send_ticket_ext, point_formats=True)
        hs.history.append("x")  # Certificate: framed once per certificate (CertEntry)
        private, public = _ecdhe_keypair(group, hs.rng)
        params = m.ecdhe_params(group, public)
        signature = sign(cert, scheme, hs.client_random + hs.server_random + params)
        ske = m.frame(_SERVER_KEY_EXCHANGE, m.server_key_exchange(params, scheme, signature))
        hs.history.append("k")
        # The flight in one piece: one transcript update, one append.
        hs.send_raw(b"".join((server_hello, cert.certificate_message, ske, _SERVER_HELLO_DONE)))
        return ExpectClientKeyExchange(group, private)


def _ecdhe_keypair(group: int, rng: Callable[[int], bytes]) -> tuple[Any, bytes]:
    if group == _X25519:
        priv = x25519.X25519PrivateKey.from_private_bytes(rng(32))
        return priv, priv.public_key().public_bytes_raw()
    order = _ORDERS[group]
    scalar = int.from_bytes(rng(64), "big") % (order - 1) + 1
    key = ec.derive_private_key(scalar, _CURVES[group])
    return key, key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _ecdhe_shared(group: int, private: Any, point: bytes) -> bytes:
    try:
        if group == _X25519:
            if len(point) != 32:
                raise ValueError("x25519 point must be 32 bytes")
            shared: bytes = private.exchange(x25519.X25519PublicKey.from_public_bytes(point))
            return shared
        if point[:1] != b"\x04":
            raise ValueError("point must be uncompressed")
        peer = ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[group], point)
        return bytes(private.exchange(ec.ECDH(), peer))
    except ValueError as exc:  # invalid point, all-zero x25519 result, ...
        raise TlsAlert("bad_key_share", str(exc)) from None


# ---- after the server flight -----------------------------------------------------------------
class ExpectClientKeyExchange(State):
    NAME = "expect_client_key_exchange"
    ACCEPTS = frozenset({HT.client_key_exchange})

    def __init__(self, group: int, private: Any) -> None:
        self.group, self.private = group, private

    def handle(self, hs: Handshake, msg: Message) -> State:
        assert hs.suite is not None
        hs.history.append("k")
        point = m.parse_client_key_exchange(msg.body)
        pms = _ecdhe_shared(self.group, self.private, point)
        hs.add(msg.raw)
        if hs.ems:
            session_hash = hs.transcript_hash()
            hs.master_secret = prf.extended_master_secret(hs.suite.prf_hash, pms, session_hash)
        else:
            hs.master_secret = prf.master_secret(
                hs.suite.prf_hash, pms, hs.client_random, hs.server_random
            )
        hs.derive_keys()
        return EXPECT_CCS_FULL


class ExpectChangeCipherSpec(State):
    NAME = "expect_change_cipher_spec"
    ACCEPTS = frozenset({CCS})

    def __init__(self, next_state: State) -> None:
        self.next = next_state  # ExpectFinished of the same kind (full or resumed)

    def handle(self, hs: Handshake, msg: Message) -> State:
        hs.history.append("g")
        hs.record.change_read(hs.protection(server_write=False))
        return self.next


class ExpectFinished(State):
    NAME = "expect_finished"
    ACCEPTS = frozenset({HT.finished})

    def __init__(self, resumed: bool) -> None:
        self.resumed = resumed

    def handle(self, hs: Handshake, msg: Message) -> State:
        hs.history.append("i")
        got = m.parse_finished(msg.body)
        want = hs.finished("client", hs.transcript_hash())
        if not hmac.compare_digest(got, want):
            raise TlsAlert("bad_finished", "client Finished verify_data mismatch")
        hs.add(msg.raw)
        if not self.resumed:
            assert hs.decision is not None
            state = hs.session_state()
            if hs.decision.send_ticket_ext:
                hs.issue_ticket(state)
            hs.runtime.finish_full(hs.decision, state, hs.wall_now)
            hs.send_server_finished()
        hs.complete = True
        return TRAFFIC


class Traffic(State):
    """Handshake done. A new ClientHello is a renegotiation attempt, refused by the connection."""

    NAME = "traffic"
    ACCEPTS = frozenset({HT.client_hello})

    def handle(self, hs: Handshake, msg: Message) -> State:
        return self


# The states after ClientHello that hold no per-connection data: one instance each serves every
# connection (ExpectClientKeyExchange holds the connection's ECDHE key and is made per handshake).
TRAFFIC = Traffic()
EXPECT_CCS_FULL = ExpectChangeCipherSpec(ExpectFinished(resumed=False))
EXPECT_CCS_RESUMED = ExpectChangeCipherSpec(ExpectFinished(resumed=True))

__all__ = [
    "CCS",
    "EXPECT_CCS_FULL",
    "EXPECT_CCS_RESUMED",
    "TRAFFIC",
    "ExpectChangeCipherSpec",
    "ExpectClientHello",
    "ExpectClientKeyExchange",
    "ExpectFinished",
    "Handshake",
    "Message",
    "Resumption",
    "State",
    "Traffic",
]
