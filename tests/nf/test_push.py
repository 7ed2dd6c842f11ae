"""Fleet push: validation shared with the control ops, versions (stale/replayed ignored), keys only
over CURVE, acknowledgements as nf.profile events, and the ``nf push`` publisher."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nf.control import ControlConfig
from nf.curve import CurveConfig, generate
from nf.push import TOPIC, FleetSubscriber, Publisher, PushError, make_message
from tests.nf.conftest import FakeRegistry, FakeView, b64

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(80))


def _sub(ctx: zmq.Context[Any], endpoint: str, view: FakeView, **cfg: Any) -> FleetSubscriber:
    config = ControlConfig.from_table(
        {
            "endpoint": "ipc:///tmp/unused-c",
            "events": "ipc:///tmp/unused-e",
            "subscribe": endpoint,
            **cfg,
        }
    )
    return FleetSubscriber(ctx, config, view)


def _pump(sub: FleetSubscriber, until: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sub.socket.poll(50):
            sub.process(0.0)
        if until():
            return True
    return False


def test_profile_push_applies_and_acknowledges(ctx: zmq.Context[Any]) -> None:
    view = FakeView(FakeRegistry(("clientssl", "other")))
    sub = _sub(ctx, "inproc://ctl-x", view)
    try:
        sub.apply(make_message(5, "profile", profiles={"clientssl": {"session_ticket": True}}), 0.0)
        assert view.tls.get("clientssl").settings["session_ticket"] is True
        assert view.bus.of("nf.profile") == [
            {"profile": "clientssl", "changed": ["session_ticket"], "source": "push", "version": 5}
        ]
        # replay and older versions are ignored and counted
        assert (
            sub.apply(make_message(5, "profile", profiles={"clientssl": {"cache_size": 1}}), 0.0)
            == []
        )
        assert sub.apply(make_message(4, "rotate"), 0.0) == []
        assert sub.counters["push.stale"] == 2
        assert view.tls.get("clientssl").settings["cache_size"] == 8
        assert len(view.bus.of("nf.profile")) == 1
    finally:
        sub.close()


def test_rotate_all_profiles(ctx: zmq.Context[Any]) -> None:
    view = FakeView(FakeRegistry(("a", "b")))
    sub = _sub(ctx, "inproc://ctl-r", view)
    try:
        results = sub.apply(make_message(1, "rotate"), 0.0)
        assert [r["profile"] for r in results] == ["a", "b"]
        assert [e["profile"] for e in view.bus.of("nf.profile")] == ["a", "b"]
    finally:
        sub.close()


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        ([1], None),
        ({"v": 2, "version": 1, "kind": "rotate"}, "v"),
        ({"v": 1, "version": -1, "kind": "rotate"}, "version"),
        ({"v": 1, "version": "1", "kind": "rotate"}, "version"),
        ({"v": 1, "version": 1, "kind": "explode"}, "kind"),
        ({"v": 1, "version": 1, "kind": "rotate", "extra": 1}, "extra"),
        ({"v": 1, "version": 1, "kind": "profile"}, "profiles"),
        (
            {"v": 1, "version": 1, "kind": "profile", "profiles": {"clientssl": 3}},
            "profiles.clientssl",
        ),
        (
            {
                "v": 1,
                "version": 1,
                "kind": "profile",
                "profiles": {"clientssl": {"cache_size": "x"}},
            },
            "profiles.clientssl.cache_size",
        ),
        (
            {"v": 1, "version": 1, "kind": "profile", "profiles": {"nope": {"cache_size": 1}}},
            "profile",
        ),
        ({"v": 1, "version": 1, "kind": "rotate", "profile": 3}, "profile"),
    ],
)
def test_invalid_messages_are_rejected_with_the_field(
    ctx: zmq.Context[Any], msg: Any, field: str | None
) -> None:
    sub = _sub(ctx, "inproc://ctl-bad", FakeView(FakeRegistry()))
    try:
        with pytest.raises(PushError) as err:
            sub.apply(msg, 0.0)
        assert err.value.field == field
    finally:
        sub.close()


def test_keys_refused_without_curve(ctx: zmq.Context[Any]) -> None:
    view = FakeView(FakeRegistry())
    sub = _sub(ctx, "inproc://ctl-k", view)
    try:
        with pytest.raises(PushError, match="CURVE"):
            sub.apply(make_message(1, "keys", keys=[b64(KEY)]), 0.0)
        assert sub.counters["push.refused_insecure"] == 1
        assert KEY not in view.tls.get("clientssl").tickets_export()
    finally:
        sub.close()


def test_over_ipc_malformed_frames_are_counted(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/push.sock"
    pub = Publisher(ctx, endpoint)
    view = FakeView(FakeRegistry())
    sub = _sub(ctx, endpoint, view)
    try:
        assert _pump(sub, lambda: pub.poll_subscriptions(10) >= 1)
        pub.socket.send_multipart([TOPIC, b"\xc1"])
        pub.socket.send_multipart([TOPIC + b".x", b"junk"])  # also matches the prefix
        pub.publish(make_message(9, "profile", profiles={"clientssl": {"cache_size": 2}}))
        assert _pump(sub, lambda: sub.counters["push.applied"] == 1)
        assert sub.counters["push.rejected"] == 2 and sub.counters["push.received"] == 3
        assert view.tls.get("clientssl").settings["cache_size"] == 2
        assert sub.version == 9
    finally:
        sub.close()
        pub.close()


def test_curve_key_push_reaches_authorised_instances_only(
    ctx: zmq.Context[Any], tmp_path: Path
) -> None:
    keys = generate(tmp_path / "k", "nf1")
    stranger = generate(tmp_path / "s", "nf2")
    controller = CurveConfig.load(keys["server_secret"], keys["authorized"], "push")
    pub = Publisher(ctx, "tcp://127.0.0.1:*", controller)
    common = {
        "curve_authorized_keys": str(keys["authorized"]),
        "subscribe_server_key": str(keys["server_public"]),
    }
    good_view, bad_view = FakeView(FakeRegistry()), FakeView(FakeRegistry())
    good = _sub(ctx, pub.endpoint, good_view, curve_secret_key=str(keys["client_secret"]), **common)
    bad = _sub(
        ctx, pub.endpoint, bad_view, curve_secret_key=str(stranger["client_secret"]), **common
    )
    try:
        assert good.secure and bad.secure
        assert _pump(good, lambda: pub.poll_subscriptions(10) >= 1)
        msg = make_message(3, "keys", keys=[b64(KEY)])
        for _ in range(3):  # repeated, as nf push does: applied once
            pub.publish(msg)
        assert _pump(good, lambda: good.counters["push.received"] == 3)
        assert good.counters["push.applied"] == 1 and good.counters["push.stale"] == 2
        assert KEY in good_view.tls.get("clientssl").tickets_export()
        assert good_view.bus.of("nf.profile")[0]["version"] == 3
        assert not _pump(bad, lambda: bad.counters["push.received"] > 0, timeout=0.5)
        assert KEY not in bad_view.tls.get("clientssl").tickets_export()
    finally:
        good.close()
        bad.close()
        pub.close()


def test_nf_push_command_profile(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/fleet.sock"
    change = tmp_path / "change.toml"
    change.write_text("[profiles.clientssl]\nsession_ticket = true\ncache_size = 1\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nf",
            "push",
            "--bind",
            endpoint,
            "--profile",
            str(change),
            "--version",
            "42",
            "--subscribers",
            "1",
            "--duration",
            "20",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    view = FakeView(FakeRegistry())
    sub = None
    try:
        deadline = time.monotonic() + 10
        while not Path(endpoint[len("ipc://") :]).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        sub = _sub(ctx, endpoint, view)
        assert _pump(sub, lambda: sub is not None and sub.counters["push.applied"] == 1, timeout=15)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        if sub is not None:
            sub.close()
    assert proc.returncode == 0, err
    assert "profile version 42 sent 1 time(s)" in out
    assert view.tls.get("clientssl").settings == {"cache_size": 1, "session_ticket": True}


def test_nf_push_refuses_keys_without_curve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nf.cli import main

    keyfile = tmp_path / "keys.txt"
    keyfile.write_text(f"# fleet keys\n{b64(KEY)}\n")
    assert main(["push", "--bind", f"ipc://{tmp_path}/p.sock", "--keys", str(keyfile)]) == 2
    assert "only travel over CURVE" in capsys.readouterr().err
    keyfile.write_text(f"{b64(KEY)}\n{b64(b'short')}\n")
    assert main(["push", "--bind", f"ipc://{tmp_path}/p.sock", "--keys", str(keyfile)]) == 2
    assert "80 bytes" in capsys.readouterr().err
    assert main(["push", "--bind", "tcp://0.0.0.0:5999", "--rotate"]) == 2
    assert "non-loopback" in capsys.readouterr().err


def test_push_frames_roundtrip() -> None:
    msg = make_message(1, "keys", keys=["a"], profile="p")
    assert msgpack.unpackb(msgpack.packb(msg)) == {
        "v": 1,
        "version": 1,
        "kind": "keys",
        "keys": ["a"],
        "profile": "p",
    }


_FUZZ: dict[str, FleetSubscriber] = {}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.one_of(
        st.binary(max_size=200),
        st.dictionaries(
            st.sampled_from(["v", "version", "kind", "profile", "profiles", "keys", "x"]),
            st.one_of(
                st.integers(-3, 3),
                st.text(max_size=5),
                st.none(),
                st.lists(st.text(max_size=4), max_size=2),
            ),
        ).map(msgpack.packb),
    )
)
def test_random_push_payloads_are_rejected_or_applied_never_raise(
    ctx: zmq.Context[Any], payload: bytes
) -> None:
    sub = _FUZZ.get("s")
    if sub is None or sub.socket.closed:
        sub = _FUZZ["s"] = _sub(ctx, "inproc://fuzz-push", FakeView(FakeRegistry()))
    sub.version = None
    try:
        sub.apply_frames([TOPIC, payload], 0.0)
    except PushError as exc:
        assert str(exc)
