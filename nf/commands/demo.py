"""``nf demo``."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_demo(args: argparse.Namespace) -> int:
    from nf.demo import run_demo

    return run_demo(Path(args.out), quick=args.quick, netns=args.netns, tap=args.tap)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run the lab with real clients: full, session-ID and ticket handshakes, key rotation",
    )
    p.add_argument("--out", default="demo-out", help="where events, capture and key log go")
    p.add_argument("--quick", action="store_true", help="20 handshakes per mode instead of 200")
    p.add_argument("--netns", help="namespace to create (default: a fresh lab-demo-XXXXXX)")
    p.add_argument("--tap", help="TAP device to create (default: a fresh tapdemoXXXXXX)")
    p.set_defaults(func=cmd_demo)
