"""The profile ops against the real ProfileRegistry (plugins.tls.registry), over ipc://: live
profile changes seen by the next decision, cache shrink evictions, flush, rotation, and a ticket
sealed on one instance resuming on another after export/import — over the control channel and
over a fleet push."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import zmq

from nf.control import ControlConfig, ControlServer
from nf.ops import build_ops
from nf.push import FleetSubscriber, make_message
from pipeline.events import ListBus
from plugins.tls.profile import TlsProfile
from plugins.tls.registry import ProfileRegistry
from plugins.tls.resumption import HelloOffer
from plugins.tls.session import SessionState
from tests.nf.conftest import Client, FakeView

GCM128 = 0xC02F
T0 = 1_000_000.0
STATE = SessionState(0x0303, GCM128, b"\x07" * 48, True, "a.lab", "h2", T0)


class Instance:
    """One NF's worth of TLS state: a real registry behind a real control server."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: str, seed: int, **profile: Any) -> None:
        self.now = T0
        self.rand = random.Random(seed)
        self.view = FakeView()
        self.bus: ListBus = self.view.bus
        self.registry = ProfileRegistry(
            {"clientssl": TlsProfile("clientssl", (), **profile)},
            bus=self.bus,
            rng=self.rand.randbytes,
            wall_clock=lambda: self.now,
        )
        self.view.tls = self.registry
        self.ops = build_ops(self.view, wall_clock=lambda: self.now)
        self.server = ControlServer(ctx, endpoint, self.ops)
        bound = self.server.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.client = Client(ctx, self.server, bound, zmq.REQ)

    @property
    def rt(self) -> Any:
        return self.registry.get("clientssl")

    def call(self, op: str, **args: Any) -> Any:
        reply = self.client.call(op, **args)
        assert reply["ok"], reply
        return reply["result"]

    def full(self, ticket_ext: bool = False) -> Any:
        d = self.rt.decide(offer(ticket=b"" if ticket_ext else None), self.now, self.rand.randbytes)
        self.rt.finish_full(d, replace(STATE, created=self.now), self.now)
        return d

    def ticket(self) -> bytes:
        ticket: bytes = self.rt.new_ticket(replace(STATE, created=self.now), self.now)[0]
        return ticket

    def decide(self, **kw: Any) -> Any:
        return self.rt.decide(offer(**kw), self.now, self.rand.randbytes)

    def close(self) -> None:
        self.client.close()
        self.server.close()


def offer(sid: bytes = b"", ticket: bytes | None = None) -> HelloOffer:
    return HelloOffer(sid, ticket, (GCM128,), "a.lab", True, 0x0303)


@pytest.fixture
def nf1(ctx: zmq.Context[Any], tmp_path: Path) -> Iterator[Instance]:
    inst = Instance(ctx, f"ipc://{tmp_path}/nf1.sock", 1, cache_size=8)
    yield inst
    inst.close()


@pytest.fixture
def nf2(ctx: zmq.Context[Any], tmp_path: Path) -> Iterator[Instance]:
    inst = Instance(ctx, f"ipc://{tmp_path}/nf2.sock", 2, cache_size=8)
    yield inst
    inst.close()


def test_get_and_set_session_ticket_live(nf1: Instance) -> None:
    got = nf1.call("tls.profile.get", profile="clientssl")
    assert got["settings"]["session_ticket"] is False and got["gen"] == 0
    assert nf1.decide(ticket=b"").send_ticket_ext is False
    result = nf1.call("tls.profile.set", profile="clientssl", session_ticket=True)
    assert result == {"profile": "clientssl", "changed": ["session_ticket"], "gen": 1}
    assert nf1.decide(ticket=b"").send_ticket_ext is True  # the next handshake sees it
    events = nf1.bus.of("nf.profile")
    assert events == [
        {
            "profile": "clientssl",
            "changed": ["session_ticket"],
            "source": "control",
            "version": None,
        }
    ]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"cache_size": "big"}, "profiles.clientssl.cache_size"),
        ({"cache_size": -1}, "profiles.clientssl.cache_size"),
        ({"colour": "red"}, "profiles.clientssl.colour"),
        ({"ciphers": ["NOPE"]}, "profiles.clientssl.ciphers"),
    ],
)
def test_set_is_validated_like_the_config_file(
    nf1: Instance, args: dict[str, Any], field: str
) -> None:
    reply = nf1.client.call("tls.profile.set", profile="clientssl", **args)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid" and reply["error"]["field"] == field
    assert nf1.registry.gen == 0 and nf1.bus.of("nf.profile") == []


def test_cache_shrink_evicts_lru_first_with_events(nf1: Instance) -> None:
    sids = [nf1.full().server_session_id for _ in range(3)]
    listed = nf1.call("tls.sessions.list", profile="clientssl")
    assert listed["total"] == 3
    assert {s["session_id"] for s in listed["items"]} == {s.hex() for s in sids}
    assert all("master" not in k and "secret" not in k for s in listed["items"] for k in s)
    nf1.call("tls.profile.set", profile="clientssl", cache_size=1)
    evicted = [e["session_id"] for e in nf1.bus.of("tls.cache") if e["action"] == "evicted"]
    assert evicted == [sids[0].hex(), sids[1].hex()]
    assert nf1.decide(sid=sids[0]).reason == "cache_evicted"
    assert nf1.decide(sid=sids[2]).reason == "resumed"
    stats = nf1.call("nf.stats")
    assert stats["profiles"]["clientssl"]["cache"]["evictions"] == 2


def test_flush_then_cache_miss(nf1: Instance) -> None:
    sid = nf1.full().server_session_id
    assert nf1.call("tls.sessions.flush", profile="clientssl") == {
        "profile": "clientssl",
        "flushed": 1,
    }
    assert [e["action"] for e in nf1.bus.of("tls.cache")] == ["flushed"]
    assert nf1.decide(sid=sid).reason == "cache_miss"


def test_rotate_twice_old_ticket_still_resumes_and_is_reissued(nf1: Instance) -> None:
    nf1.call("tls.profile.set", profile="clientssl", session_ticket=True)
    ticket = nf1.ticket()
    first = nf1.call("tls.tickets.list", profile="clientssl")["keys"][0]["name"]
    a = nf1.call("tls.tickets.rotate", profile="clientssl")["current"]
    b = nf1.call("tls.tickets.rotate", profile="clientssl")["current"]
    keys = nf1.call("tls.tickets.list", profile="clientssl")["keys"]
    assert [k["name"] for k in keys] == [b, a, first]
    assert [k["state"] for k in keys] == ["current", "decrypt_only", "decrypt_only"]
    assert all(set(k) & {"key", "secret", "bytes"} == set() for k in keys)
    d = nf1.decide(sid=b"\x09" * 32, ticket=ticket)
    assert (d.reason, d.method, d.ticket_key, d.reissue_ticket) == (
        "resumed",
        "ticket",
        first,
        True,
    )
    assert nf1.registry.gen == 3


def test_export_requires_secure_endpoint(ctx: zmq.Context[Any]) -> None:
    inst = Instance(ctx, "tcp://127.0.0.1:*", 3, session_ticket=True)
    try:
        reply = inst.client.call("tls.tickets.export", profile="clientssl")
        assert reply["error"]["code"] == "insecure_endpoint"
    finally:
        inst.close()


def test_ticket_from_one_instance_resumes_on_another_after_export_import(
    nf1: Instance, nf2: Instance
) -> None:
    for inst in (nf1, nf2):
        inst.call("tls.profile.set", profile="clientssl", session_ticket=True)
    ticket = nf1.ticket()
    assert nf2.decide(ticket=ticket).reason == "ticket_unknown_key"
    keys = nf1.call("tls.tickets.export", profile="clientssl")["keys"]
    installed = nf2.call("tls.tickets.import", profile="clientssl", keys=keys)["installed"]
    assert installed
    d = nf2.decide(sid=b"\x05" * 32, ticket=ticket)
    assert (d.reason, d.method) == ("resumed", "ticket")


def test_bad_import_never_echoes_key_bytes(nf1: Instance) -> None:
    reply = nf1.client.call("tls.tickets.import", profile="clientssl", keys=["A" * 8])
    assert reply["error"]["field"] == "args.keys[0]"
    assert "AAAA" not in reply["error"]["message"]


def test_fleet_push_of_keys_makes_tickets_portable(
    ctx: zmq.Context[Any], nf1: Instance, nf2: Instance
) -> None:
    """The push path with the real registry (CURVE transport is covered in test_push.py: here the
    subscriber is marked secure to exercise application only)."""
    for inst in (nf1, nf2):
        inst.call("tls.profile.set", profile="clientssl", session_ticket=True)
    ticket = nf1.ticket()
    keys = nf1.call("tls.tickets.export", profile="clientssl")["keys"]
    config = ControlConfig.from_table(
        {"endpoint": "ipc:///tmp/u1", "events": "ipc:///tmp/u2", "subscribe": "inproc://fleet-none"}
    )
    sub = FleetSubscriber(ctx, config, nf2.view, ops=nf2.ops, curve=None)
    sub.secure = True
    try:
        sub.apply(make_message(10, "keys", keys=keys), nf2.now)
        sub.apply(make_message(11, "profile", profiles={"clientssl": {"cache_size": 2}}), nf2.now)
        sub.apply(
            make_message(11, "profile", profiles={"clientssl": {"cache_size": 3}}), nf2.now
        )  # replay
    finally:
        sub.close()
    assert nf2.decide(sid=b"\x05" * 32, ticket=ticket).method == "ticket"
    assert nf2.rt.profile.cache_size == 2 and sub.counters["push.stale"] == 1
    acks = nf2.bus.of("nf.profile")[-2:]
    assert acks == [
        {"profile": "clientssl", "changed": ["ticket_keys"], "source": "push", "version": 10},
        {"profile": "clientssl", "changed": ["cache_size"], "source": "push", "version": 11},
    ]


def test_the_profile_announcement_carries_the_generation_it_announces(nf1: Instance) -> None:
    """The exporter stamps every event with the registry's ``gen`` when it is emitted: the
    ``nf.profile`` event of a change must already see the bumped generation (it showed the
    previous one: the first change of the demo announced gen 0)."""
    stamped: list[tuple[str, int]] = []
    emit = nf1.bus.emit

    def stamping(topic: str, fields: Any) -> None:
        stamped.append((topic, nf1.registry.gen))
        emit(topic, fields)

    nf1.bus.emit = stamping  # type: ignore[method-assign]
    nf1.call("tls.profile.set", profile="clientssl", session_ticket=True)
    nf1.call("tls.tickets.rotate", profile="clientssl")
    assert [s for s in stamped if s[0] == "nf.profile"] == [("nf.profile", 1), ("nf.profile", 2)]
