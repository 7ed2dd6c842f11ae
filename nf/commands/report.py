"""``nf report FILE``: resumption, reasons, handshake cost and ticket/cache figures of a record."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nf.collectors import RecordFile
from nf.report import analyse, render


def cmd_report(args: argparse.Namespace) -> int:
    records = RecordFile(Path(args.file))
    try:
        report = analyse(records)
    except OSError as exc:
        print(f"nf report: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    report["file"] = {"torn_tail": records.torn_tail, "skipped": records.skipped}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
        if records.torn_tail:
            print("(the file ends inside a record: the tail was ignored)")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="summarise a file written by `nf record`")
    p.add_argument("file", help="record file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_report)
