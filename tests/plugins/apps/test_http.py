"""The http responder: facts page, /bytes/N, keep-alive and pipelining, bounded heads, 400s."""

from __future__ import annotations

import pytest

from pipeline.chain import FlowInfo, PluginEnv
from plugins.apps.http import MAX_BYTES, HttpPlugin, HttpStage


class Down:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.aborted: str | None = None

    def send(self, data: bytes) -> None:
        assert not self.closed
        self.data += data

    def close(self) -> None:
        self.closed = True

    def abort(self, reason: str) -> None:
        self.aborted = reason


def open_stage(facts: dict[str, object] | None = None) -> tuple[HttpStage, Down]:
    stage = HttpPlugin(None, PluginEnv()).new_stage(None)
    assert isinstance(stage, HttpStage)
    down = Down()
    flow = FlowInfo(conn=1, client=("192.0.2.1", 40000), vip=("192.0.2.10", 443), facts=facts or {})
    stage.on_open(flow, down, 0.0)
    return stage, down


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """Split a stream of Content-Length-framed responses (what a pipelining client reads)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(raw):
        head_end = raw.index(b"\r\n\r\n", pos)
        head = raw[pos:head_end].decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        length = next(
            int(h.split(":", 1)[1]) for h in head[1:] if h.lower().startswith("content-length")
        )
        body = raw[head_end + 4 : head_end + 4 + length]
        assert len(body) == length
        out.append((status, body))
        pos = head_end + 4 + length
    return out


GET = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"


def test_facts_page() -> None:
    stage, down = open_stage(
        {"tls_version": "1.2", "tls_resumed": True, "tls_method": "ticket", "tls_alpn": None}
    )
    stage.receive_data(GET % b"/", 0.0)
    [(status, body)] = responses(bytes(down.data))
    assert status == 200
    lines = body.decode().splitlines()
    assert "tls_version: 1.2" in lines
    assert "tls_resumed: true" in lines
    assert "tls_method: ticket" in lines
    assert "tls_alpn: -" in lines
    assert "client: 192.0.2.1:40000" in lines
    assert not down.closed


def test_plain_connection_says_no_tls() -> None:
    stage, down = open_stage()
    stage.receive_data(GET % b"/", 0.0)
    [(_, body)] = responses(bytes(down.data))
    assert body.startswith(b"tls: none\n")


def test_keep_alive_pipelined_and_bytes() -> None:
    stage, down = open_stage({"tls_version": "1.2"})
    stage.receive_data(GET % b"/bytes/10" + GET % b"/bytes/0" + GET % b"/", 0.0)
    got = responses(bytes(down.data))
    assert [s for s, _ in got] == [200, 200, 200]
    assert got[0][1] == b"x" * 10 and got[1][1] == b""
    stage.receive_data(GET % b"/bytes/100000", 0.0)
    assert responses(bytes(down.data))[-1][1] == b"x" * 100000
    assert stage.requests == 4 and not down.closed


@pytest.mark.parametrize(
    "target", [b"/bytes/-1", b"/bytes/abc", b"/bytes/" + str(MAX_BYTES + 1).encode()]
)
def test_bytes_bounds(target: bytes) -> None:
    stage, down = open_stage()
    stage.receive_data(GET % target, 0.0)
    [(status, _)] = responses(bytes(down.data))
    assert status == 400


def test_garbage_gets_400_and_close() -> None:
    stage, down = open_stage()
    stage.receive_data(b"\x16\x03\x01 not http at all\r\n\r\n", 0.0)
    assert down.data.startswith(b"HTTP/1.1 400 ")
    assert down.closed


def test_oversized_head_refused() -> None:
    stage, down = open_stage()
    stage.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000, 0.0)
    assert down.data.startswith(b"HTTP/1.1 431 ") and down.closed


def test_connection_close_and_eof() -> None:
    stage, down = open_stage()
    stage.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 0.0)
    assert responses(bytes(down.data))[0][0] == 200
    assert down.closed
    stage2, down2 = open_stage()
    stage2.receive_eof(0.0)
    assert down2.closed and not down2.data


def test_no_parser_until_the_first_bytes() -> None:
    """A connection that never sends a request (s_time, probes) costs no h11 parser; one that
    does gets the same answers as ever."""
    idle, down = open_stage()
    assert idle._h11 is None
    idle.receive_eof(0.0)
    assert idle._h11 is None and down.closed and not down.data
    stage, down = open_stage()
    stage.receive_data(b"GET /bytes/3 HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    assert stage._h11 is not None
    assert responses(bytes(down.data)) == [(200, b"xxx")]


def test_post_not_allowed_body_discarded() -> None:
    stage, down = open_stage()
    stage.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 0.0)
    [(status, _)] = responses(bytes(down.data))
    assert status == 405


def test_plugin_rules() -> None:
    with pytest.raises(ValueError):
        HttpPlugin("x", PluginEnv())
    with pytest.raises(ValueError):
        HttpPlugin(None, PluginEnv()).new_stage(HttpStage())


def test_ipv6_client_address_bracketed() -> None:
    stage = HttpPlugin(None, PluginEnv()).new_stage(None)
    down = Down()
    stage.on_open(
        FlowInfo(conn=1, client=("2001:db8::1", 5000), vip=("2001:db8::10", 443)), down, 0.0
    )
    stage.receive_data(GET % b"/", 0.0)
    assert b"client: [2001:db8::1]:5000\n" in down.data
