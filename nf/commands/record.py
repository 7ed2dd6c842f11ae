"""``nf record -o FILE``: a running NF's events to a msgpack stream file, flushed as it goes and
safe to stop with Ctrl-C (every record is written whole)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import zmq

from nf.collectors import (
    GapTracker,
    Receiver,
    RecordWriter,
    StopFlag,
    curve_client_keys,
    stop_on_signals,
    subscriber,
)
from nf.commands.events import add_collector_options


def cmd_record(args: argparse.Namespace) -> int:
    try:
        curve = curve_client_keys(args.server_key, args.client_key)
        writer = RecordWriter(args.output)
    except (ValueError, OSError) as exc:
        print(f"nf record: {exc}", file=sys.stderr)
        return 2
    ctx: zmq.Context[Any] = zmq.Context()
    sock = subscriber(ctx, args.endpoint, args.topic or [], curve)
    gaps = GapTracker()
    try:
        with stop_on_signals(StopFlag()) as stop:
            if not args.quiet:
                print(f"nf record: {args.endpoint} -> {args.output} (Ctrl-C to stop)", flush=True)
            rx = Receiver(sock, stop, count=args.count, duration=args.duration)
            for topic, event in rx:
                gaps.see(event)
                writer.write(topic, event)
    finally:
        writer.close()
        sock.close(linger=0)
        ctx.term()
    print(
        f"nf record: {writer.written} event(s) in {args.output}, {gaps.total_missed} missed"
        + (f", {rx.malformed} malformed skipped" if rx.malformed else ""),
        file=sys.stderr,
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("record", help="record a running NF's events to a msgpack file")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="output file")
    add_collector_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no start-up line")
    p.set_defaults(func=cmd_record)
