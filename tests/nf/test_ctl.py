"""``nf ctl`` against a real control server running its own poll loop in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from nf.cli import main
from nf.commands.ctl import parse_args_list, parse_value, render, request
from nf.control import ControlServer
from nf.ops import build_ops
from tests.nf.conftest import FakeRegistry, FakeView


class ServerThread:
    """Serves like the loop does: poll the ROUTER, ``process`` when readable; bounded."""

    def __init__(self, endpoint: str, view: FakeView) -> None:
        self.endpoint = endpoint
        self.view = view
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        ctx: zmq.Context[Any] = zmq.Context()
        srv = ControlServer(ctx, self.endpoint, build_ops(self.view))
        self.ready.set()
        try:
            for _ in range(600):  # at most ~30 s
                if self.stop.is_set():
                    break
                if srv.socket.poll(50):
                    srv.process(0.0)
        finally:
            srv.close()
            ctx.term()

    def __enter__(self) -> ServerThread:
        self.thread.start()
        assert self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(f"ipc://{tmp_path}/ctl.sock", FakeView(FakeRegistry())) as srv:
        yield srv


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("1", 1),
        ("2.5", 2.5),
        ('"quoted"', "quoted"),
        ("clientssl", "clientssl"),
        ("[1, 2]", [1, 2]),
        ("", ""),
        ("a b", "a b"),
    ],
)
def test_values_are_toml_scalars(text: str, value: Any) -> None:
    assert parse_value(text) == value


def test_args_need_key_value() -> None:
    assert parse_args_list(["profile=x", "cache_size=1"]) == {"profile": "x", "cache_size": 1}
    with pytest.raises(ValueError):
        parse_args_list(["novalue"])


def test_ctl_status(running: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["ctl", "--endpoint", running.endpoint, "nf.status"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "version: 0.1.0" in out


def test_ctl_set_then_get(running: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    ep = running.endpoint
    assert (
        main(
            ["ctl", "--endpoint", ep, "tls.profile.set", "profile=clientssl", "session_ticket=true"]
        )
        == 0
    )
    assert "changed: session_ticket" in capsys.readouterr().out
    assert main(["ctl", "--endpoint", ep, "--json", "tls.profile.get", "profile=clientssl"]) == 0
    out = capsys.readouterr().out
    assert '"session_ticket": true' in out


def test_ctl_error_reply_exit_1(running: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "ctl",
            "--endpoint",
            running.endpoint,
            "tls.profile.set",
            "profile=clientssl",
            "cache_size=big",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "invalid" in err and "field profiles.clientssl.cache_size" in err


def test_ctl_table_rendering(running: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["ctl", "--endpoint", running.endpoint, "tls.sessions.list", "profile=clientssl"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("profile: clientssl  total: 3")
    assert lines[1].split() == ["id", "age_s"]
    assert len(lines) == 5


def test_ctl_nothing_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["ctl", "--endpoint", f"ipc://{tmp_path}/none.sock", "--timeout", "0.3", "nf.status"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("nf ctl: no answer from ipc://") and err.count("\n") == 1


def test_request_helper(running: ServerThread) -> None:
    reply = request(running.endpoint, "vips.list", {}, 2.0)
    assert reply is not None and reply["ok"]


def test_render_nested() -> None:
    text = render({"counters": {"a": 1}, "profiles": {"p": {"x": 1}}, "list": [1, 2]})
    assert text.splitlines() == [
        "counters:",
        "  a: 1",
        "profiles:",
        "  p:",
        "    x: 1",
        "list: 1, 2",
    ]
