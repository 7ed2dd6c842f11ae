"""``nf ctl OP [key=value ...]``: one control request, its reply printed (a table or ``--json``).

Values are TOML scalars (``true``, ``1``, ``"x"``, ``[1, 2]``); anything that is not valid TOML is
taken as a plain string, so ``profile=clientssl`` works unquoted. Exit status: 0 on an ``ok``
reply, 1 on an error reply or when nothing answers within ``--timeout``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from typing import Any

import msgpack
import zmq

from nf.collectors import curve_client_keys, jsonable
from nf.control import DEFAULT_ENDPOINT
from nf.curve import make_client


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_args_list(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ValueError(f"arguments are key=value, got {pair!r}")
        out[key] = parse_value(value)
    return out


def request(
    endpoint: str,
    op: str,
    args: dict[str, Any],
    timeout: float,
    curve: tuple[bytes, bytes, bytes] | None = None,
    ctx: zmq.Context[Any] | None = None,
) -> dict[str, Any] | None:
    """Send one request over a DEALER and wait for its reply (None on timeout)."""
    own = ctx is None
    context: zmq.Context[Any] = ctx or zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    try:
        if curve is not None:
            make_client(sock, *curve)
        sock.connect(endpoint)
        req_id = int.from_bytes(os.urandom(4), "big")
        sock.send_multipart([b"", msgpack.packb({"id": req_id, "op": op, "args": args})])
        deadline_ms = int(timeout * 1000)
        while deadline_ms > 0:
            step = min(deadline_ms, 200)
            deadline_ms -= step
            if not sock.poll(step):
                continue
            frames = sock.recv_multipart()
            try:
                reply = msgpack.unpackb(frames[-1], raw=False, strict_map_key=False)
            except Exception:  # noqa: BLE001
                continue
            if isinstance(reply, dict) and reply.get("id") == req_id:
                return reply
        return None
    finally:
        sock.close(linger=0)
        if own:
            context.term()


def render(result: Any) -> str:
    """A readable rendering: maps as ``key: value`` lines, lists of maps as tables."""
    if isinstance(result, dict) and isinstance(result.get("items"), list):
        head = "  ".join(f"{k}: {v}" for k, v in result.items() if k != "items")
        return f"{head}\n{render(result['items'])}" if result["items"] else head
    if isinstance(result, list) and result and all(isinstance(r, dict) for r in result):
        cols: list[str] = []
        for row in result:
            cols += [k for k in row if k not in cols]
        cells = [[_cell(row.get(c)) for c in cols] for row in result]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
        lines += [
            "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells
        ]
        return "\n".join(lines)
    if isinstance(result, dict):
        lines = []
        for key, value in result.items():
            if isinstance(value, dict | list) and value and not _flat(value):
                lines.append(f"{key}:")
                lines += ["  " + line for line in render(value).splitlines()]
            else:
                lines.append(f"{key}: {_cell(value)}")
        return "\n".join(lines)
    return _cell(result)


def _flat(value: Any) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return isinstance(value, list) and all(not isinstance(v, dict | list) for v in items)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(jsonable(value), default=str)
    return str(value)


def cmd_ctl(args: argparse.Namespace) -> int:
    try:
        op_args = parse_args_list(args.args)
        curve = curve_client_keys(args.server_key, args.client_key)
    except (ValueError, OSError) as exc:
        print(f"nf ctl: {exc}", file=sys.stderr)
        return 2
    reply = request(args.endpoint, args.op, op_args, args.timeout, curve)
    if reply is None:
        print(
            f"nf ctl: no answer from {args.endpoint} within {args.timeout:g}s "
            "(is `nf run` running with this [control] endpoint?)",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(jsonable(reply), indent=2, default=str))
    elif reply.get("ok"):
        text = render(reply.get("result"))
        if text:
            print(text)
    if not reply.get("ok"):
        if not args.json:
            err = reply.get("error") or {}
            where = f" (field {err.get('field')})" if err.get("field") else ""
            print(f"nf ctl: {err.get('code')}: {err.get('message')}{where}", file=sys.stderr)
        return 1
    return 0


def add_endpoint_options(p: argparse.ArgumentParser, env: str, default: str) -> None:
    p.add_argument(
        "--endpoint",
        default=os.environ.get(env, default),
        help=f"ZeroMQ endpoint (default ${env} or {default})",
    )
    p.add_argument("--server-key", help="CURVE: the NF's public key file (server.key)")
    p.add_argument("--client-key", help="CURVE: our key pair file (client.key_secret)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ctl",
        help="send one control request to a running NF",
        description="Send one control request (e.g. `nf ctl tls.profile.set profile=clientssl "
        "session_ticket=true`). `nf ctl nf.ops` lists the ops.",
    )
    p.add_argument("op", help="op name, e.g. nf.status, tls.tickets.rotate")
    p.add_argument("args", nargs="*", metavar="KEY=VALUE", help="arguments (TOML scalar values)")
    add_endpoint_options(p, "TAPNF_CONTROL", DEFAULT_ENDPOINT)
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the reply")
    p.add_argument("--json", action="store_true", help="print the whole reply as JSON")
    p.set_defaults(func=cmd_ctl)
