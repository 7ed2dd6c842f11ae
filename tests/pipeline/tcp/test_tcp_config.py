from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.tcp import TcpConfig


def test_defaults() -> None:
    cfg = TcpConfig.from_table({})
    assert cfg == TcpConfig()
    assert cfg.time_wait == 2.0 and cfg.delayed_ack == 0.040 and cfg.keepalive == 0.0


def test_values_and_int_to_float() -> None:
    cfg = TcpConfig.from_table({"time_wait": 1, "max_flows": 10, "sack": False})
    assert cfg.time_wait == 1.0 and isinstance(cfg.time_wait, float)
    assert cfg.max_flows == 10 and cfg.sack is False


@pytest.mark.parametrize(
    ("table", "path", "value"),
    [
        ({"nope": 1}, "tcp.nope", 1),
        ({"max_flows": "many"}, "tcp.max_flows", "many"),
        ({"max_flows": True}, "tcp.max_flows", True),
        ({"max_flows": 1.5}, "tcp.max_flows", 1.5),
        ({"sack": 1}, "tcp.sack", 1),
        ({"time_wait": -1}, "tcp.time_wait", -1.0),
        ({"delayed_ack": 2}, "tcp.delayed_ack", 2.0),
        ({"rto_min": 10, "rto_max": 5}, "tcp.rto_min", 10.0),
        ({"send_buffer": 8192, "send_buffer_hard": 4096}, "tcp.send_buffer_hard", 4096),
    ],
)
def test_errors_name_key_and_value(table: dict[str, object], path: str, value: object) -> None:
    with pytest.raises(ConfigError) as exc:
        TcpConfig.from_table(table, "tcp")
    assert exc.value.path == path and exc.value.value == value


def test_custom_path() -> None:
    with pytest.raises(ConfigError) as exc:
        TcpConfig.from_table({"max_retries": 0}, "instances.a.tcp")
    assert exc.value.path == "instances.a.tcp.max_retries"
