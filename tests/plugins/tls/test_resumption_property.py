"""Property: whatever a ClientHello offers (random IDs, tickets — real, tampered or junk —,
suites, SNI, EMS) under whatever profile, decide() returns exactly one known reason and a
Decision whose fields agree with each other. It never raises."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.events import REASONS, ListBus
from plugins.tls.profile import TlsProfile
from plugins.tls.resumption import HelloOffer, ProfileRuntime
from plugins.tls.session import SessionState

SUITES = (0xC02F, 0xC030, 0xC02B, 0x1301)


@settings(max_examples=300, deadline=None)
@given(
    tickets_on=st.booleans(),
    cache_size=st.sampled_from([0, 1, 3]),
    strict=st.booleans(),
    seed=st.integers(0, 2**16),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["known_sid", "random_sid", "none"]),
            st.sampled_from(["real", "tampered", "junk", "empty", "absent"]),
            st.lists(st.sampled_from(SUITES), min_size=1, max_size=3, unique=True),
            st.sampled_from([None, "a.lab", "B.lab"]),
            st.booleans(),
            st.floats(0, 8000),
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_decide_is_total_and_consistent(
    tickets_on: bool, cache_size: int, strict: bool, seed: int, steps: list[tuple]
) -> None:
    rnd = random.Random(seed)
    now = 1000.0
    rt = ProfileRuntime(
        TlsProfile("p", (), session_ticket=tickets_on, cache_size=cache_size, strict_resume=strict),
        bus=ListBus(),
        rng=rnd.randbytes,
        wall_clock=lambda: now,
    )
    sids: list[bytes] = []
    tickets: list[bytes] = []
    for sid_kind, ticket_kind, suites, sni, ems, dt in steps:
        now += dt
        sid = {
            "known_sid": sids[-1] if sids else b"",
            "random_sid": rnd.randbytes(rnd.choice([1, 16, 32])),
            "none": b"",
        }[sid_kind]
        real = tickets[-1] if tickets else None
        ticket: bytes | None = {
            "real": real,
            "tampered": real[:-1] + bytes([real[-1] ^ 1]) if real else b"\x01" * 60,
            "junk": rnd.randbytes(rnd.randrange(1, 300)),
            "empty": b"",
            "absent": None,
        }[ticket_kind]
        offer = HelloOffer(sid, ticket, tuple(suites), sni, ems)
        d = rt.decide(offer, now, rnd.randbytes)
        assert d.reason in REASONS
        assert (d.reason == "resumed") == (d.resumed is not None) == (d.method is not None)
        assert d.offered == ("ticket" if ticket else "session_id" if sid else "none")
        if d.resumed is not None:
            assert d.server_session_id == sid  # echo, exact length
            assert d.resumed.cipher_suite in suites and d.resumed.ems == ems
        else:
            assert len(d.server_session_id) in (0, 32)
        if d.send_ticket_ext:
            assert tickets_on and ticket is not None
        if d.method == "ticket":
            assert tickets_on and d.ticket_key is not None and d.ticket_age_s is not None
        # what the engine does next
        state = d.resumed or SessionState(0x0303, suites[0], rnd.randbytes(48), ems, sni, None, now)
        if d.resumed is None:
            rt.finish_full(d, state, now)
            if d.server_session_id:
                sids.append(d.server_session_id)
        if d.send_ticket_ext:
            tickets.append(rt.new_ticket(state, now)[0])
        if sids and rnd.random() < 0.3:
            rt.session_closed(sids[-1], rnd.random() < 0.5, now)
        rt.handle_timer(now)
    assert sum(rt.stats()["decisions"].values()) == len(steps)
