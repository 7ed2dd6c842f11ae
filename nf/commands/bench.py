"""``nf bench``."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path


def cmd_bench(args: argparse.Namespace) -> int:
    from nf.bench import SUBS, Plan, run
    from nf.bench.lab import LabError
    from nf.bench.runner import MIN_ROUNDS

    subs = tuple(args.subs) or SUBS
    unknown = [s for s in subs if s not in SUBS]
    if unknown:
        print(f"nf bench: unknown sub-benchmark {unknown[0]!r} (one of {', '.join(SUBS)})")
        return 2
    if args.rounds is not None and args.rounds < MIN_ROUNDS:
        print(f"nf bench: --rounds must be at least {MIN_ROUNDS}", file=sys.stderr)
        return 2
    plan = Plan.quick() if args.quick else Plan()
    if args.rounds is not None:
        plan = dataclasses.replace(plan, rounds=args.rounds)

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through the lab's clean-up (namespaces, nginx, floor)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        report = run(subs, plan, log)
    except LabError as exc:
        print(f"nf bench: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(report.table())
    print(f"(each ratio: tapnf / reference per round, {plan.rounds} rounds; noisy shared machine)")
    if args.json:
        report.write_json(Path(args.json))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark tapnf against nginx, the kernel and the crypto floor (ratios)",
        description="Measure tapnf and reference servers side by side in one run. "
        "Sub-benchmarks: handshake, tls, tcp, icmp, cache (default: all). handshake/tcp/icmp "
        "need root (a TAP lab in a fresh namespace); nginx is the reference when installed.",
    )
    p.add_argument("subs", nargs="*", metavar="SUB", help="handshake tls tcp icmp cache")
    p.add_argument("--quick", action="store_true", help="CI smoke sizes (seconds, not minutes)")
    p.add_argument("--rounds", type=int, help="rounds per figure (default 5, --quick 3; min 3)")
    p.add_argument("--json", metavar="FILE", help="write every sample and ratio as JSON")
    p.set_defaults(func=cmd_bench)
