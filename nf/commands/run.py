"""``nf run`` and ``nf check``."""

from __future__ import annotations

import argparse
import json
import sys

from nf.config import Config, load_config
from pipeline.errors import ConfigError


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.set)


def cmd_check(args: argparse.Namespace) -> int:
    try:
        cfg = _load(args)
    except ConfigError as exc:
        print(f"nf: config error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.config}: ok — instance {cfg.instance}, {len(cfg.vips)} VIP(s), "
        f"{len(cfg.virtual_servers)} virtual server(s), {len(cfg.profiles)} TLS profile(s)"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import zmq
    from pyroute2 import NetlinkError

    from nf.loop import Loop
    from nf.runtime import Runtime
    from pipeline.io.tap import TapError

    try:
        cfg = _load(args)
    except ConfigError as exc:
        print(f"nf: config error: {exc}", file=sys.stderr)
        return 2
    rt = Runtime(cfg)
    loop = Loop(rt)
    restore = loop.install_signal_handlers()
    try:
        try:
            rt.build()
            rt.attach()
        except ConfigError as exc:
            print(f"nf: config error: {exc}", file=sys.stderr)
            return 2
        except TapError as exc:
            print(f"nf: {exc}", file=sys.stderr)
            return 1
        except (OSError, zmq.ZMQError, NetlinkError) as exc:
            print(f"nf: cannot start: {exc}", file=sys.stderr)
            return 1
        iface = cfg.interface
        where = f" in netns {iface.netns}" if iface.netns else ""
        vips = ", ".join(str(v) for v in cfg.vips)
        print(f"nf: ready — {iface.kind} {iface.name}{where}, VIPs {vips}", flush=True)
        try:
            loop.run()
        except TapError as exc:
            print(f"nf: {exc}", file=sys.stderr)
            return 1
        print(f"nf: counters {json.dumps(rt.stats(), sort_keys=True)}", flush=True)
        print("nf: stopped", flush=True)
        return 0
    finally:
        # Release everything before the default handlers return: a second Ctrl-C or SIGTERM
        # during shutdown must not leave the namespace or a half-written capture behind.
        rt.close()
        loop.close()
        restore()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the network function described by a config file")
    p.add_argument("-c", "--config", required=True, help="TOML config file (e.g. configs/lab.toml)")
    _add_set(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", help="validate a config file without running it")
    p.add_argument("-c", "--config", required=True, help="TOML config file")
    _add_set(p)
    p.set_defaults(func=cmd_check)


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, value as TOML (e.g. --set interface.netns=lab2 "
        "--set profiles.clientssl.session_ticket=true); repeatable",
    )
