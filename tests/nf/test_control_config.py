"""[control] validation: defaults, every error names control.KEY and the value, CURVE rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nf.control import ControlConfig, is_loopback_tcp
from nf.curve import generate
from pipeline.errors import ConfigError


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    return generate(tmp_path / "keys")


def test_defaults() -> None:
    c = ControlConfig.from_table({})
    assert c.endpoint == "tcp://127.0.0.1:5555"
    assert c.events == "tcp://127.0.0.1:5556"
    assert c.curve() is None and c.subscribe is None


def test_full_table(keys: dict[str, Path]) -> None:
    c = ControlConfig.from_table(
        {
            "endpoint": "tcp://0.0.0.0:5555",
            "events": "tcp://[::]:5556",
            "stats_interval": 2,
            "hwm": 50,
            "max_request_bytes": 4096,
            "curve_secret_key": str(keys["server_secret"]),
            "curve_authorized_keys": str(keys["authorized"]),
            "subscribe": "tcp://192.0.2.1:5557",
            "subscribe_server_key": str(keys["server_public"]),
        }
    )
    curve = c.curve()
    assert curve is not None and curve.authorized_keys() != []
    assert c.stats_interval == 2.0 and c.hwm == 50
    assert "secret_key" not in repr(curve).replace("secret_key_file", "")


def test_relative_key_paths_resolve_against_base_dir(keys: dict[str, Path]) -> None:
    base = keys["server_secret"].parent
    c = ControlConfig.from_table(
        {"curve_secret_key": "server.key_secret", "curve_authorized_keys": "authorized"},
        base_dir=base,
    )
    assert c.curve() is not None


@pytest.mark.parametrize(
    ("table", "path", "value"),
    [
        ({"endpoint": 5555}, "control.endpoint", 5555),
        ({"endpoint": "udp://1.2.3.4:5"}, "control.endpoint", "udp://1.2.3.4:5"),
        ({"endpoint": "tcp://127.0.0.1"}, "control.endpoint", "tcp://127.0.0.1"),
        ({"endpoint": "tcp://127.0.0.1:99999"}, "control.endpoint", "tcp://127.0.0.1:99999"),
        ({"endpoint": "tcp://0.0.0.0:5555"}, "control.endpoint", "tcp://0.0.0.0:5555"),
        ({"endpoint": "tcp://*:5555"}, "control.endpoint", "tcp://*:5555"),
        ({"events": "tcp://192.0.2.1:5556"}, "control.events", "tcp://192.0.2.1:5556"),
        ({"events": "tcp://127.0.0.1:5555"}, "control.events", "tcp://127.0.0.1:5555"),
        ({"stats_interval": "often"}, "control.stats_interval", "often"),
        ({"stats_interval": 0}, "control.stats_interval", 0),
        ({"hwm": 0}, "control.hwm", 0),
        ({"hwm": True}, "control.hwm", True),
        ({"max_request_bytes": 10}, "control.max_request_bytes", 10),
        ({"bogus": 1}, "control.bogus", 1),
        ({"subscribe": ""}, "control.subscribe", ""),
        ({"subscribe": "nowhere"}, "control.subscribe", "nowhere"),
        ({"curve_secret_key": "/nonexistent/k"}, "control.curve_authorized_keys", None),
    ],
)
def test_errors_name_key_and_value(table: dict[str, Any], path: str, value: Any) -> None:
    with pytest.raises(ConfigError) as err:
        ControlConfig.from_table(table)
    assert err.value.path == path
    assert err.value.value == value


def test_non_loopback_needs_curve_message() -> None:
    with pytest.raises(ConfigError, match="requires CurveZMQ"):
        ControlConfig.from_table({"endpoint": "tcp://10.1.2.3:5555"})


def test_bad_key_files(keys: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        ControlConfig.from_table(
            {
                "curve_secret_key": str(tmp_path / "missing"),
                "curve_authorized_keys": str(keys["authorized"]),
            }
        )
    assert err.value.path == "control.curve_secret_key"
    with pytest.raises(ConfigError, match="no secret key") as err:
        ControlConfig.from_table(
            {
                "curve_secret_key": str(keys["server_public"]),
                "curve_authorized_keys": str(keys["authorized"]),
            }
        )
    with pytest.raises(ConfigError) as err:
        ControlConfig.from_table(
            {
                "curve_secret_key": str(keys["server_secret"]),
                "curve_authorized_keys": str(tmp_path / "nodir"),
            }
        )
    assert err.value.path == "control.curve_authorized_keys"
    with pytest.raises(ConfigError) as err:
        ControlConfig.from_table({"subscribe_server_key": str(keys["server_public"])})
    assert err.value.path == "control.subscribe_server_key"
    with pytest.raises(ConfigError) as err:
        ControlConfig.from_table(
            {
                "subscribe": "tcp://127.0.0.1:5557",
                "subscribe_server_key": str(keys["server_public"]),
            }
        )
    assert err.value.path == "control.curve_secret_key"


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("tcp://127.0.0.1:1", True),
        ("tcp://127.8.9.1:1", True),
        ("tcp://[::1]:1", True),
        ("tcp://localhost:1", True),
        ("tcp://0.0.0.0:1", False),
        ("tcp://*:1", False),
        ("tcp://eth0:1", False),
        ("tcp://[2001:db8::1]:1", False),
    ],
)
def test_loopback_detection(endpoint: str, loopback: bool) -> None:
    assert is_loopback_tcp(endpoint) is loopback


def test_config_loader_uses_control_table() -> None:
    from nf.config import load_config_data

    c = load_config_data({"vips": ["192.0.2.10"], "control": {"endpoint": "ipc:///tmp/x.sock"}})
    assert isinstance(c.control, ControlConfig) and c.control.endpoint == "ipc:///tmp/x.sock"
    with pytest.raises(ConfigError) as err:
        load_config_data({"vips": ["192.0.2.10"], "control": {"endpoint": "tcp://0.0.0.0:1"}})
    assert err.value.path == "control.endpoint"
