"""The TLS 1.2 record layer (RFC 5246 §6): framing, fragmentation and record protection.

Incoming bytes are framed into records (``next_record``); outgoing payloads are cut into
fragments of at most 2^14 bytes and protected (``write``). Protection objects:

* :class:`AeadGcm` — AES-GCM, 4-byte implicit salt + 8-byte explicit nonce (RFC 5288 §3); we send
  the sequence number as the explicit nonce.
* :class:`ChaChaPoly` — ChaCha20-Poly1305, nonce = IV xor sequence number (RFC 7905 §2).
* :class:`CbcHmac` — AES-CBC + HMAC, MAC-then-encrypt (RFC 5246 §6.2.3.2) or Encrypt-then-MAC
  (RFC 7366). The MAC-then-encrypt check takes the Lucky 13 counter-measures: the padding is checked
  with masks over a fixed window, a bad padding is treated as zero-length padding, the MAC is always
  computed and the hash is fed the bytes the padding stood for, and padding and MAC results are
  combined before the single failure (``bad_record_mac``) is raised.

Every failure raises :class:`~plugins.tls.alerts.TlsAlert`.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from typing import Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from plugins.tls.alerts import TlsAlert
from plugins.tls.ciphers import CipherSuite

CT_CHANGE_CIPHER_SPEC = 20
CT_ALERT = 21
CT_HANDSHAKE = 22
CT_APPLICATION_DATA = 23
CONTENT_TYPES = frozenset({20, 21, 22, 23})

MAX_PLAINTEXT = 1 << 14
MAX_CIPHERTEXT = MAX_PLAINTEXT + 2048
HEADER_LEN = 5
TLS12 = 0x0303
_HDR = struct.Struct("!BHH")
_SEQ_HDR = struct.Struct("!QBHH")


class Protection(Protocol):
    """Protects/unprotects one record given its sequence number and content type."""

    def seal(self, seq: int, ctype: int, plaintext: bytes) -> bytes: ...

    def open(self, seq: int, ctype: int, fragment: bytes) -> bytes: ...


class NullProtection:
    def seal(self, seq: int, ctype: int, plaintext: bytes) -> bytes:
        return plaintext

    def open(self, seq: int, ctype: int, fragment: bytes) -> bytes:
        return fragment


class AeadGcm:
    def __init__(self, key: bytes, salt: bytes) -> None:
        self._aead = AESGCM(key)
        self._salt = salt

    def seal(self, seq: int, ctype: int, plaintext: bytes) -> bytes:
        explicit = seq.to_bytes(8, "big")
        aad = _SEQ_HDR.pack(seq, ctype, TLS12, len(plaintext))
        return explicit + self._aead.encrypt(self._salt + explicit, plaintext, aad)

    def open(self, seq: int, ctype: int, fragment: bytes) -> bytes:
        if len(fragment) < 8 + 16:
            raise TlsAlert("bad_record_mac", "GCM record too short")
        aad = _SEQ_HDR.pack(seq, ctype, TLS12, len(fragment) - 24)
        try:
            return self._aead.decrypt(self._salt + fragment[:8], fragment[8:], aad)
        except Exception:
            raise TlsAlert("bad_record_mac", "GCM tag mismatch") from None


class ChaChaPoly:
    def __init__(self, key: bytes, iv: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._iv = int.from_bytes(iv, "big")

    def _nonce(self, seq: int) -> bytes:
        return (self._iv ^ seq).to_bytes(12, "big")

    def seal(self, seq: int, ctype: int, plaintext: bytes) -> bytes:
        aad = _SEQ_HDR.pack(seq, ctype, TLS12, len(plaintext))
        return self._aead.encrypt(self._nonce(seq), plaintext, aad)

    def open(self, seq: int, ctype: int, fragment: bytes) -> bytes:
        if len(fragment) < 16:
            raise TlsAlert("bad_record_mac", "ChaCha20-Poly1305 record too short")
        aad = _SEQ_HDR.pack(seq, ctype, TLS12, len(fragment) - 16)
        try:
            return self._aead.decrypt(self._nonce(seq), fragment, aad)
        except Exception:
            raise TlsAlert("bad_record_mac", "Poly1305 tag mismatch") from None


class CbcHmac:
    """AES-CBC with HMAC; ``etm`` selects Encrypt-then-MAC (RFC 7366)."""

    def __init__(
        self, key: bytes, mac_key: bytes, mac_hash: str, etm: bool, rng: Callable[[int], bytes]
    ) -> None:
        self._alg = algorithms.AES(key)
        self._hmac = hmac.new(mac_key, digestmod=mac_hash)
        self._mac_hash = mac_hash
        self._mac_len = self._hmac.digest_size
        self._etm = etm
        self._rng = rng

    def _mac(self, seq: int, ctype: int, data: bytes) -> bytes:
        h = self._hmac.copy()
        h.update(_SEQ_HDR.pack(seq, ctype, TLS12, len(data)))
        h.update(data)
        return h.digest()

    def seal(self, seq: int, ctype: int, plaintext: bytes) -> bytes:
        iv = self._rng(16)
        body = plaintext if self._etm else plaintext + self._mac(seq, ctype, plaintext)
        pad = 15 - len(body) % 16
        enc = Cipher(self._alg, modes.CBC(iv)).encryptor()
        ct = iv + enc.update(body + bytes([pad]) * (pad + 1)) + enc.finalize()
        return ct + self._mac(seq, ctype, ct) if self._etm else ct

    def open(self, seq: int, ctype: int, fragment: bytes) -> bytes:
        ml = self._mac_len
        if self._etm:
            if len(fragment) < 32 + ml or (len(fragment) - ml) % 16:
                raise TlsAlert("bad_record_mac", "CBC record length")
            ct, tag = fragment[:-ml], fragment[-ml:]
            if not hmac.compare_digest(self._mac(seq, ctype, ct), tag):
                raise TlsAlert("bad_record_mac", "EtM MAC mismatch")
            p = self._decrypt(ct)
            pad = p[-1]
            if pad + 1 > len(p) or not _padding_ok(p, pad):
                raise TlsAlert("bad_record_mac", "bad padding")
            return p[: len(p) - pad - 1]
        min_len = 16 + max(16, (ml + 1 + 15) // 16 * 16)
        if len(fragment) < min_len or len(fragment) % 16:
            raise TlsAlert("bad_record_mac", "CBC record length")
        p = self._decrypt(fragment)
        return self._check_mac_then_encrypt(seq, ctype, p)

    def _decrypt(self, ct: bytes) -> bytes:
        dec = Cipher(self._alg, modes.CBC(ct[:16])).decryptor()
        return dec.update(ct[16:]) + dec.finalize()

    def _check_mac_then_encrypt(self, seq: int, ctype: int, p: bytes) -> bytes:
        ml, n = self._mac_len, len(p)
        pad = p[-1]
        fits = pad + 1 + ml <= n  # public-length comparison, no early exit
        good = fits & _padding_ok(p, pad if fits else 0)
        eff_pad = pad if good else 0  # RFC 5246 §6.2.3.2: bad padding is treated as none
        data_len = n - ml - eff_pad - 1
        mac = self._mac(seq, ctype, p[:data_len])
        # Hash the bytes the padding stood for, so the work does not depend on the padding length.
        hashlib.new(self._mac_hash, p[data_len : data_len + eff_pad + 1]).digest()
        mac_ok = hmac.compare_digest(mac, p[data_len : data_len + ml])
        if not (mac_ok & good):
            raise TlsAlert("bad_record_mac", "CBC MAC or padding")
        return p[:data_len]


def _padding_ok(p: bytes, pad: int) -> bool:
    """All of the last ``pad + 1`` bytes equal ``pad``, checked over a fixed 256-byte window."""
    window = min(256, len(p))
    tail = int.from_bytes(p[-window:], "big")
    span = min(pad + 1, window)
    mask = (1 << (8 * span)) - 1
    want = int.from_bytes(bytes([pad]) * window, "big")
    return (((tail ^ want) & mask) == 0) & (pad + 1 <= window)


def make_protection(
    suite: CipherSuite,
    key_block: bytes,
    server_side_write: bool,
    etm: bool,
    rng: Callable[[int], bytes],
) -> Protection:
    """Build the client-write (``server_side_write=False``) or server-write protection.

    RFC 5246 §6.3 key block: client MAC key, server MAC key, client key, server key, client IV,
    server IV (the MAC keys are empty for AEAD suites)."""
    ml, kl, il = suite.mac_len, suite.key_len, suite.fixed_iv_len
    side = 1 if server_side_write else 0
    k = 2 * ml + side * kl
    v = 2 * ml + 2 * kl + side * il
    key, iv = key_block[k : k + kl], key_block[v : v + il]
    bulk = suite.bulk
    if bulk == "gcm":
        return AeadGcm(key, iv)
    if bulk == "chacha":
        return ChaChaPoly(key, iv)
    assert suite.mac_hash is not None
    mac_key = key_block[side * ml : side * ml + ml]
    return CbcHmac(key, mac_key, suite.mac_hash, etm, rng)


_NULL = NullProtection()


class RecordLayer:
    """Frames incoming bytes into records and protects outgoing ones."""

    # Immutable starting values at class level: one RecordLayer per connection.
    _in_pos = 0
    _read: Protection = _NULL
    _write: Protection = _NULL
    _read_seq = 0
    _write_seq = 0
    read_encrypted = False
    write_encrypted = False
    seen_first = False
    records_in = 0
    records_out = 0

    # Input: the caller's bytes themselves while they hold whole records (the usual case: no
    # copy in, one slice per record out); a bytearray only once a record spans two feeds.
    _in: bytes | bytearray = b""

    def __init__(self) -> None:
        self._out = bytearray()

    # ---- input ---------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        held, pos = self._in, self._in_pos
        if pos >= len(held):  # nothing held
            self._in = data if type(data) is bytes else bytes(data)
            self._in_pos = 0
            return
        if isinstance(held, bytes):  # the tail of a record: from now on, a buffer of our own
            held = bytearray(memoryview(held)[pos:])
        elif pos:
            del held[:pos]
        held += data
        self._in, self._in_pos = held, 0

    def buffered(self) -> int:
        return len(self._in) - self._in_pos

    def next_record(self) -> tuple[int, bytes] | None:
        """The next complete record as (content type, plaintext), or None if more bytes are needed."""
        buf, pos = self._in, self._in_pos
        if len(buf) - pos < HEADER_LEN:
            if not self.seen_first and len(buf) - pos >= 3:
                self._check_sslv2(buf[pos : pos + 3])
            return None
        ctype, version, length = _HDR.unpack_from(buf, pos)
        if not self.seen_first:
            self._check_sslv2(buf[pos : pos + 3])
            self.seen_first = True  # the same first three bytes pass again: no need to look
        encrypted = self.read_encrypted
        if (
            ctype not in CONTENT_TYPES
            or version >> 8 != 3
            or length > (MAX_CIPHERTEXT if encrypted else MAX_PLAINTEXT)
        ):
            self._bad_header(ctype, version, length)
        end = pos + HEADER_LEN + length
        if len(buf) < end:
            return None
        fragment = buf[pos + HEADER_LEN : end]
        if type(fragment) is not bytes:  # sliced from the bytearray
            fragment = bytes(fragment)
        self._in_pos = end
        seq = self._read_seq
        # Until ChangeCipherSpec the protection is NullProtection: no call for the plaintext.
        plaintext = self._read.open(seq, ctype, fragment) if encrypted else fragment
        self._read_seq = seq + 1
        self.records_in += 1
        if len(plaintext) > MAX_PLAINTEXT:
            raise TlsAlert("record_overflow", f"plaintext of {len(plaintext)} bytes")
        if not plaintext and ctype != CT_APPLICATION_DATA:
            raise TlsAlert("record_empty_fragment", f"empty record of type {ctype}")
        return ctype, plaintext

    def _bad_header(self, ctype: int, version: int, length: int) -> None:
        """Raise the alert for a record header that failed the checks (in this order)."""
        if ctype not in CONTENT_TYPES:
            raise TlsAlert("record_bad_content_type", f"content type {ctype}")
        if version >> 8 != 3:
            raise TlsAlert("record_bad_version", f"record version 0x{version:04x}")
        raise TlsAlert("record_overflow", f"record of {length} bytes")

    @staticmethod
    def _check_sslv2(head: bytes | bytearray) -> None:
        # SSL 2.0 CLIENT-HELLO: 2-byte header with the top bit set, then msg type 1 (RFC 5246 E.2).
        if head[0] & 0x80 and head[2] == 1:
            raise TlsAlert("sslv2_hello", "SSL 2.0 compatible ClientHello")

    # ---- output --------------------------------------------------------------------------
    def write(self, ctype: int, data: bytes | bytearray | memoryview) -> None:
        if len(data) <= MAX_PLAINTEXT:  # one record (every handshake flight): no slicing
            fragment = (
                self._write.seal(self._write_seq, ctype, bytes(data))
                if self.write_encrypted
                else bytes(data)  # NullProtection, without the call
            )
            self._write_seq += 1
            self.records_out += 1
            self._out += _HDR.pack(ctype, TLS12, len(fragment)) + fragment
            return
        view = memoryview(data)
        for off in range(0, max(len(view), 1), MAX_PLAINTEXT):  # empty data: one empty record
            chunk = bytes(view[off : off + MAX_PLAINTEXT])
            fragment = self._write.seal(self._write_seq, ctype, chunk)
            self._write_seq += 1
            self.records_out += 1
            self._out += _HDR.pack(ctype, TLS12, len(fragment))
            self._out += fragment

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    # ---- key changes ---------------------------------------------------------------------
    def change_read(self, protection: Protection) -> None:
        self._read, self._read_seq, self.read_encrypted = protection, 0, True

    def change_write(self, protection: Protection) -> None:
        self._write, self._write_seq, self.write_encrypted = protection, 0, True


__all__ = [
    "CONTENT_TYPES",
    "CT_ALERT",
    "CT_APPLICATION_DATA",
    "CT_CHANGE_CIPHER_SPEC",
    "CT_HANDSHAKE",
    "MAX_CIPHERTEXT",
    "MAX_PLAINTEXT",
    "AeadGcm",
    "CbcHmac",
    "ChaChaPoly",
    "NullProtection",
    "Protection",
    "RecordLayer",
    "make_protection",
]
