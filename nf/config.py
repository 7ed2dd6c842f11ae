"""tapnf configuration: TOML (stdlib ``tomllib``) validated into frozen dataclasses.

Every error is a :class:`~pipeline.errors.ConfigError` naming the key path and the offending
value. Sections owned by a component are validated by that component (``[tcp]`` by
``pipeline.tcp``, ``[profiles.*]`` by ``plugins.tls.profile``, ``[control]`` by ``nf.control``)
so that live changes over the control channel go through the very same rules.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_MAC = "02:00:00:00:0a:10"
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
INTERFACE_KINDS = ("tap", "pcap", "memory")


@dataclass(frozen=True)
class InterfaceConfig:
    kind: str = "tap"
    name: str = "tapnf0"
    mac: bytes = bytes.fromhex(DEFAULT_MAC.replace(":", ""))
    mtu: int = 1500
    netns: str | None = None
    peer_address: tuple[str, ...] = ()
    path: str | None = None  # pcap source file
    offload: bool = False  # TAP: virtio_net_hdr, checksum offload and TSO (pipeline.io.tap)


@dataclass(frozen=True)
class VirtualServer:
    name: str
    addresses: tuple[IPAddress, ...]
    port: int
    chain: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CaptureConfig:
    pcap: str | None = None  # classic pcap file
    max_bytes: int = 256 * 1024 * 1024  # per file
    pcapng: str | None = None  # pcapng file: TLS secrets (DSB) and verdict comments embedded
    files: int = 1  # pcapng ring: 1 = stop when full, N = keep N files of max_bytes
    secrets: bool = True  # embed the TLS key log (Decryption Secrets Block)
    comments: bool = True  # handshake verdicts as comments on the ServerHello frames
    resolution: str = "us"  # pcapng timestamps: us or ns


@dataclass(frozen=True)
class Config:
    instance: str
    interface: InterfaceConfig
    vips: tuple[IPAddress, ...]
    virtual_servers: tuple[VirtualServer, ...]
    tcp: Any  # pipeline.tcp.config.TcpConfig
    profiles: Mapping[str, Any]  # name -> plugins.tls.profile.TlsProfile
    control: Any  # nf.control.ControlConfig, or None when [control] is absent
    capture: CaptureConfig
    source: Path | None = None
    base_dir: Path = Path(".")


# ---- small typed readers ---------------------------------------------------------------------
def _table(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, "must be a table", value)
    return value


def _check_keys(table: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"{path}.{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})", table[key]
            )


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, "must be a string", value)
    return value


def int_in_range(value: Any, path: str, lo: int, hi: int) -> int:
    """An integer (not a bool) within ``[lo, hi]``; shared by every section's validation."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, "must be an integer", value)
    if not lo <= value <= hi:
        raise ConfigError(path, f"must be between {lo} and {hi}", value)
    return value


_int = int_in_range


def _str_list(value: Any, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(path, "must be a list of strings", value)
    return tuple(_str(v, f"{path}[{i}]") for i, v in enumerate(value))


def _address(value: Any, path: str) -> IPAddress:
    try:
        return ipaddress.ip_address(_str(value, path))
    except ValueError:
        raise ConfigError(path, "not an IPv4 or IPv6 address", value) from None


# ---- sections --------------------------------------------------------------------------------
def _interface(t: Mapping[str, Any], path: str = "interface") -> InterfaceConfig:
    _check_keys(t, {"kind", "name", "mac", "mtu", "netns", "peer_address", "path", "offload"}, path)
    kind = _str(t.get("kind", "tap"), f"{path}.kind")
    if kind not in INTERFACE_KINDS:
        raise ConfigError(f"{path}.kind", f"must be one of {', '.join(INTERFACE_KINDS)}", kind)
    name = _str(t.get("name", "tapnf0"), f"{path}.name")
    if not name or len(name.encode()) > 15 or "/" in name or " " in name:
        raise ConfigError(f"{path}.name", "must be 1-15 bytes, no '/' or spaces", name)
    mac_s = _str(t.get("mac", DEFAULT_MAC), f"{path}.mac")
    if not _MAC_RE.match(mac_s):
        raise ConfigError(f"{path}.mac", "must look like 02:00:00:00:0a:10", mac_s)
    mac = bytes.fromhex(mac_s.replace(":", ""))
    if mac[0] & 1:
        raise ConfigError(f"{path}.mac", "must be a unicast address (first octet even)", mac_s)
    mtu = _int(t.get("mtu", 1500), f"{path}.mtu", 576, 9000)
    netns = t.get("netns")
    if netns is not None and not _NAME_RE.match(_str(netns, f"{path}.netns")):
        raise ConfigError(f"{path}.netns", "must be 1-64 characters of [A-Za-z0-9_.-]", netns)
    peers = _str_list(t.get("peer_address", []), f"{path}.peer_address")
    for i, cidr in enumerate(peers):
        try:
            ipaddress.ip_interface(cidr)
        except ValueError:
            raise ConfigError(f"{path}.peer_address[{i}]", "not an address/prefix", cidr) from None
    src = t.get("path")
    if kind == "pcap" and src is None:
        raise ConfigError(f"{path}.path", "a pcap interface needs the capture file to replay", None)
    source = None if src is None else _str(src, f"{path}.path")
    offload = _bool(t.get("offload", False), f"{path}.offload")
    return InterfaceConfig(kind, name, mac, mtu, netns, peers, source, offload)


def _vips(value: Any, path: str = "vips") -> tuple[IPAddress, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(path, "needs at least one [[vips]] entry with an address", value)
    out: list[IPAddress] = []
    for i, entry in enumerate(value):
        p = f"{path}[{i}]"
        if isinstance(entry, str):
            addr = _address(entry, p)
        else:
            e = _table(entry, p)
            _check_keys(e, {"address"}, p)
            addr = _address(e.get("address"), f"{p}.address")
        if addr in out:
            raise ConfigError(p, "duplicate virtual IP", str(addr))
        out.append(addr)
    return tuple(out)


def _virtual_servers(
    value: Any, vips: tuple[IPAddress, ...], path: str = "virtual_servers"
) -> tuple[VirtualServer, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(path, "must be an array of tables ([[virtual_servers]])", value)
    out: list[VirtualServer] = []
    seen: dict[tuple[IPAddress, int], str] = {}
    for i, entry in enumerate(value):
        p = f"{path}[{i}]"
        e = _table(entry, p)
        name = _str(e.get("name", f"vs{i}"), f"{p}.name")
        port = _int(e.get("port"), f"{p}.port", 1, 65535) if "port" in e else None
        if port is None:
            raise ConfigError(f"{p}.port", "is required", None)
        chain = _str_list(e.get("chain"), f"{p}.chain") if "chain" in e else ()
        if not chain:
            raise ConfigError(
                f"{p}.chain", 'needs at least one stage, e.g. ["echo"]', e.get("chain")
            )
        if "addresses" in e or "address" in e:
            key = "addresses" if "addresses" in e else "address"
            raw = _str_list(e[key], f"{p}.{key}")
            addrs = tuple(_address(a, f"{p}.{key}[{j}]") for j, a in enumerate(raw))
            for j, a in enumerate(addrs):
                if a not in vips:
                    raise ConfigError(f"{p}.{key}[{j}]", "is not one of the [[vips]]", str(a))
        else:
            addrs = vips
        for a in addrs:
            if (a, port) in seen:
                raise ConfigError(
                    f"{p}.port", f"{a}:{port} is already served by {seen[(a, port)]}", port
                )
            seen[(a, port)] = name
        options = {
            k: v for k, v in e.items() if k not in {"name", "port", "chain", "addresses", "address"}
        }
        out.append(VirtualServer(name, addrs, port, chain, options))
    return tuple(out)


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, "must be true or false", value)
    return value


def _capture(t: Mapping[str, Any], path: str = "capture") -> CaptureConfig:
    keys = {"pcap", "pcapng", "max_bytes", "files", "secrets", "comments", "resolution"}
    _check_keys(t, keys, path)
    pcap, pcapng = t.get("pcap"), t.get("pcapng")
    resolution = _str(t.get("resolution", "us"), f"{path}.resolution")
    if resolution not in ("us", "ns"):
        raise ConfigError(f"{path}.resolution", "must be us or ns", resolution)
    cfg = CaptureConfig(
        pcap=None if pcap is None else _str(pcap, f"{path}.pcap"),
        max_bytes=_int(t.get("max_bytes", 256 * 1024 * 1024), f"{path}.max_bytes", 4096, 1 << 40),
        pcapng=None if pcapng is None else _str(pcapng, f"{path}.pcapng"),
        files=_int(t.get("files", 1), f"{path}.files", 1, 1000),
        secrets=_bool(t.get("secrets", True), f"{path}.secrets"),
        comments=_bool(t.get("comments", True), f"{path}.comments"),
        resolution=resolution,
    )
    if cfg.pcap is not None and cfg.pcap == cfg.pcapng:
        raise ConfigError(f"{path}.pcapng", "must differ from capture.pcap", cfg.pcapng)
    return cfg


def _relative_to(base_dir: Path, path: str) -> str:
    """Paths in a config file are relative to the file, like certificate paths."""
    return str(base_dir / path) if not Path(path).is_absolute() else path


def _resolve_capture(cfg: CaptureConfig, base_dir: Path) -> CaptureConfig:
    return replace(
        cfg,
        pcap=None if cfg.pcap is None else _relative_to(base_dir, cfg.pcap),
        pcapng=None if cfg.pcapng is None else _relative_to(base_dir, cfg.pcapng),
    )


def _tcp(t: Mapping[str, Any]) -> Any:
    from pipeline.tcp.config import TcpConfig

    return TcpConfig.from_table(t, "tcp")


def _profiles(t: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
    if not t:
        return {}
    from plugins.tls.profile import parse_profile

    out = {}
    for name, table in t.items():
        p = f"profiles.{name}"
        if not _NAME_RE.match(name):
            raise ConfigError(p, "profile names are 1-64 characters of [A-Za-z0-9_.-]", name)
        out[name] = parse_profile(name, _table(table, p), base_dir, p)
    return out


def _control(t: Mapping[str, Any] | None, base_dir: Path) -> Any:
    if t is None:
        return None
    from nf.control import ControlConfig

    # Key file paths in [control] are relative to the config file, like every other path.
    return ControlConfig.from_table(t, "control", base_dir=base_dir)


TOP_KEYS = {
    "instance",
    "interface",
    "vips",
    "virtual_servers",
    "tcp",
    "profiles",
    "control",
    "capture",
}


def load_config_data(data: Mapping[str, Any], source: Path | None = None) -> Config:
    """Validate an already-parsed TOML document."""
    _check_keys(data, TOP_KEYS, "config")
    base_dir = source.parent if source is not None else Path(".")
    instance = _str(data.get("instance", "tapnf"), "instance")
    if not _NAME_RE.match(instance):
        raise ConfigError("instance", "must be 1-64 characters of [A-Za-z0-9_.-]", instance)
    interface = _interface(_table(data.get("interface", {}), "interface"))
    if interface.path is not None:
        interface = replace(interface, path=_relative_to(base_dir, interface.path))
    vips = _vips(data.get("vips"))
    virtual_servers = _virtual_servers(data.get("virtual_servers"), vips)
    profiles = _profiles(_table(data.get("profiles", {}), "profiles"), base_dir)
    for i, vs in enumerate(virtual_servers):
        for j, spec in enumerate(vs.chain):
            name, _, arg = spec.partition(":")
            if name == "tls" and arg not in profiles:
                raise ConfigError(
                    f"virtual_servers[{i}].chain[{j}]",
                    f"no profile named {arg!r} in [profiles]",
                    spec,
                )
    return Config(
        instance=instance,
        interface=interface,
        vips=vips,
        virtual_servers=virtual_servers,
        tcp=_tcp(_table(data.get("tcp", {}), "tcp")),
        profiles=profiles,
        control=_control(
            _table(data["control"], "control") if "control" in data else None, base_dir
        ),
        capture=_resolve_capture(_capture(_table(data.get("capture", {}), "capture")), base_dir),
        source=source,
        base_dir=base_dir,
    )


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"interface.netns=lab2"`` → (["interface", "netns"], "lab2"); the value is a TOML value
    (``cache_size=1``, ``session_ticket=true``, ``peer_address=["192.0.2.1/24"]``); a bare word
    that is not valid TOML is taken as a string."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError("--set", "expects KEY.PATH=VALUE", text)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a parsed document (``nf run --set``); tables are created as needed."""
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    ".".join(parts[: i + 1]), "is not a table; cannot --set inside it", child
                )
            node = child
        node[parts[-1]] = value
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read and validate a config file. Errors: ConfigError (file and TOML errors included)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(p), f"not valid TOML: {exc}") from None
    return load_config_data(apply_overrides(data, overrides or []), p.resolve())


__all__ = [
    "CaptureConfig",
    "Config",
    "InterfaceConfig",
    "VirtualServer",
    "load_config",
    "load_config_data",
]
