"""The event buses' ``wants``: whether an emitter may skip building an event's fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.events import ListBus, NullBus, TeeBus, wants


class Selective:
    def __init__(self, *topics: str) -> None:
        self.topics = set(topics)

    def emit(self, topic: str, fields: Mapping[str, Any]) -> None:
        pass

    def wants(self, topic: str) -> bool:
        return topic in self.topics


class Plain:
    """A bus without ``wants`` (e.g. a plugin's): it gets every event."""

    def emit(self, topic: str, fields: Mapping[str, Any]) -> None:
        pass


def test_null_discards_list_keeps_and_an_unknown_bus_wants_everything() -> None:
    assert not wants(NullBus(), "tcp.flow")
    assert wants(ListBus(), "tcp.flow")
    assert wants(Plain(), "tcp.flow")


def test_a_tee_wants_what_any_of_its_buses_wants() -> None:
    tee = TeeBus(Selective("tls.handshake"), Selective("tcp.flow"))
    assert wants(tee, "tls.handshake") and wants(tee, "tcp.flow")
    assert not wants(tee, "nf.stats")
    assert wants(TeeBus(NullBus(), Plain()), "nf.stats")
    assert not wants(TeeBus(NullBus()), "nf.stats")
