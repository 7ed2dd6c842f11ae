"""Config validation: every error names the key path and the offending value."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from nf.config import load_config, load_config_data
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = {"vips": [{"address": "192.0.2.10"}]}


def cfg(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {**MINIMAL}
    data.update(overrides)
    return data


def test_lab_config_is_valid() -> None:
    c = load_config(ROOT / "configs" / "lab.toml")
    assert c.interface.kind == "tap"
    assert c.interface.netns == "lab"
    assert c.interface.peer_address == ("192.0.2.1/24", "2001:db8::1/64")
    assert [str(v) for v in c.vips] == ["192.0.2.10", "2001:db8::10"]
    echo = next(vs for vs in c.virtual_servers if vs.name == "vs_echo")
    assert echo.port == 7 and echo.chain == ("echo",)
    assert echo.addresses == c.vips  # no addresses given: every VIP


def test_defaults() -> None:
    c = load_config_data(cfg())
    assert c.interface.name == "tapnf0"
    assert c.interface.mtu == 1500
    assert c.vips == (ipaddress.ip_address("192.0.2.10"),)
    assert c.control is None


@pytest.mark.parametrize(
    ("data", "path", "value"),
    [
        (cfg(interface={"mtu": 100}), "interface.mtu", 100),
        (cfg(interface={"mtu": "big"}), "interface.mtu", "big"),
        (cfg(interface={"name": "x" * 16}), "interface.name", "x" * 16),
        (cfg(interface={"mac": "01:00:00:00:00:01"}), "interface.mac", "01:00:00:00:00:01"),
        (cfg(interface={"mac": "zz"}), "interface.mac", "zz"),
        (cfg(interface={"kind": "wifi"}), "interface.kind", "wifi"),
        (cfg(interface={"colour": "red"}), "interface.colour", "red"),
        (
            cfg(interface={"peer_address": ["10.0.0.300/24"]}),
            "interface.peer_address[0]",
            "10.0.0.300/24",
        ),
        (cfg(interface={"netns": "bad name"}), "interface.netns", "bad name"),
        ({"vips": []}, "vips", []),
        ({"vips": [{"address": "nope"}]}, "vips[0].address", "nope"),
        ({"vips": [{"address": "192.0.2.10"}, {"address": "192.0.2.10"}]}, "vips[1]", "192.0.2.10"),
        (cfg(virtual_servers=[{"name": "a", "chain": ["echo"]}]), "virtual_servers[0].port", None),
        (
            cfg(virtual_servers=[{"port": 70000, "chain": ["echo"]}]),
            "virtual_servers[0].port",
            70000,
        ),
        (cfg(virtual_servers=[{"port": 7, "chain": []}]), "virtual_servers[0].chain", []),
        (
            cfg(virtual_servers=[{"port": 7, "chain": ["echo"], "addresses": ["192.0.2.99"]}]),
            "virtual_servers[0].addresses[0]",
            "192.0.2.99",
        ),
        (
            cfg(virtual_servers=[{"port": 7, "chain": ["echo"]}, {"port": 7, "chain": ["echo"]}]),
            "virtual_servers[1].port",
            7,
        ),
        (
            cfg(virtual_servers=[{"port": 443, "chain": ["tls:nothere", "http"]}]),
            "virtual_servers[0].chain[0]",
            "tls:nothere",
        ),
        (cfg(surprise=1), "config.surprise", 1),
    ],
)
def test_errors_name_path_and_value(data: dict[str, object], path: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_data(data)
    assert info.value.path == path
    assert info.value.value == value
    assert path in str(info.value)


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[interface\nkind = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_nf_check_reports_errors_and_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[vips]]\naddress = "192.0.2.10"\n[interface]\nmtu = 1\n')
    r = subprocess.run(
        [sys.executable, "-m", "nf", "check", "-c", str(bad)], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert "interface.mtu" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "nf", "check", "-c", str(ROOT / "configs" / "lab.toml")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_overrides_apply_before_validation() -> None:
    c = load_config(
        ROOT / "configs" / "lab.toml",
        [
            "interface.netns=other",
            "interface.mtu=9000",
            'instance="x1"',
            "capture.pcap=/tmp/c.pcap",
        ],
    )
    assert c.interface.netns == "other"
    assert c.interface.mtu == 9000
    assert c.instance == "x1"
    assert c.capture.pcap == "/tmp/c.pcap"
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "configs" / "lab.toml", ["interface.mtu=1"])
    assert info.value.path == "interface.mtu"
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "configs" / "lab.toml", ["novalue"])
    assert info.value.path == "--set"
