"""``nf`` — the tapnf command line. Each sub-command lives in its own module exposing
``register(subparsers)``; the module sets ``func`` (taking the parsed args, returning an exit code)
via ``set_defaults``."""

from __future__ import annotations

import argparse
import importlib
import sys

from nf import __version__

# Modules that add sub-commands, in the order ``nf --help`` lists them.
COMMAND_MODULES = [
    "nf.commands.run",
    "nf.commands.demo",
    "nf.commands.ctl",
    "nf.commands.events",
    "nf.commands.record",
    "nf.commands.report",
    "nf.commands.keys",
    "nf.commands.schema",
    "nf.commands.push",
    "nf.commands.bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nf",
        description="tapnf: a userspace network function on a TAP device "
        "(host stack, TCP, TLS termination with stateful/stateless resumption, "
        "ZeroMQ control and events).",
    )
    parser.add_argument("--version", action="version", version=f"tapnf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return rc


if __name__ == "__main__":
    sys.exit(main())
