"""``nf push``: publish a profile change, ticket keys or a key rotation to a fleet of NFs
(each subscribed with ``[control] subscribe``)."""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import zmq

from nf.control import endpoint_scheme, is_loopback_tcp
from nf.curve import CurveConfig
from nf.ops import OpError, decode_keys
from nf.push import Publisher, make_message
from pipeline.errors import ConfigError


def load_profile_changes(path: Path) -> dict[str, dict[str, Any]]:
    """``[profiles.NAME]`` tables (or top-level ``[NAME]`` tables) of keys to change."""
    data = tomllib.loads(path.read_text())
    table = data.get("profiles", data)
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{path}: no [profiles.NAME] tables")
    for name, changes in table.items():
        if not isinstance(changes, dict) or not changes:
            raise ValueError(f"{path}: [profiles.{name}] must be a non-empty table")
    return table


def load_key_file(path: Path) -> list[str]:
    """Base64 80-byte keys, one per line (nginx/HAProxy style); blank and # lines ignored."""
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    keys = [ln for ln in lines if ln and not ln.startswith("#")]
    try:
        decode_keys(keys)
    except OpError as err:
        where = err.field.replace("args.keys", "line ") if err.field else ""
        raise ValueError(f"{path}: {err.message} {where}".strip()) from None
    return keys


def build(args: argparse.Namespace) -> dict[str, Any]:
    version = args.version if args.version is not None else time.time_ns() // 1_000_000
    if args.profile:
        return make_message(version, "profile", profiles=load_profile_changes(Path(args.profile)))
    if args.keys:
        return make_message(
            version, "keys", keys=load_key_file(Path(args.keys)), profile=args.target
        )
    return make_message(version, "rotate", profile=args.target)


def cmd_push(args: argparse.Namespace) -> int:
    try:
        msg = build(args)
        curve = None
        if args.curve_secret_key or args.authorized:
            if not (args.curve_secret_key and args.authorized):
                raise ValueError("CURVE needs both --curve-secret-key and --authorized")
            curve = CurveConfig.load(args.curve_secret_key, args.authorized, "push")
    except (ValueError, OSError, tomllib.TOMLDecodeError, ConfigError) as exc:
        print(f"nf push: {exc}", file=sys.stderr)
        return 2
    if curve is None:
        if endpoint_scheme(args.bind) == "tcp" and not is_loopback_tcp(args.bind):
            print(
                "nf push: a non-loopback bind needs CURVE (--curve-secret-key, --authorized)",
                file=sys.stderr,
            )
            return 2
        if msg["kind"] == "keys":
            print(
                "nf push: ticket keys only travel over CURVE (--curve-secret-key, --authorized)",
                file=sys.stderr,
            )
            return 2
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        pub = Publisher(ctx, args.bind, curve)
    except zmq.ZMQError as exc:
        print(f"nf push: cannot bind {args.bind}: {exc}", file=sys.stderr)
        ctx.term()
        return 1
    try:
        sent = pub.run(
            msg, duration=args.duration, interval=args.interval, subscribers=args.subscribers
        )
        seen = pub.poll_subscriptions()
    finally:
        pub.close()
        ctx.term()
    print(
        f"nf push: {msg['kind']} version {msg['version']} sent {sent} time(s) on {pub.endpoint}, {seen} subscriber(s)"
    )
    if args.subscribers is not None and sent == 0:
        print(
            f"nf push: fewer than {args.subscribers} subscriber(s) within {args.duration:g}s",
            file=sys.stderr,
        )
        return 1
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "push",
        help="publish profile changes / ticket keys to a fleet of NFs",
        description="Publish one versioned change to every NF subscribed to ENDPOINT. The message "
        "is repeated every --interval seconds for --duration (NFs ignore repeats), or sent once "
        "--subscribers NFs are listening.",
    )
    p.add_argument("--bind", required=True, metavar="ENDPOINT", help="e.g. tcp://127.0.0.1:5557")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--profile", metavar="FILE", help="TOML with [profiles.NAME] keys to change")
    what.add_argument("--keys", metavar="FILE", help="base64 80-byte ticket keys, one per line")
    what.add_argument("--rotate", action="store_true", help="rotate the ticket keys")
    p.add_argument("--target", metavar="PROFILE", help="profile for --keys/--rotate (default: all)")
    p.add_argument("--version", type=int, help="message version (default: now in milliseconds)")
    p.add_argument("--duration", type=float, default=3.0, metavar="S", help="publish for S seconds")
    p.add_argument(
        "--interval", type=float, default=0.5, metavar="S", help="repeat every S seconds"
    )
    p.add_argument("--subscribers", type=int, metavar="N", help="send once N NFs are subscribed")
    p.add_argument("--curve-secret-key", metavar="FILE", help="our CURVE key pair (*.key_secret)")
    p.add_argument("--authorized", metavar="DIR", help="NF public keys allowed to subscribe")
    p.set_defaults(func=cmd_push)
