"""ProfileRegistry / ProfileRuntime control API: atomic live changes that behave as a BIG-IP
user expects, generation counter, events, sessions/tickets ops and stats."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.events import SCHEMA, ListBus
from plugins.tls.profile import TlsProfile
from plugins.tls.registry import ProfileRegistry
from plugins.tls.resumption import HelloOffer, ProfileRuntime
from plugins.tls.session import SessionState

T0 = 5000.0
STATE = SessionState(0x0303, 0xC02F, b"\x05" * 48, False, None, None, T0)


class Lab:
    def __init__(self, tmp: Path | None = None, **settings: object) -> None:
        self.now = T0
        self.bus = ListBus()
        self.rand = random.Random(11)
        self.reg = ProfileRegistry(
            {
                "clientssl": TlsProfile("clientssl", (), **settings),  # type: ignore[arg-type]
                "other": TlsProfile("other", ()),
            },
            bus=self.bus,
            rng=self.rand.randbytes,
            wall_clock=lambda: self.now,
            base_dir=tmp,
        )
        self.rt: ProfileRuntime = self.reg.get("clientssl")

    def hello(self, sid: bytes = b"", ticket: bytes | None = None) -> HelloOffer:
        return HelloOffer(sid, ticket, (0xC02F,), None, False)

    def full(self, ticket_ext: bool = False) -> bytes:
        d = self.rt.decide(
            self.hello(ticket=b"" if ticket_ext else None), self.now, self.rand.randbytes
        )
        self.rt.finish_full(d, STATE, self.now)
        return d.server_session_id

    def reason(self, o: HelloOffer) -> str:
        return self.rt.decide(o, self.now, self.rand.randbytes).reason


def test_registry_lookup() -> None:
    lab = Lab()
    assert lab.reg.names() == ["clientssl", "other"]
    with pytest.raises(KeyError):
        lab.reg.get("nope")


def test_set_is_atomic_bumps_gen_and_announces() -> None:
    lab = Lab()
    before = lab.rt.profile
    with pytest.raises(ConfigError) as info:
        lab.rt.set({"cache_size": 10, "cache_timeout": "soon"})
    assert info.value.path == "profiles.clientssl.cache_timeout"
    assert lab.rt.profile is before and lab.reg.gen == 0 and lab.bus.of("nf.profile") == []
    assert lab.rt.set({"cache_size": 10, "strict_resume": True}) == ["cache_size", "strict_resume"]
    assert lab.reg.gen == 1 and lab.rt.get()["cache_size"] == 10
    ev = lab.bus.of("nf.profile")
    assert ev == [
        {
            "profile": "clientssl",
            "changed": ["cache_size", "strict_resume"],
            "source": "control",
            "version": None,
        }
    ]
    assert set(ev[0]) == set(SCHEMA["nf.profile"])
    assert lab.rt.set({"cache_size": 10}) == [] and lab.reg.gen == 1  # no-op: no new generation
    assert lab.reg.get("other").profile.cache_size == 262144  # other profiles untouched


def test_decision_in_flight_keeps_its_profile() -> None:
    lab = Lab(session_ticket=True)
    d = lab.rt.decide(lab.hello(ticket=b""), lab.now, lab.rand.randbytes)
    assert d.send_ticket_ext
    lab.rt.set({"session_ticket": False})  # turned off mid-handshake
    ticket, hint, _ = lab.rt.new_ticket(STATE, lab.now)  # the in-flight handshake still finishes
    assert ticket and hint == 3600
    # new handshakes see the new profile: stateful, and the ticket is ignored
    d2 = lab.rt.decide(lab.hello(ticket=ticket), lab.now, lab.rand.randbytes)
    assert d2.reason == "tickets_disabled" and len(d2.server_session_id) == 32
    lab.rt.set({"session_ticket": True})  # back on: keys were kept, the ticket resumes
    assert lab.reason(lab.hello(ticket=ticket)) == "resumed"


def test_cache_shrink_evicts_lru_with_events_and_disable() -> None:
    lab = Lab()
    sids = [lab.full() for _ in range(5)]
    lab.rt.decide(lab.hello(sids[0]), lab.now, lab.rand.randbytes)  # sids[0] recently used
    lab.rt.set({"cache_size": 2})
    ev = lab.bus.of("tls.cache")
    assert [e["session_id"] for e in ev] == [s.hex() for s in sids[1:4]]
    assert {e["action"] for e in ev} == {"evicted"} and set(ev[0]) == set(SCHEMA["tls.cache"])
    assert lab.reason(lab.hello(sids[1])) == "cache_evicted"
    assert lab.reason(lab.hello(sids[0])) == "resumed"
    lab.rt.set({"cache_size": 0})
    assert lab.reason(lab.hello(sids[0])) == "cache_disabled"
    assert lab.rt.stats()["cache"]["entries"] == 0


def test_cache_timeout_change_applies_to_cached_sessions() -> None:
    lab = Lab()
    sid = lab.full()
    lab.now += 100
    lab.rt.set({"cache_timeout": 60})
    assert lab.reason(lab.hello(sid)) == "cache_expired"


def test_timer_expires_sessions_and_poll_at() -> None:
    lab = Lab(cache_timeout=60)
    sid = lab.full()
    at = lab.reg.poll_at()
    assert at is not None and T0 + 60 < at < T0 + 60.01
    lab.now = T0 + 59
    lab.reg.handle_timer(lab.now)
    assert lab.bus.of("tls.cache") == []
    lab.now = T0 + 61
    lab.reg.handle_timer(lab.now)
    ev = lab.bus.of("tls.cache")
    assert ev == [
        {"profile": "clientssl", "action": "expired", "session_id": sid.hex(), "age_s": 61.0}
    ]
    assert lab.reg.poll_at() is None


def test_rotation_interval_change_and_key_events() -> None:
    lab = Lab(session_ticket=True, ticket_key_rotation=3600)
    first = lab.rt.tickets_list()[0]["name"]
    assert lab.rt.poll_at() == T0 + 3600
    lab.now += 100
    lab.rt.set({"ticket_key_rotation": 60})  # already overdue: rotates at once
    keys = lab.rt.tickets_list()
    assert [k["state"] for k in keys] == ["current", "decrypt_only"] and keys[1]["name"] == first
    assert all(set(k) >= {"name", "state"} and "material" not in k for k in keys)
    actions = [(e["action"], e["key"]) for e in lab.bus.of("tls.tickets")]
    assert actions[:2] == [("installed", first), ("promoted", first)]
    assert ("retired", first) in actions
    assert lab.rt.poll_at() == lab.now + 60


def test_tickets_rotate_import_export_bump_gen() -> None:
    lab = Lab(session_ticket=True)
    t, _, old = lab.rt.new_ticket(STATE, lab.now)
    new = lab.rt.tickets_rotate(lab.now)
    assert new != old and lab.reg.gen == 1
    d = lab.rt.decide(lab.hello(ticket=t), lab.now, lab.rand.randbytes)
    assert d.method == "ticket" and d.reissue_ticket
    exported = lab.rt.tickets_export()
    assert len(exported) == 2 and all(len(k) == 80 for k in exported)
    # a second instance imports them and accepts the first instance's tickets
    other = Lab()
    names = other.rt.tickets_import(exported, other.now)
    assert names == [new, old] and other.reg.gen == 1
    other.rt.set({"session_ticket": True})
    assert other.reason(other.hello(ticket=t)) == "resumed"
    with pytest.raises(ConfigError) as info:
        other.rt.tickets_import([b"short"], other.now)
    assert info.value.path == "keys" and info.value.value is None  # never echo key bytes


def test_ticket_key_file_pins_keys(tmp_path: Path) -> None:
    keys = [bytes([i]) * 80 for i in (1, 2)]
    (tmp_path / "t.keys").write_text("".join(base64.b64encode(k).decode() + "\n" for k in keys))
    lab = Lab(tmp_path, session_ticket=True, ticket_key_file=str(tmp_path / "t.keys"))
    assert [k["name"] for k in lab.rt.tickets_list()] == [
        (b"\x01" * 16).hex(),
        (b"\x02" * 16).hex(),
    ]
    lab.now += 10 * 3600
    lab.rt.handle_timer(lab.now)
    assert lab.rt.tickets_list()[0]["name"] == (b"\x01" * 16).hex()  # pinned: not rotated
    (tmp_path / "bad.keys").write_text("zz\n")
    with pytest.raises(ConfigError) as info:
        lab.rt.set({"ticket_key_file": "bad.keys"})
    assert info.value.path == "profiles.clientssl.ticket_key_file"
    lab.rt.set({"ticket_key_file": ""})  # unpinned: a generated key takes over
    assert lab.rt.tickets_list()[0]["pinned"] is False


def test_sessions_list_and_flush() -> None:
    lab = Lab()
    sids = [lab.full() for _ in range(3)]
    lab.now += 5
    rows = lab.rt.sessions_list(lab.now)
    assert [r["session_id"] for r in rows] == [s.hex() for s in sids]
    assert rows[0]["age_s"] == 5.0 and rows[0]["cipher"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert STATE.master_secret.hex() not in repr(rows)
    assert lab.rt.sessions_flush() == 3
    assert [e["action"] for e in lab.bus.of("tls.cache")] == ["flushed"] * 3
    assert lab.reason(lab.hello(sids[0])) == "cache_miss"


def test_strict_resume_toggle() -> None:
    lab = Lab()
    sid = lab.full()
    lab.rt.session_closed(sid, clean=False, wall_now=lab.now)
    assert lab.reason(lab.hello(sid)) == "resumed"  # off: s_time-style closes still resume
    lab.rt.set({"strict_resume": True})
    lab.rt.session_closed(sid, clean=False, wall_now=lab.now)
    assert lab.reason(lab.hello(sid)) == "strict_resume"
    assert lab.rt.stats()["cache"]["strict_invalidations"] == 1


def test_stats_shape() -> None:
    lab = Lab(session_ticket=True)
    lab.full(ticket_ext=True)
    t, _, name = lab.rt.new_ticket(STATE, lab.now)
    lab.reason(lab.hello(ticket=t))
    lab.reason(lab.hello(ticket=b"\x00" * 100))
    s = lab.rt.stats()
    assert s["tickets"]["issued"] == {name: 1} and s["tickets"]["accepted"] == {name: 1}
    assert s["decisions"] == {"nothing_offered": 1, "resumed": 1, "ticket_unknown_key": 1}
    assert s["offered"] == {"none": 1, "ticket": 2}
    assert set(s["cache"]) >= {"entries", "hits", "misses", "evictions", "expirations"}
    assert lab.reg.stats()["profiles"]["clientssl"] == s


def test_from_config_resolves_live_paths_against_the_config_dir(tmp_path: Path) -> None:
    class Config:
        profiles = {"p": TlsProfile("p", ())}
        base_dir = tmp_path

    (tmp_path / "k.keys").write_text(base64.b64encode(b"\x07" * 80).decode() + "\n")
    reg = ProfileRegistry.from_config(
        Config(), bus=ListBus(), rng=random.Random(1).randbytes, wall_clock=lambda: T0
    )
    assert reg.get("p").set({"ticket_key_file": "k.keys"}) == ["ticket_key_file"]
    assert reg.get("p").tickets_list()[0]["name"] == (b"\x07" * 16).hex()
