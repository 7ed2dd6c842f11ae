"""The resumption decision: every TLS 1.2 reason code reached from a table, plus the rules
around it (Ticketbleed echo, re-issue with a non-current key, stateless vs stateful full
handshakes) and the exact store operations per handshake kind."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from pipeline.events import REASONS, ListBus
from plugins.tls.profile import TlsProfile
from plugins.tls.resumption import Decision, HelloOffer, ProfileRuntime
from plugins.tls.session import SessionState
from plugins.tls.store import MemorySessionStore

GCM128 = 0xC02F
GCM256 = 0xC030
T0 = 1_000_000.0
STATE = SessionState(0x0303, GCM128, b"\x07" * 48, True, "a.lab", "h2", T0)


class Rig:
    def __init__(self, store: object | None = None, **profile: object) -> None:
        self.now = T0
        self.bus = ListBus()
        self.rand = random.Random(7)
        self.rt = ProfileRuntime(
            TlsProfile("p", (), **profile),  # type: ignore[arg-type]
            bus=self.bus,
            rng=self.rand.randbytes,
            wall_clock=lambda: self.now,
            store=store,  # type: ignore[arg-type]
        )

    def decide(self, offer: HelloOffer) -> Decision:
        return self.rt.decide(offer, self.now, self.rand.randbytes)

    def full(self, state: SessionState = STATE, ticket_ext: bool = False) -> Decision:
        d = self.decide(offer(ticket=b"" if ticket_ext else None))
        self.rt.finish_full(d, replace(state, created=self.now), self.now)
        return d

    def ticket(self, state: SessionState = STATE) -> bytes:
        return self.rt.new_ticket(replace(state, created=self.now), self.now)[0]

    def advance(self, s: float) -> None:
        self.now += s
        self.rt.handle_timer(self.now)


def offer(
    sid: bytes = b"",
    ticket: bytes | None = None,
    suites: tuple[int, ...] = (GCM128, GCM256),
    sni: str | None = "a.lab",
    ems: bool = True,
    version: int = 0x0303,
) -> HelloOffer:
    return HelloOffer(sid, ticket, suites, sni, ems, version)


# ---- scenarios: each builds a rig and returns the offer to decide on -------------------------
def sc_resumed_sid(r: Rig) -> HelloOffer:
    return offer(sid=r.full().server_session_id)


def sc_resumed_ticket(r: Rig) -> HelloOffer:
    return offer(sid=b"\x01" * 32, ticket=r.ticket())


def sc_nothing(r: Rig) -> HelloOffer:
    return offer()


def sc_cache_disabled(r: Rig) -> HelloOffer:
    return offer(sid=b"\x02" * 32)


def sc_tickets_disabled(r: Rig) -> HelloOffer:
    return offer(sid=b"\x03" * 32, ticket=b"\x00" * 120)


def sc_cache_miss(r: Rig) -> HelloOffer:
    r.full()
    return offer(sid=b"\x04" * 32)


def sc_cache_expired(r: Rig) -> HelloOffer:
    sid = r.full().server_session_id
    r.now += 3600.5  # fake wall clock; no timer ran: expiry found at lookup
    return offer(sid=sid)


def sc_cache_expired_by_timer(r: Rig) -> HelloOffer:
    sid = r.full().server_session_id
    r.advance(3601)  # the timer swept it; the tombstone still explains the miss
    assert len(r.rt.store) == 0  # type: ignore[arg-type]
    return offer(sid=sid)


def sc_cache_evicted(r: Rig) -> HelloOffer:
    first = r.full().server_session_id
    r.full()  # cache_size = 1: pushes the first out
    return offer(sid=first)


def sc_ticket_unknown_key(r: Rig) -> HelloOffer:
    other = Rig(session_ticket=True)
    other.rand.seed(99)
    other.rt.tickets_rotate(other.now)
    return offer(ticket=other.ticket())


def sc_ticket_erased_key(r: Rig) -> HelloOffer:
    t = r.ticket()
    r.advance(600)  # rotation (600 s): the sealing key becomes decrypt-only...
    r.advance(3000)  # ...and is erased once its tickets (lifetime 3000 s) can no longer be valid
    erased = [e["key"] for e in r.bus.of("tls.tickets") if e["action"] == "erased"]
    assert erased == [t[:16].hex()]
    return offer(ticket=t)


def sc_ticket_invalid(r: Rig) -> HelloOffer:
    t = bytearray(r.ticket())
    t[40] ^= 0x01  # inside the ciphertext
    return offer(ticket=bytes(t))


def sc_ticket_expired(r: Rig) -> HelloOffer:
    t = r.ticket()
    r.now += 3600.5
    return offer(ticket=t)


def sc_cipher_sid(r: Rig) -> HelloOffer:
    return offer(sid=r.full().server_session_id, suites=(GCM256,))


def sc_cipher_ticket(r: Rig) -> HelloOffer:
    return offer(ticket=r.ticket(), suites=(GCM256,))


def sc_cipher_disabled_in_profile(r: Rig) -> HelloOffer:
    sid = r.full().server_session_id
    r.rt.set({"ciphers": ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]})
    return offer(sid=sid)


def sc_version(r: Rig) -> HelloOffer:
    return offer(sid=r.full(replace(STATE, version=0x0302)).server_session_id)


def sc_sni_sid(r: Rig) -> HelloOffer:
    return offer(sid=r.full().server_session_id, sni="b.lab")


def sc_sni_ticket(r: Rig) -> HelloOffer:
    return offer(ticket=r.ticket(), sni=None)


def sc_ems_dropped(r: Rig) -> HelloOffer:
    # RFC 7627 §5.3: original used EMS, new hello lacks it -> must not resume
    return offer(sid=r.full().server_session_id, ems=False)


def sc_ems_added(r: Rig) -> HelloOffer:
    # original without EMS, new hello offers it -> full handshake
    return offer(sid=r.full(replace(STATE, ems=False)).server_session_id, ems=True)


def sc_ems_ticket(r: Rig) -> HelloOffer:
    return offer(ticket=r.ticket(), ems=False)


def sc_strict(r: Rig) -> HelloOffer:
    sid = r.full().server_session_id
    r.rt.session_closed(sid, clean=False, wall_now=r.now)
    return offer(sid=sid)


def sc_not_strict_unclean(r: Rig) -> HelloOffer:
    sid = r.full().server_session_id
    r.rt.session_closed(sid, clean=False, wall_now=r.now)  # like openssl s_time: no close_notify
    return offer(sid=sid)


def sc_strict_clean(r: Rig) -> HelloOffer:
    sid = r.full().server_session_id
    r.rt.session_closed(sid, clean=True, wall_now=r.now)
    return offer(sid=sid)


def sc_ticket_bad_sid_cached(r: Rig) -> HelloOffer:
    # ticket rejected, but the session ID is in the cache (from before tickets were on)
    sid = r.full().server_session_id
    r.rt.set({"session_ticket": True})
    return offer(sid=sid, ticket=b"\x00" * 120)


def sc_ticket_bad_sid_unknown(r: Rig) -> HelloOffer:
    return offer(sid=b"\x05" * 32, ticket=b"\x00" * 120)


@dataclass
class Case:
    name: str
    profile: dict[str, object]
    scenario: Callable[[Rig], HelloOffer]
    reason: str
    method: str | None = None


TICKETS: dict[str, object] = {"session_ticket": True}
CASES = [
    Case("resumed_sid", {}, sc_resumed_sid, "resumed", "session_id"),
    Case("resumed_ticket", TICKETS, sc_resumed_ticket, "resumed", "ticket"),
    Case("nothing", {}, sc_nothing, "nothing_offered"),
    Case("cache_disabled", {"cache_size": 0}, sc_cache_disabled, "cache_disabled"),
    Case("tickets_disabled", {}, sc_tickets_disabled, "tickets_disabled"),
    Case("cache_miss", {}, sc_cache_miss, "cache_miss"),
    Case("cache_expired", {}, sc_cache_expired, "cache_expired"),
    Case("cache_expired_timer", {}, sc_cache_expired_by_timer, "cache_expired"),
    Case("cache_evicted", {"cache_size": 1}, sc_cache_evicted, "cache_evicted"),
    Case("ticket_unknown", TICKETS, sc_ticket_unknown_key, "ticket_unknown_key"),
    Case(
        "ticket_erased",
        {**TICKETS, "ticket_key_rotation": 600, "session_ticket_timeout": 3000},
        sc_ticket_erased_key,
        "ticket_unknown_key",
    ),
    Case("ticket_invalid", TICKETS, sc_ticket_invalid, "ticket_invalid"),
    Case("ticket_expired", TICKETS, sc_ticket_expired, "ticket_expired"),
    Case("cipher_sid", {}, sc_cipher_sid, "cipher_mismatch"),
    Case("cipher_ticket", TICKETS, sc_cipher_ticket, "cipher_mismatch"),
    Case("cipher_profile", {}, sc_cipher_disabled_in_profile, "cipher_mismatch"),
    Case("version", {}, sc_version, "version_mismatch"),
    Case("sni_sid", {}, sc_sni_sid, "sni_mismatch"),
    Case("sni_ticket", TICKETS, sc_sni_ticket, "sni_mismatch"),
    Case("ems_dropped", {}, sc_ems_dropped, "ems_mismatch"),
    Case("ems_added", {}, sc_ems_added, "ems_mismatch"),
    Case("ems_ticket", TICKETS, sc_ems_ticket, "ems_mismatch"),
    Case("strict", {"strict_resume": True}, sc_strict, "strict_resume"),
    Case("strict_clean", {"strict_resume": True}, sc_strict_clean, "resumed", "session_id"),
    Case("unclean_ok", {}, sc_not_strict_unclean, "resumed", "session_id"),
    Case("ticket_bad_sid_ok", {}, sc_ticket_bad_sid_cached, "resumed", "session_id"),
    Case("ticket_bad_sid_miss", TICKETS, sc_ticket_bad_sid_unknown, "ticket_unknown_key"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reason_table(case: Case) -> None:
    r = Rig(**case.profile)
    o = case.scenario(r)
    d = r.decide(o)
    assert d.reason == case.reason
    assert d.method == case.method
    assert (d.resumed is not None) == (case.method is not None)
    assert d.offered == ("ticket" if o.ticket else "session_id" if o.session_id else "none")
    assert r.rt.stats()["decisions"][case.reason] >= 1


def test_every_tls12_reason_is_reached_by_the_table() -> None:
    tls13_only = {"binder_invalid", "psk_kdf_mismatch", "ticket_reused"}
    assert {c.reason for c in CASES} == set(REASONS) - tls13_only


@pytest.mark.parametrize("n", [0, 1, 16, 31, 32])
def test_ticket_acceptance_echoes_exactly_the_clients_session_id(n: int) -> None:
    r = Rig(session_ticket=True)
    client_sid = bytes(range(1, n + 1))
    d = r.decide(offer(sid=client_sid, ticket=r.ticket()))
    assert d.method == "ticket"
    assert d.server_session_id == client_sid  # same bytes, same length (Ticketbleed)
    assert d.ticket_age_s == 0.0


def test_ticket_from_previous_key_resumes_and_is_reissued() -> None:
    r = Rig(session_ticket=True, ticket_key_rotation=600)
    t = r.ticket()
    old = t[:16].hex()
    d = r.decide(offer(ticket=t))
    assert (d.reissue_ticket, d.send_ticket_ext) == (False, False)  # current key: no new ticket
    r.advance(601)
    d = r.decide(offer(ticket=t))
    assert d.method == "ticket" and d.ticket_key == old
    assert d.reissue_ticket and d.send_ticket_ext
    new_ticket, hint, name = r.rt.new_ticket(d.resumed, r.now)  # type: ignore[arg-type]
    assert name != old and hint == 3600
    assert r.decide(offer(ticket=new_ticket)).reissue_ticket is False


def test_full_handshake_modes() -> None:
    stateless = Rig(session_ticket=True).decide(offer(ticket=b""))
    assert (stateless.server_session_id, stateless.send_ticket_ext) == (b"", True)
    # tickets on but the client did not send the extension: stateful fallback
    no_ext = Rig(session_ticket=True).decide(offer())
    assert len(no_ext.server_session_id) == 32 and not no_ext.send_ticket_ext
    stateful = Rig().decide(offer(ticket=b""))
    assert len(stateful.server_session_id) == 32 and not stateful.send_ticket_ext
    neither = Rig(cache_size=0).decide(offer())
    assert neither.server_session_id == b"" and not neither.send_ticket_ext


def test_ticket_age_and_lifetime_hint_follow_the_profile() -> None:
    r = Rig(session_ticket=True, session_ticket_timeout=300, cache_timeout=9000)
    t, hint, _ = r.rt.new_ticket(STATE, r.now)
    assert hint == 300
    r.now += 299
    d = r.decide(offer(ticket=t))
    assert d.method == "ticket" and d.ticket_age_s == pytest.approx(299)
    r.now += 2
    assert r.decide(offer(ticket=t)).reason == "ticket_expired"


# ---- counting store: the exact store operations per handshake kind ---------------------------
class CountingStore:
    def __init__(self, capacity: int = 100) -> None:
        self.inner = MemorySessionStore(capacity, 3600)
        self.ops: list[str] = []

    def put(self, session_id: bytes, data: bytes, now: float) -> bool:
        self.ops.append("put")
        return self.inner.put(session_id, data, now)

    def get(self, session_id: bytes, now: float) -> bytes | None:
        self.ops.append("get")
        return self.inner.get(session_id, now)

    def take(self, session_id: bytes, now: float) -> bytes | None:
        self.ops.append("take")
        return self.inner.take(session_id, now)

    def can_cache(self) -> bool:
        return self.inner.can_cache()

    def forgotten(self, session_id: bytes) -> str | None:
        return self.inner.forgotten(session_id)


def handshake(r: Rig, o: HelloOffer) -> Decision:
    """What the engine does: decide, then finish_full (full) or nothing more (resumed)."""
    d = r.decide(o)
    if d.resumed is None:
        r.rt.finish_full(d, STATE, r.now)
    if d.send_ticket_ext:
        r.rt.new_ticket(d.resumed or STATE, r.now)
    return d


def test_store_ops_full_stateful_is_one_put() -> None:
    s = CountingStore()
    r = Rig(store=s)
    handshake(r, offer())
    assert s.ops == ["put"]


def test_store_ops_full_with_unknown_session_id_is_get_then_put() -> None:
    s = CountingStore()
    r = Rig(store=s)
    d = handshake(r, offer(sid=b"\x09" * 32))
    assert d.reason == "cache_miss" and s.ops == ["get", "put"]


def test_store_ops_resumed_by_id_is_one_get() -> None:
    s = CountingStore()
    r = Rig(store=s)
    sid = handshake(r, offer()).server_session_id
    s.ops.clear()
    d = handshake(r, offer(sid=sid))
    assert d.method == "session_id" and s.ops == ["get"]


def test_store_ops_tickets_on_touch_no_store() -> None:
    s = CountingStore()
    r = Rig(store=s, session_ticket=True)
    handshake(r, offer(ticket=b""))
    t = r.ticket()
    d = handshake(r, offer(sid=b"\x01" * 32, ticket=t))
    assert d.method == "ticket" and s.ops == []


def test_store_ops_cache_disabled_touch_no_store() -> None:
    s = CountingStore(capacity=0)
    r = Rig(store=s, cache_size=0)
    d = handshake(r, offer(sid=b"\x01" * 32))
    assert d.reason == "cache_disabled" and s.ops == []


def test_store_ops_strict_unclean_close_is_one_take() -> None:
    s = CountingStore()
    r = Rig(store=s, strict_resume=True)
    sid = handshake(r, offer()).server_session_id
    s.ops.clear()
    r.rt.session_closed(sid, clean=True, wall_now=r.now)
    assert s.ops == []
    r.rt.session_closed(sid, clean=False, wall_now=r.now)
    assert s.ops == ["take"]
    assert handshake(r, offer(sid=sid)).reason == "cache_miss"  # a foreign store has no tombstone


def test_cache_events_are_not_built_for_a_bus_that_does_not_want_them() -> None:
    """A full cache evicts on every put: with no collector for ``tls.cache`` nothing is emitted,
    and the eviction still happens (the miss reason stays ``cache_evicted``)."""

    class NoCache(ListBus):
        def wants(self, topic: str) -> bool:
            return topic != "tls.cache"

    r = Rig(cache_size=1)
    r.bus = r.rt.bus = NoCache()
    first = r.full().server_session_id
    r.full()
    assert r.bus.of("tls.cache") == []
    assert r.decide(offer(sid=first)).reason == "cache_evicted"
    loud = Rig(cache_size=1)
    loud.full()
    loud.full()
    assert [e["action"] for e in loud.bus.of("tls.cache")] == ["evicted"]
