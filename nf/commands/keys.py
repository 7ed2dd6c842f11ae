"""``nf keys curve --out DIR``: CurveZMQ key pairs for the control/event endpoints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nf.curve import generate


def cmd_keys_curve(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        files = generate(out, args.client)
    except OSError as exc:
        print(f"nf keys: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"server key pair:  {files['server_secret']}  (public: {files['server_public']})")
    print(f"client key pair:  {files['client_secret']}  (public: {files['client_public']})")
    print(f"authorised keys:  {files['authorized']}/")
    print("config:")
    print("  [control]")
    print(f'  curve_secret_key = "{files["server_secret"]}"')
    print(f'  curve_authorized_keys = "{files["authorized"]}"')
    print(
        f"client: nf ctl --server-key {files['server_public']} "
        f"--client-key {files['client_secret']} --endpoint tcp://HOST:5555 nf.status"
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("keys", help="generate keys (CurveZMQ)")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    c = kinds.add_parser("curve", help="server + client CurveZMQ key pairs and an authorised dir")
    c.add_argument("--out", required=True, metavar="DIR", help="directory to write the keys to")
    c.add_argument("--client", default="client", metavar="NAME", help="client key name")
    c.set_defaults(func=cmd_keys_curve)
