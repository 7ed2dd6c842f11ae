"""Record protection round trips per suite, tampering, CBC padding rules, and record framing."""

from __future__ import annotations

import os

import pytest

from plugins.tls.alerts import TlsAlert
from plugins.tls.ciphers import SUITES
from plugins.tls.record import (
    CT_APPLICATION_DATA,
    CT_HANDSHAKE,
    MAX_PLAINTEXT,
    CbcHmac,
    Protection,
    RecordLayer,
    make_protection,
)


def _pair(suite_code: int, etm: bool = False) -> tuple[Protection, Protection]:
    suite = next(s for s in SUITES if s.code == suite_code)
    kb = os.urandom(suite.key_block_len())
    return (
        make_protection(suite, kb, True, etm, os.urandom),
        make_protection(suite, kb, True, etm, os.urandom),
    )


SUITE_CASES = [
    (s.code, etm) for s in SUITES for etm in ((False, True) if s.bulk == "cbc" else (False,))
]


@pytest.mark.parametrize(("code", "etm"), SUITE_CASES)
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000, MAX_PLAINTEXT])
def test_round_trip(code: int, etm: bool, size: int) -> None:
    sealer, opener = _pair(code, etm)
    data = os.urandom(size)
    for seq in (0, 1, 2**40):
        frag = sealer.seal(seq, CT_APPLICATION_DATA, data)
        assert opener.open(seq, CT_APPLICATION_DATA, frag) == data


@pytest.mark.parametrize(("code", "etm"), SUITE_CASES)
def test_tampering_is_bad_record_mac(code: int, etm: bool) -> None:
    sealer, opener = _pair(code, etm)
    frag = sealer.seal(5, CT_APPLICATION_DATA, b"hello world" * 10)
    for i in (0, len(frag) // 2, len(frag) - 1):
        bad = bytearray(frag)
        bad[i] ^= 0x01
        with pytest.raises(TlsAlert) as exc:
            opener.open(5, CT_APPLICATION_DATA, bytes(bad))
        assert exc.value.reason == "bad_record_mac"
    with pytest.raises(TlsAlert, match="bad_record_mac"):
        opener.open(6, CT_APPLICATION_DATA, frag)  # wrong sequence number
    with pytest.raises(TlsAlert, match="bad_record_mac"):
        opener.open(5, CT_HANDSHAKE, frag)  # wrong content type
    with pytest.raises(TlsAlert, match="bad_record_mac"):
        opener.open(5, CT_APPLICATION_DATA, frag[:10])  # truncated


def _cbc_raw(etm: bool) -> tuple[CbcHmac, bytes, bytes]:
    key, mac_key = os.urandom(16), os.urandom(20)
    return CbcHmac(key, mac_key, "sha1", etm, os.urandom), key, mac_key


def _encrypt_raw(key: bytes, plaintext: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    iv = os.urandom(16)
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + enc.update(plaintext) + enc.finalize()


def test_cbc_long_valid_padding_accepted_and_bad_padding_rejected() -> None:
    import hashlib
    import hmac
    import struct

    cbc, key, mac_key = _cbc_raw(False)
    data = b"A" * 21
    mac = hmac.new(
        mac_key, struct.pack("!QBHH", 0, 23, 0x0303, len(data)) + data, hashlib.sha1
    ).digest()
    body = data + mac  # 41 bytes
    pad = (16 - (len(body) + 1) % 16) % 16 + 16 * 10  # a long (but legal) padding
    good = body + bytes([pad]) * (pad + 1)
    assert cbc.open(0, 23, _encrypt_raw(key, good)) == data
    bad = bytearray(good)
    bad[-3] ^= 1  # one padding byte wrong
    with pytest.raises(TlsAlert, match="bad_record_mac"):
        cbc.open(0, 23, _encrypt_raw(key, bytes(bad)))
    too_long = body[:16] + bytes([200]) * 32  # padding longer than the record allows
    with pytest.raises(TlsAlert, match="bad_record_mac"):
        cbc.open(0, 23, _encrypt_raw(key, too_long))


def _rec(ctype: int, payload: bytes, version: int = 0x0303) -> bytes:
    return bytes([ctype]) + version.to_bytes(2, "big") + len(payload).to_bytes(2, "big") + payload


def test_framing_fragmented_and_coalesced() -> None:
    wire = _rec(22, b"abc") + _rec(23, b"") + _rec(22, b"defg", 0x0301)
    rl = RecordLayer()
    got = []
    for b in wire:  # one byte at a time
        rl.feed(bytes([b]))
        while (r := rl.next_record()) is not None:
            got.append(r)
    assert got == [(22, b"abc"), (23, b""), (22, b"defg")]
    rl2 = RecordLayer()
    rl2.feed(wire)
    assert [rl2.next_record() for _ in range(4)] == [*got, None]


def test_framing_split_at_every_point() -> None:
    """Records read in place from the fed bytes, or from a buffer once one spans two feeds:
    the same records whatever the split, in any input type, and nothing held afterwards."""
    wire = _rec(22, b"abc") + _rec(23, b"") + _rec(22, b"defg" * 100) + _rec(21, b"\x01\x00")
    want = [(22, b"abc"), (23, b""), (22, b"defg" * 100), (21, b"\x01\x00")]
    for cut in range(len(wire) + 1):
        for kind in (bytes, bytearray, memoryview):
            rl = RecordLayer()
            got = []
            for part in (wire[:cut], wire[cut:], wire[:0]):
                rl.feed(kind(part))  # type: ignore[arg-type]
                while (r := rl.next_record()) is not None:
                    assert type(r[1]) is bytes
                    got.append(r)
            assert got == want and rl.buffered() == 0, (cut, kind)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (_rec(99, b"x"), "record_bad_content_type"),
        (_rec(22, b"x", 0x0203), "record_bad_version"),
        (bytes([22, 3, 3]) + (MAX_PLAINTEXT + 1).to_bytes(2, "big"), "record_overflow"),
        (_rec(22, b""), "record_empty_fragment"),
        (_rec(21, b""), "record_empty_fragment"),
        (b"\x80\x2e\x01\x03\x01" + bytes(41), "sslv2_hello"),
    ],
)
def test_framing_errors(wire: bytes, reason: str) -> None:
    rl = RecordLayer()
    rl.feed(wire)
    with pytest.raises(TlsAlert) as exc:
        rl.next_record()
    assert exc.value.reason == reason


def test_write_fragments_at_2_14() -> None:
    rl = RecordLayer()
    rl.write(23, b"z" * (MAX_PLAINTEXT * 2 + 5))
    out = rl.data_to_send()
    reader = RecordLayer()
    reader.feed(out)
    sizes = []
    while (r := reader.next_record()) is not None:
        sizes.append(len(r[1]))
    assert sizes == [MAX_PLAINTEXT, MAX_PLAINTEXT, 5]
