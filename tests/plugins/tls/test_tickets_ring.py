"""TicketKeyRing: sealing/opening, every failure status, rotation and secure erase, key files,
import/export, and a property that opening arbitrary bytes never raises."""

from __future__ import annotations

import base64
import random
import struct
from dataclasses import replace

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.tls.session import UNRESUMABLE, SessionState
from plugins.tls.tickets import (
    KEY_LEN,
    MAX_KEYS,
    MAX_TICKET,
    TicketKeyRing,
    format_key_file,
    load_key_file,
    parse_key_file,
)

STATE = SessionState(0x0303, 0xC02B, b"\x11" * 48, True, "a.lab", None, 100.0)


def ring(seed: int = 1, **kw: object) -> tuple[TicketKeyRing, list[tuple[str, str]]]:
    events: list[tuple[str, str]] = []
    r = TicketKeyRing(
        random.Random(seed).randbytes,
        100.0,
        on_event=lambda a, n: events.append((a, n)),
        **kw,  # type: ignore[arg-type]
    )
    return r, events


def test_seal_open_round_trip_and_format() -> None:
    r, events = ring()
    t, name = r.seal(STATE, 100.0)
    assert t[:16].hex() == name == r.current.name.hex()
    assert len(t) == 16 + 12 + 8 + len(STATE.encode()) + 16 <= MAX_TICKET
    assert STATE.master_secret not in t  # sealed, not just wrapped
    res = r.open(t, 130.0)
    assert (res.status, res.state, res.key_name, res.age_s, res.current) == (
        "ok",
        STATE,
        name,
        30.0,
        True,
    )
    assert events == [("installed", name), ("promoted", name)]


def test_nonces_differ_between_tickets() -> None:
    r, _ = ring()
    a, _ = r.seal(STATE, 100.0)
    b, _ = r.seal(STATE, 100.0)
    assert a[16:28] != b[16:28] and a[28:] != b[28:]


@pytest.mark.parametrize("pos", [0, 15, 16, 27, 28, 40, -17, -1])
def test_any_flipped_byte_is_rejected(pos: int) -> None:
    r, _ = ring()
    t = bytearray(r.seal(STATE, 100.0)[0])
    t[pos] ^= 0x80
    res = r.open(bytes(t), 100.0)
    # the name is authenticated: a changed name is either unknown or fails the tag
    assert res.status == ("ticket_unknown_key" if 0 <= pos < 16 else "ticket_invalid")
    assert res.state is None


def test_name_moved_to_another_key_fails_authentication() -> None:
    r, _ = ring(rotation=10)
    t1, n1 = r.seal(STATE, 100.0)
    r.rotate(101.0)
    t2, n2 = r.seal(STATE, 101.0)
    forged = bytes.fromhex(n2) + t1[16:]  # body sealed by key 1, labelled key 2
    assert r.open(forged, 102.0).status == "ticket_invalid"


@pytest.mark.parametrize("size", [0, 1, 16, 51, MAX_TICKET + 1, 70000])
def test_bad_sizes_are_invalid_without_work(size: int) -> None:
    r, _ = ring()
    assert r.open(b"\x00" * size, 100.0).status in ("ticket_invalid", "ticket_unknown_key")
    assert r.open(r.current.name + b"\x00" * max(size - 16, 0), 100.0).status == "ticket_invalid"


def test_expired_and_future_tickets() -> None:
    r, _ = ring(lifetime=60)
    t, _ = r.seal(STATE, 100.0)
    assert r.open(t, 160.0).status == "ok"
    res = r.open(t, 160.5)
    assert res.status == "ticket_expired" and res.age_s == 60.5 and res.state is None
    assert r.open(t, 1000.0, lifetime=5000).status == "ok"  # the caller's lifetime wins
    assert r.open(t, 0.0).status == "ticket_invalid"  # issued 100 s in the future


def test_state_that_does_not_decode_is_invalid_even_under_a_good_tag() -> None:
    """A ticket from an older release (msgpack state) or of an unresumable state: the tag checks
    out, the state does not decode, so the ticket is invalid (a full handshake follows)."""
    r, _ = ring()
    old = msgpack.packb([0x0303, 0xC02B, b"\x11" * 48, True, "a.lab", None, 100.0])
    for state in (old, UNRESUMABLE, replace(STATE, sni="").encode()):
        nonce = bytes(12)
        body = r.current.aead.encrypt(nonce, struct.pack(">d", 100.0) + state, r.current.name)
        res = r.open(r.current.name + nonce + body, 101.0)
        assert (res.status, res.key_name) == ("ticket_invalid", r.current.name.hex())
    assert r.invalid == 3


def test_rotation_keeps_old_keys_decrypt_only_then_erases_them() -> None:
    r, events = ring(rotation=600, lifetime=1000)
    t, old = r.seal(STATE, 100.0)
    old_key = r.current
    assert r.poll_at() == 700.0
    assert r.handle_timer(699.0) == []
    assert r.handle_timer(700.0) == ["rotated"]
    new = r.current.name.hex()
    assert new != old and [k["state"] for k in r.describe(700.0)] == ["current", "decrypt_only"]
    res = r.open(t, 800.0)
    assert res.status == "ok" and not res.current  # still opens, flagged non-current
    assert r.seal(STATE, 800.0)[1] == new  # sealing uses the new key
    assert r.poll_at() == 1300.0  # next rotation (old key erase at 1700)
    r.handle_timer(1300.0)  # second rotation: now two decrypt-only keys
    assert len(r.keys) == 3
    assert r.handle_timer(1700.0) == ["erased"]
    assert old_key.material == bytearray(KEY_LEN)  # zeroed in place
    assert r.open(t, 1700.0).status == "ticket_unknown_key"
    assert [a for a, n in events if n == old] == ["installed", "promoted", "retired", "erased"]


def test_poll_at_is_the_earliest_of_rotation_and_erasures() -> None:
    r, _ = ring(rotation=600, lifetime=1000)  # created at 100
    r.handle_timer(700.0)  # first key retired at 700, erased at 1700
    r.handle_timer(1300.0)  # second retired at 1300, erased at 2300; next rotation at 1900
    assert len(r.keys) == 3
    assert r.poll_at() == 1700.0  # the first erasure comes before the next rotation
    assert r.poll_at(rotate=False) == 1700.0  # tickets off: only erasures are due
    r.handle_timer(1700.0)
    assert r.poll_at(rotate=False) == 2300.0
    assert r.poll_at() == 1900.0


def test_lifetime_change_moves_erasure() -> None:
    r, _ = ring(rotation=100, lifetime=1000)
    r.handle_timer(200.0)
    assert r.poll_at() == 300.0
    r.lifetime = 50
    r.handle_timer(251.0)
    assert len(r.keys) == 1


def test_key_count_is_bounded() -> None:
    r, events = ring(rotation=1, lifetime=10**6)
    for i in range(MAX_KEYS + 5):
        r.rotate(200.0 + i)
    assert len(r.keys) == MAX_KEYS and r.forced_erasures == 6
    assert sum(1 for a, _ in events if a == "erased") == 6


def test_key_file_round_trip_and_pinning(tmp_path: object) -> None:
    rnd = random.Random(5)
    keys = [rnd.randbytes(KEY_LEN) for _ in range(3)]
    text = "# tapnf ticket keys\n\n" + format_key_file(keys)
    assert parse_key_file(text) == keys
    r, events = ring(keys=keys, rotation=10)
    assert r.current.name == keys[0][:16] and r.pinned
    assert r.export() == keys
    assert r.handle_timer(10_000.0) == ["erased", "erased"]  # pinned: no rotation, old ones go
    assert r.current.name == keys[0][:16]
    # a ticket sealed by an instance with the same file opens here (fleet sharing)
    other, _ = ring(seed=9, keys=keys)
    t, _ = other.seal(STATE, 10_000.0)
    assert r.open(t, 10_001.0).status == "ok"


@pytest.mark.parametrize(
    "text,msg",
    [
        ("", "no keys"),
        ("not base64!\n", "line 1: not base64"),
        (base64.b64encode(b"x" * 48).decode(), "line 1: key is 48 bytes"),
    ],
)
def test_bad_key_files(text: str, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        parse_key_file(text)


def test_load_key_file(tmp_path: object) -> None:
    from pathlib import Path

    p = Path(str(tmp_path)) / "keys"
    keys = [bytes(range(80))]
    p.write_text(format_key_file(keys))
    assert load_key_file(p) == keys


def test_import_retires_held_keys_and_validates() -> None:
    r, events = ring(lifetime=100)
    t, old = r.seal(STATE, 100.0)
    with pytest.raises(ValueError, match="80"):
        r.import_keys([b"short"], 100.0)
    with pytest.raises(ValueError, match="duplicate"):
        r.import_keys([b"a" * 80, b"a" * 80], 100.0)
    assert r.current.name.hex() == old  # failed imports change nothing
    names = r.import_keys([b"b" * 80, b"c" * 80], 150.0)
    assert names == [(b"b" * 16).hex(), (b"c" * 16).hex()]
    assert r.open(t, 160.0).status == "ok"  # the generated key stays decrypt-only
    assert ("retired", old) in events
    r.handle_timer(250.0)
    assert r.open(t, 250.0).status == "ticket_unknown_key"


def test_describe_never_shows_key_material() -> None:
    r, _ = ring()
    text = repr(r.describe(100.0)) + repr(r.current) + repr(r.open(r.seal(STATE, 1)[0], 2))
    assert r.current.material[16:].hex() not in text
    assert STATE.master_secret.hex() not in text and repr(STATE.master_secret) not in text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 3))
def test_open_never_raises(data: bytes, mode: int) -> None:
    r, _ = ring()
    if mode == 1:
        data = r.current.name + data  # reach the AEAD step
    elif mode == 2:
        t = bytearray(r.seal(STATE, 100.0)[0])
        for i, b in enumerate(data[:8]):
            t[(b * 7 + i) % len(t)] ^= 1 << (i % 8)
        data = bytes(t)
    res = r.open(data, 100.0)
    assert res.status in ("ok", "ticket_invalid", "ticket_unknown_key", "ticket_expired")
    if res.status == "ok":
        assert res.state == STATE


def test_generated_key_rotates_after_max_seals(monkeypatch: pytest.MonkeyPatch) -> None:
    import plugins.tls.tickets as tickets

    monkeypatch.setattr(tickets, "MAX_SEALS_PER_KEY", 3)
    r, _ = ring()
    names = [r.seal(STATE, 100.0)[1] for _ in range(7)]
    assert names[0] == names[2] != names[3] == names[5] != names[6]
    pinned, _ = ring(keys=[b"p" * 80])
    assert len({pinned.seal(STATE, 100.0)[1] for _ in range(5)}) == 1  # operator's key kept
