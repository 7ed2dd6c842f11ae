"""Profile name -> ``ProfileRuntime``, shared by every virtual server of one tapnf runtime.

The TLS stage finds the registry in ``env.shared["tls"]`` (or builds one with
``ProfileRegistry.from_config(env.config, ...)``). Pass ``base_dir`` (the config file's
directory) so paths given over the control channel (``cert``, ``ticket_key_file``) resolve like
those in the file. ``gen`` is the profile generation put in every event's envelope: it is
bumped by every live change (``set``, key import, rotation requested over the control channel).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline.events import EventBus
from plugins.tls.profile import TlsProfile
from plugins.tls.resumption import ProfileRuntime

Rng = Callable[[int], bytes]


class ProfileRegistry:
    """Every profile's runtime, and the generation counter."""

    def __init__(
        self,
        profiles: Mapping[str, TlsProfile],
        *,
        bus: EventBus,
        rng: Rng,
        wall_clock: Callable[[], float],
        base_dir: Path | None = None,
    ) -> None:
        self.gen = 0
        self.bus = bus
        self._runtimes: dict[str, ProfileRuntime] = {
            name: ProfileRuntime(
                profile,
                bus=bus,
                rng=rng,
                wall_clock=wall_clock,
                base_dir=base_dir,
                on_change=self._bump,
            )
            for name, profile in profiles.items()
        }

    @classmethod
    def from_config(
        cls, config: Any, *, bus: EventBus, rng: Rng, wall_clock: Callable[[], float]
    ) -> ProfileRegistry:
        """From ``nf.config.Config`` (``.profiles``; ``.base_dir`` resolves paths given live)."""
        return cls(
            config.profiles,
            bus=bus,
            rng=rng,
            wall_clock=wall_clock,
            base_dir=getattr(config, "base_dir", None),
        )

    def _bump(self, why: str) -> None:
        self.gen += 1

    def get(self, name: str) -> ProfileRuntime:
        """The runtime of profile ``name``; KeyError if there is none."""
        return self._runtimes[name]

    def names(self) -> list[str]:
        return sorted(self._runtimes)

    def __iter__(self) -> Iterator[ProfileRuntime]:
        return iter(self._runtimes.values())

    def handle_timer(self, wall_now: float) -> None:
        for rt in self._runtimes.values():
            at = rt.poll_at()
            if at is not None and at <= wall_now:
                rt.handle_timer(wall_now)

    def poll_at(self) -> float | None:
        times = [t for rt in self._runtimes.values() if (t := rt.poll_at()) is not None]
        return min(times) if times else None

    def stats(self) -> dict[str, Any]:
        return {"gen": self.gen, "profiles": {n: rt.stats() for n, rt in self._runtimes.items()}}


__all__ = ["ProfileRegistry"]
