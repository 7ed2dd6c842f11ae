"""A scripted TLS 1.2 client built from the engine's own codec, for driving the server into every
state and then sending it exactly the wrong thing. Key agreement is x25519; it speaks the AEAD
and CBC suites the engine speaks."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from plugins.tls import messages as m
from plugins.tls import prf
from plugins.tls.ciphers import SUITES_BY_CODE, CipherSuite
from plugins.tls.record import (
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    Protection,
    RecordLayer,
    make_protection,
)
from plugins.tls.server import TlsServerConnection

ET = m.ExtensionType
HT = m.HandshakeType


def record(ctype: int, payload: bytes, version: int = 0x0303) -> bytes:
    return bytes([ctype]) + version.to_bytes(2, "big") + len(payload).to_bytes(2, "big") + payload


def hello(
    suites: tuple[int, ...] = (0xC02F, 0xC02B),
    extensions: tuple[tuple[int, bytes], ...] | None = None,
    version: int = 0x0303,
    session_id: bytes = b"",
    ems: bool = True,
) -> m.ClientHello:
    if extensions is None:
        exts: list[tuple[int, bytes]] = [
            (ET.supported_groups, bytes.fromhex("0002001d")),
            (ET.ec_point_formats, b"\x01\x00"),
            (ET.signature_algorithms, bytes.fromhex("0006080404030401")),
            (ET.renegotiation_info, b"\x00"),
        ]
        if ems:
            exts.append((ET.extended_master_secret, b""))
        extensions = tuple(exts)
    return m.ClientHello(version, os.urandom(32), session_id, suites, b"\x00", extensions)


@dataclass
class RawClient:
    conn: TlsServerConnection
    transcript: bytearray = field(default_factory=bytearray)
    reader: RecordLayer = field(default_factory=RecordLayer)
    writer: RecordLayer = field(default_factory=RecordLayer)
    messages: list[tuple[int, bytes]] = field(default_factory=list)
    alerts: list[tuple[int, int]] = field(default_factory=list)
    app: bytearray = field(default_factory=bytearray)
    ch: m.ClientHello | None = None
    server_hello: m.ServerHello | None = None
    ske: tuple[int, bytes, int, bytes] | None = None
    master: bytes = b""
    key_block: bytes = b""
    ems: bool = False
    etm: bool = False
    ticket: bytes | None = None

    # ---- raw I/O -------------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._read(self.conn.data_to_send())

    def send(self, ctype: int, payload: bytes) -> None:
        self.writer.write(ctype, payload)
        self.send_raw(self.writer.data_to_send())

    def send_handshake(self, msg_type: int, body: bytes) -> None:
        raw = m.frame(msg_type, body)
        self.transcript += raw
        self.send(CT_HANDSHAKE, raw)

    def _read(self, data: bytes) -> None:
        self.reader.feed(data)
        hs = bytearray()
        while (rec := self.reader.next_record()) is not None:
            ctype, payload = rec
            if ctype == CT_HANDSHAKE:
                hs += payload
                while len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
                    n = 4 + int.from_bytes(hs[1:4], "big")
                    raw = bytes(hs[:n])
                    del hs[:n]
                    self._on_message(raw)
            elif ctype == CT_CHANGE_CIPHER_SPEC:
                self.messages.append((-1, payload))
                self.reader.change_read(self._protection(server_write=True))
            elif ctype == CT_ALERT:
                self.alerts.append((payload[0], payload[1]))
            elif ctype == CT_APPLICATION_DATA:
                self.app += payload

    def _on_message(self, raw: bytes) -> None:
        msg_type, body = raw[0], raw[4:]
        self.messages.append((msg_type, body))
        if msg_type == HT.server_hello:
            self.server_hello = m.ServerHello.parse(body)
            codes = {c for c, _ in self.server_hello.extensions}
            self.ems = ET.extended_master_secret in codes
            self.etm = ET.encrypt_then_mac in codes
            if self.master:  # resuming: the keys follow from the saved master secret
                self._derive()
        elif msg_type == HT.server_key_exchange:
            self.ske = m.parse_server_key_exchange(body)
        elif msg_type == HT.new_session_ticket:
            self.ticket = m.parse_new_session_ticket(body)[1]
        self.transcript += raw

    # ---- handshake steps -----------------------------------------------------------------
    def send_hello(self, ch: m.ClientHello | None = None) -> None:
        self.ch = ch or hello()
        self.send_handshake(HT.client_hello, self.ch.emit())

    @property
    def suite(self) -> CipherSuite:
        assert self.server_hello is not None
        return SUITES_BY_CODE[self.server_hello.cipher_suite]

    def _hash(self) -> bytes:
        return hashlib.new(self.suite.prf_hash, bytes(self.transcript)).digest()

    def send_key_exchange(self, point: bytes | None = None) -> None:
        assert self.ske is not None and self.ch is not None and self.server_hello is not None
        priv = x25519.X25519PrivateKey.generate()
        public = priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.send_handshake(HT.client_key_exchange, m.client_key_exchange(point or public))
        pms = priv.exchange(x25519.X25519PublicKey.from_public_bytes(self.ske[1]))
        h = self.suite.prf_hash
        if self.ems:
            self.master = prf.extended_master_secret(h, pms, self._hash())
        else:
            self.master = prf.master_secret(h, pms, self.ch.random, self.server_hello.random)
        self._derive()

    def _derive(self) -> None:
        assert self.ch is not None and self.server_hello is not None
        self.key_block = prf.key_block(
            self.suite.prf_hash,
            self.master,
            self.server_hello.random,
            self.ch.random,
            self.suite.key_block_len(),
        )

    def _protection(self, server_write: bool) -> Protection:
        return make_protection(self.suite, self.key_block, server_write, self.etm, os.urandom)

    def send_ccs(self) -> None:
        self.send(CT_CHANGE_CIPHER_SPEC, b"\x01")
        self.writer.change_write(self._protection(server_write=False))

    def send_finished(self, verify: bytes | None = None) -> None:
        vd = verify or prf.verify_data(self.suite.prf_hash, self.master, "client", self._hash())
        self.send_handshake(HT.finished, vd)

    def full_handshake(self) -> None:
        self.send_hello()
        self.send_key_exchange()
        self.send_ccs()
        self.send_finished()
