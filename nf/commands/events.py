"""``nf events``: live view of a running NF's events — a table, or JSON lines with ``--json``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import zmq

from nf.collectors import (
    TABLE_HEADER,
    GapTracker,
    Receiver,
    StopFlag,
    curve_client_keys,
    json_line,
    stop_on_signals,
    subscriber,
    table_row,
)
from nf.commands.ctl import add_endpoint_options
from nf.control import DEFAULT_EVENTS


def cmd_events(args: argparse.Namespace) -> int:
    try:
        curve = curve_client_keys(args.server_key, args.client_key)
    except (ValueError, OSError) as exc:
        print(f"nf events: {exc}", file=sys.stderr)
        return 2
    ctx: zmq.Context[Any] = zmq.Context()
    sock = subscriber(ctx, args.endpoint, args.topic or [], curve)
    gaps = GapTracker()
    try:
        with stop_on_signals(StopFlag()) as stop:
            rx = Receiver(sock, stop, count=args.count, duration=args.duration)
            if not args.json:
                print(TABLE_HEADER, flush=True)
            for topic, event in rx:
                missed = gaps.see(event)
                if args.json:
                    print(json_line(topic, event), flush=True)
                    continue
                if missed:
                    print(f"{'':8} {'':>7} {'(gap)':<14} {missed} event(s) missed", flush=True)
                print(table_row(topic, event), flush=True)
    finally:
        sock.close(linger=0)
        ctx.term()
    if not args.json:
        print(f"-- {rx.received} event(s), {gaps.total_missed} missed", file=sys.stderr)
    return 0


def add_collector_options(p: argparse.ArgumentParser) -> None:
    add_endpoint_options(p, "TAPNF_EVENTS", DEFAULT_EVENTS)
    p.add_argument(
        "--topic",
        action="append",
        metavar="PREFIX",
        help="only topics starting with PREFIX (repeatable), e.g. tls.handshake",
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--count", type=int, metavar="N", help="stop after N events")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("events", help="show a running NF's events live (table or JSON lines)")
    add_collector_options(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_events)
