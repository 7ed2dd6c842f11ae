"""``nf schema``: the event schema as markdown (docs/events.md is this output)."""

from __future__ import annotations

import argparse

from nf.schema_doc import render_schema


def cmd_schema(args: argparse.Namespace) -> int:
    print(render_schema(), end="")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("schema", help="print the event schema (markdown)")
    p.set_defaults(func=cmd_schema)
