"""Wall-clock timers (ticket rotation, cache expiry) become due in the loop's own time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from nf.config import load_config_data
from nf.loop import MAX_SLEEP
from nf.runtime import TLS_REFRESH, Clocks, Runtime
from pipeline.io.memory import MemoryPort


class Profile:
    def __init__(self, due_wall: float) -> None:
        self.due_wall = due_wall
        self.fired: list[float] = []

    def poll_at(self) -> float:
        return self.due_wall

    def handle_timer(self, wall_now: float) -> None:
        self.fired.append(wall_now)


class Registry:
    """What the runtime uses of ``plugins.tls.registry.ProfileRegistry``: its profiles."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile

    def __iter__(self) -> Iterator[Profile]:
        return iter([self.profile])


def test_a_past_wall_deadline_is_due_at_the_loops_now() -> None:
    ticks = iter(range(100, 10_000))  # every clock read moves on, as a real clock does
    clocks = Clocks(monotonic=lambda: float(next(ticks)), wall=lambda: 5000.0)
    rt = Runtime(load_config_data({"vips": [{"address": "192.0.2.10"}]}), clocks=clocks)
    rt.tls = Registry(Profile(due_wall=4000.0))  # overdue by 1000 s
    now = 42.0
    deadline = rt.poll_at(now)
    assert deadline == now  # due now, not "a little after whatever the clock says next"
    rt.tls.profile.due_wall = 5030.0
    assert rt.poll_at(now) == now + 30.0


class Exporter:
    def __init__(self, next_stats: float) -> None:
        self.next_stats = next_stats
        self.ticks: list[float] = []

    def poll_at(self) -> float:
        return self.next_stats

    def tick(self, now: float, stats: object) -> None:
        self.ticks.append(now)


class Profiles:
    def __init__(self, *profiles: Profile) -> None:
        self.profiles = profiles

    def __iter__(self) -> Iterator[Profile]:
        return iter(self.profiles)


def test_handle_timers_fires_only_what_is_due() -> None:
    clocks = Clocks(monotonic=lambda: 100.0, wall=lambda: 5000.0)
    rt = Runtime(load_config_data({"vips": [{"address": "192.0.2.10"}]}), clocks=clocks)
    due, later = Profile(due_wall=4999.0), Profile(due_wall=5001.0)
    rt.tls = Profiles(due, later)
    rt.exporter = exporter = Exporter(next_stats=110.0)
    rt.handle_timers(100.0)
    assert due.fired == [5000.0] and later.fired == []
    assert exporter.ticks == []
    rt.handle_timers(110.0)
    assert exporter.ticks == [110.0]


class CountingProfile(Profile):
    def __init__(self, due_wall: float) -> None:
        super().__init__(due_wall)
        self.asked = 0

    def poll_at(self) -> float:
        self.asked += 1
        return self.due_wall


def test_a_frames_only_ask_reuses_the_tls_deadline_for_at_most_tls_refresh() -> None:
    """``full=False`` (a wake that only carried frames) does not ask the TLS profiles again
    within ``TLS_REFRESH`` of the last full ask; a full ask, or an older answer, asks."""
    wall = [5000.0]
    clocks = Clocks(monotonic=lambda: 0.0, wall=lambda: wall[0])
    rt = Runtime(load_config_data({"vips": [{"address": "192.0.2.10"}]}), clocks=clocks)
    rt.tls = Registry(profile := CountingProfile(due_wall=5600.0))
    assert rt.poll_at(100.0) == 700.0 and profile.asked == 1
    profile.due_wall = 5300.0  # moved by something that is not a frame (a control request...)
    wall[0] = 5000.5
    assert rt.poll_at(100.5, full=False) == 700.0 and profile.asked == 1  # the earlier answer
    assert rt.poll_at(100.5) == 400.0 and profile.asked == 2  # a full ask sees the change
    profile.due_wall = 5200.0
    wall[0] = 5000.5 + TLS_REFRESH
    assert rt.poll_at(100.5 + TLS_REFRESH, full=False) == 300.0 and profile.asked == 3
    assert TLS_REFRESH <= MAX_SLEEP  # an idle loop's timeout wake asks in full anyway


def test_the_stats_deadline_is_asked_with_the_tls_ones() -> None:
    """Only the exporter's tick (a fired timer, then a full ask) moves its deadline."""
    clocks = Clocks(monotonic=lambda: 0.0, wall=lambda: 5000.0)
    rt = Runtime(load_config_data({"vips": [{"address": "192.0.2.10"}]}), clocks=clocks)
    rt.exporter = exporter = Exporter(next_stats=110.0)
    assert rt.poll_at(100.0) == 110.0
    exporter.next_stats = 105.0
    assert rt.poll_at(100.5, full=False) == 110.0
    rt.handle_timers(110.0)
    assert exporter.ticks == [110.0]
    exporter.next_stats = 120.0
    assert rt.poll_at(110.0) == 120.0


def test_the_capture_manager_is_asked_exactly_while_a_capture_runs(tmp_path: Path) -> None:
    """It is in the packet chain exactly while something captures; only then is it asked."""
    cfg = load_config_data({"vips": [{"address": "192.0.2.10"}], "interface": {"kind": "memory"}})
    rt = Runtime(cfg, port=MemoryPort()).build()
    try:
        capture = rt.capture
        asked: list[int] = []

        def poll_at() -> float:
            asked.append(1)
            return 5.0

        capture.poll_at = poll_at  # type: ignore[method-assign]
        assert rt.poll_at(1.0, full=False) != 5.0 and asked == []
        capture.start(str(tmp_path / "x.pcapng"))
        assert rt.poll_at(1.0, full=False) == 5.0 and asked == [1]
        capture.stop()
        assert rt.poll_at(1.0, full=False) != 5.0 and asked == [1]
    finally:
        rt.close()
