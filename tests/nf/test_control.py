"""The control ROUTER over ipc://: every op, every error path, both envelope styles."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nf.control import ControlServer, split_envelope
from nf.ops import build_ops
from tests.nf.conftest import Client, FakeRegistry, FakeView, b64


def test_status_and_reply_id(client: Client) -> None:
    reply = client.call("nf.status")
    assert reply["ok"] is True
    assert reply["result"]["version"] == "0.1.0"


def test_string_ids_are_echoed(client: Client) -> None:
    reply = client.raw([msgpack.packb({"id": "abc", "op": "vips.list"})])
    assert reply == {
        "id": "abc",
        "ok": True,
        "result": [{"address": "192.0.2.10", "version": 4, "virtual_servers": []}],
    }


def test_stats_merge_runtime_control_and_profile_counters(
    client: Client, server: ControlServer
) -> None:
    client.call("nf.nope")
    result = client.call("nf.stats")["result"]
    assert result["counters"]["drop.bad_checksum"] == 2
    assert result["profiles"]["clientssl"] == {"cache.entries": 3}
    assert result["gen"] == 0


def test_stats_include_server_counters_via_view(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    view = FakeView(FakeRegistry())
    ep = f"ipc://{tmp_path}/c.sock"
    srv = ControlServer(ctx, ep, build_ops(view))
    view.control = srv  # type: ignore[attr-defined]  # the runtime holds its server like this
    c = Client(ctx, srv, ep, zmq.REQ)
    try:
        c.call("no.such")
        counters = c.call("nf.stats")["result"]["counters"]
        assert counters["control.errors.unknown_op"] == 1
        assert counters["control.requests"] == 2
    finally:
        c.close()
        srv.close()


def test_ops_lists_every_op(client: Client) -> None:
    names = {o["op"] for o in client.call("nf.ops")["result"]}
    assert {
        "nf.status",
        "nf.stats",
        "tls.profile.get",
        "tls.profile.set",
        "tls.sessions.list",
        "tls.sessions.flush",
        "tls.tickets.list",
        "tls.tickets.rotate",
        "tls.tickets.import",
        "tls.tickets.export",
        "flows.list",
        "vips.list",
    } <= names


def test_profile_get_set_bumps_gen_and_announces(client: Client, view: FakeView) -> None:
    got = client.call("tls.profile.get", profile="clientssl")["result"]
    assert got["settings"] == {"cache_size": 8, "session_ticket": False}
    reply = client.call("tls.profile.set", profile="clientssl", session_ticket=True, cache_size=8)
    assert reply["result"] == {"profile": "clientssl", "changed": ["session_ticket"], "gen": 1}
    assert client.call("tls.profile.get", profile="clientssl")["result"]["settings"][
        "session_ticket"
    ]
    assert view.bus.of("nf.profile") == [
        {
            "profile": "clientssl",
            "changed": ["session_ticket"],
            "source": "control",
            "version": None,
        }
    ]


def test_profile_set_invalid_value_names_the_field(client: Client) -> None:
    reply = client.call("tls.profile.set", profile="clientssl", cache_size="big")
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid"
    assert reply["error"]["field"] == "profiles.clientssl.cache_size"


def test_profile_set_without_changes(client: Client) -> None:
    reply = client.call("tls.profile.set", profile="clientssl")
    assert reply["error"]["code"] == "bad_args"


def test_profile_required_when_several(client: Client) -> None:
    reply = client.call("tls.profile.get")
    assert reply["error"] == {
        "code": "bad_args",
        "message": "profile=NAME is required (one of: clientssl, other)",
        "field": "profile",
    }


def test_unknown_profile(client: Client) -> None:
    reply = client.call("tls.sessions.list", profile="nope")
    assert reply["error"]["code"] == "unknown_profile"
    assert reply["error"]["field"] == "profile"


def test_single_profile_is_the_default(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    ep = f"ipc://{tmp_path}/one.sock"
    srv = ControlServer(ctx, ep, build_ops(FakeView(FakeRegistry(("only",)))))
    c = Client(ctx, srv, ep, zmq.REQ)
    try:
        assert c.call("tls.profile.get")["result"]["profile"] == "only"
    finally:
        c.close()
        srv.close()


def test_no_tls_configured(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    ep = f"ipc://{tmp_path}/none.sock"
    srv = ControlServer(ctx, ep, build_ops(FakeView(None)))
    c = Client(ctx, srv, ep, zmq.REQ)
    try:
        assert c.call("tls.tickets.list")["error"]["code"] == "no_tls"
        assert c.call("nf.stats")["result"]["profiles"] == {}
    finally:
        c.close()
        srv.close()


def test_sessions_list_and_flush(client: Client) -> None:
    listed = client.call("tls.sessions.list", profile="clientssl", limit=2)["result"]
    assert listed["total"] == 3 and len(listed["items"]) == 2
    assert listed["items"][0] == {"id": "00" * 32, "age_s": 100.0}
    assert client.call("tls.sessions.flush", profile="clientssl")["result"]["flushed"] == 3
    assert client.call("tls.sessions.list", profile="clientssl")["result"]["total"] == 0


def test_limit_bounds(client: Client) -> None:
    reply = client.call("flows.list", limit=-1)
    assert reply["error"]["field"] == "args.limit"
    assert client.call("flows.list", limit=3)["result"]["total"] == 5


def test_tickets_list_rotate(client: Client) -> None:
    assert len(client.call("tls.tickets.list", profile="other")["result"]["keys"]) == 1
    rotated = client.call("tls.tickets.rotate", profile="other")["result"]
    keys = client.call("tls.tickets.list", profile="other")["result"]["keys"]
    assert keys[0] == {"name": rotated["current"], "state": "current"}
    assert keys[1]["state"] == "decrypt"
    assert rotated["gen"] == 1


def test_tickets_import_export_on_ipc(client: Client) -> None:
    key = bytes(range(80))
    reply = client.call("tls.tickets.import", profile="clientssl", keys=[b64(key)])
    assert reply["result"]["installed"] == [key[:16].hex()]
    exported = client.call("tls.tickets.export", profile="clientssl")["result"]["keys"]
    assert exported[0] == b64(key)


@pytest.mark.parametrize(
    ("keys", "field"),
    [
        ([], "args.keys"),
        ("notalist", "args.keys"),
        (["!!!"], "args.keys[0]"),
        ([b64(b"\x00" * 80), b64(b"short")], "args.keys[1]"),
        ([5], "args.keys[0]"),
    ],
)
def test_tickets_import_rejects_bad_keys(client: Client, keys: Any, field: str) -> None:
    reply = client.call("tls.tickets.import", profile="clientssl", keys=keys)
    assert reply["ok"] is False
    assert reply["error"]["field"] == field


def test_ticket_keys_refused_on_plain_tcp(ctx: zmq.Context[Any]) -> None:
    srv = ControlServer(ctx, "tcp://127.0.0.1:*", build_ops(FakeView(FakeRegistry())))
    ep = srv.socket.getsockopt_string(zmq.LAST_ENDPOINT)
    c = Client(ctx, srv, ep, zmq.REQ)
    try:
        assert not srv.is_secure
        for op in ("tls.tickets.export", "tls.tickets.import"):
            args = {"keys": [b64(b"\x00" * 80)]} if op.endswith("import") else {}
            reply = c.call(op, **args)
            assert reply["error"]["code"] == "insecure_endpoint", op
        assert c.call("tls.tickets.list")["ok"]  # the rest works on tcp://
    finally:
        c.close()
        srv.close()


def test_flows_and_vips(client: Client) -> None:
    flows = client.call("flows.list")["result"]
    assert flows["total"] == 5 and flows["items"][0] == {"conn": 0, "state": "ESTABLISHED"}
    assert client.call("vips.list")["result"][0]["address"] == "192.0.2.10"


# ---- error paths ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_obj", "code", "field"),
    [
        ([1, 2], "bad_request", None),
        ({"op": "nf.status"}, "bad_request", "id"),
        ({"id": 1.5, "op": "nf.status"}, "bad_request", "id"),
        ({"id": True, "op": "nf.status"}, "bad_request", "id"),
        ({"id": 1}, "bad_request", "op"),
        ({"id": 1, "op": 7}, "bad_request", "op"),
        ({"id": 1, "op": "nf.status", "args": [1]}, "bad_request", "args"),
        ({"id": 1, "op": "nf.status", "extra": 1}, "bad_request", "extra"),
        ({"id": 1, "op": "no.such"}, "unknown_op", "op"),
        ({"id": 1, "op": "nf.status", "args": {"x": 1}}, "bad_args", "args.x"),
        ({"id": 1, "op": "tls.profile.get", "args": {"profile": 3}}, "bad_args", "args.profile"),
        ({"id": 1, "op": "flows.list", "args": {"limit": True}}, "bad_args", "args.limit"),
        ({"id": 1, "op": "tls.tickets.import", "args": {}}, "bad_args", "args.keys"),
    ],
)
def test_bad_requests_get_error_replies(
    client: Client, server: ControlServer, request_obj: Any, code: str, field: str | None
) -> None:
    reply = client.raw([msgpack.packb(request_obj)])
    assert reply["ok"] is False
    assert reply["error"]["code"] == code
    assert reply["error"]["field"] == field
    assert server.counters[f"control.errors.{code}"] == 1
    assert client.call("nf.status")["ok"]  # and the server keeps serving


def test_request_id_is_echoed_on_errors(client: Client) -> None:
    reply = client.raw([msgpack.packb({"id": 42, "op": "no.such"})])
    assert reply["id"] == 42


def test_malformed_msgpack(client: Client) -> None:
    reply = client.raw([b"\xc1"])
    assert reply["id"] is None
    assert reply["error"]["code"] == "bad_request"
    assert "malformed msgpack" in reply["error"]["message"]


def test_multi_frame_body(ctx: zmq.Context[Any], server: ControlServer, ipc_endpoint: str) -> None:
    c = Client(ctx, server, ipc_endpoint, zmq.REQ)
    try:
        reply = c.raw([msgpack.packb({"id": 1, "op": "nf.status"}), b"more"])
        assert reply["error"]["message"] == "expected one msgpack frame, got 2"
    finally:
        c.close()


def test_oversize_request(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    ep = f"ipc://{tmp_path}/big.sock"
    srv = ControlServer(ctx, ep, build_ops(FakeView(FakeRegistry())), max_request_bytes=1024)
    c = Client(ctx, srv, ep, zmq.REQ)
    try:
        big = msgpack.packb({"id": 9, "op": "nf.status", "args": {"pad": "x" * 2000}})
        reply = c.raw([big])
        assert reply == {
            "id": None,
            "ok": False,
            "error": {
                "code": "too_large",
                "message": f"request is {len(big)} bytes, limit 1024",
                "field": None,
            },
        }
        assert srv.counters["control.errors.too_large"] == 1
    finally:
        c.close()
        srv.close()


def test_internal_error_in_an_op_is_a_reply(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    class Broken(FakeView):
        def flows(self) -> list[dict[str, Any]]:
            raise RuntimeError("boom")

    ep = f"ipc://{tmp_path}/broken.sock"
    srv = ControlServer(ctx, ep, build_ops(Broken()))
    c = Client(ctx, srv, ep, zmq.REQ)
    try:
        reply = c.call("flows.list")
        assert reply["error"]["code"] == "internal"
        assert "boom" in reply["error"]["message"]
    finally:
        c.close()
        srv.close()


def test_unencodable_result_is_an_internal_error(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    class Odd(FakeView):
        def vips(self) -> list[dict[str, Any]]:
            return [{"x": object()}]

    ep = f"ipc://{tmp_path}/odd.sock"
    srv = ControlServer(ctx, ep, build_ops(Odd()))
    c = Client(ctx, srv, ep, zmq.REQ)
    try:
        reply = c.call("vips.list")
        assert reply["ok"] is False and reply["error"]["code"] == "internal"
    finally:
        c.close()
        srv.close()


# ---- envelopes -----------------------------------------------------------------------------
@pytest.mark.parametrize("req_style", [False, True])
def test_dealer_envelopes(
    ctx: zmq.Context[Any], server: ControlServer, ipc_endpoint: str, req_style: bool
) -> None:
    c = Client(ctx, server, ipc_endpoint, zmq.DEALER)
    c.req_style = req_style
    try:
        for i in range(3):  # a DEALER may pipeline several requests
            c.send_raw([msgpack.packb({"id": i, "op": "nf.status"})])
        for _ in range(3):
            if not server.socket.poll(1000):
                break
            server.process(0.0)
        ids = sorted(c.reply()["id"] for _ in range(3))
        assert ids == [0, 1, 2]
    finally:
        c.close()


def test_process_is_bounded_and_never_blocks(
    ctx: zmq.Context[Any], server: ControlServer, ipc_endpoint: str
) -> None:
    assert server.process(0.0) == 0  # nothing queued: returns at once
    c = Client(ctx, server, ipc_endpoint, zmq.DEALER)
    try:
        for i in range(10):
            c.send_raw([msgpack.packb({"id": i, "op": "nf.status"})])
        handled = 0
        for _ in range(50):
            if handled >= 10 or not server.socket.poll(1000):
                break
            n = server.process(0.0, max_requests=3)
            assert n <= 3
            handled += n
        assert handled == 10
    finally:
        c.close()


def test_split_envelope() -> None:
    assert split_envelope([b"id", b"", b"body"]) == ([b"id", b""], [b"body"])
    assert split_envelope([b"id", b"body"]) == ([b"id"], [b"body"])
    assert split_envelope([b"p1", b"p2", b"", b"body"]) == ([b"p1", b"p2", b""], [b"body"])
    assert split_envelope([b"id"]) == ([b"id"], [])
    assert split_envelope([]) == (None, [])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=300))
def test_random_bytes_always_get_an_error_reply(ctx: zmq.Context[Any], body: bytes) -> None:
    """Whatever bytes arrive, handle_body returns an error reply (or, for the rare valid request,
    a reply) and never raises; over the socket the peer always gets exactly one reply."""
    srv = _shared_server(ctx)
    reply = srv.handle_body([body], 0.0)
    assert set(reply) == {"id", "ok", "error"} or reply["ok"] is True
    try:
        request = msgpack.unpackb(body)
        valid = (
            isinstance(request, dict)
            and set(request) == {"id", "op"}
            and request["op"] in srv.ops.ops
        )
    except Exception:
        valid = False
    if not valid:
        assert reply["ok"] is False
        assert isinstance(reply["error"]["code"], str) and reply["error"]["message"]
    msgpack.packb(reply)


_SERVERS: dict[int, ControlServer] = {}


def _shared_server(ctx: zmq.Context[Any]) -> ControlServer:
    srv = _SERVERS.get(id(ctx))
    if srv is None or srv.socket.closed:
        _SERVERS.clear()
        srv = _SERVERS[id(ctx)] = ControlServer(
            ctx, f"inproc://fuzz-{id(ctx)}", build_ops(FakeView(FakeRegistry()))
        )
    return srv


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(min_size=1, max_size=200))
def test_random_bytes_over_the_socket(ctx: zmq.Context[Any], body: bytes) -> None:
    srv = _shared_server(ctx)
    c = Client(ctx, srv, srv.endpoint, zmq.DEALER)
    try:
        c.send_raw([body])
        assert srv.socket.poll(1000)
        srv.process(0.0)
        reply = c.reply()
        assert reply["ok"] is False or isinstance(msgpack.unpackb(body), dict)
    finally:
        c.close()


def test_counters_can_be_shared(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    shared: collections.Counter[str] = collections.Counter()
    ep = f"ipc://{tmp_path}/s.sock"
    srv = ControlServer(ctx, ep, build_ops(FakeView()), counters=shared)
    c = Client(ctx, srv, ep, zmq.REQ)
    try:
        c.call("nf.status")
        assert shared["control.requests"] == 1 and shared["control.ok"] == 1
    finally:
        c.close()
        srv.close()
