"""``http``: a small HTTP/1.1 responder (h11) that reports the connection's TLS facts.

``GET /`` (any path but ``/bytes/N``) answers ``text/plain`` lines such as ``tls_version: 1.2``,
``tls_resumed: true``, ``tls_method: ticket`` from ``flow.facts`` (published by the TLS stage),
so ``curl`` shows what the handshake did. ``GET /bytes/N`` answers N bytes (at most
``MAX_BYTES``, which stays under the TCP layer's hard send-buffer bound because a response is
produced in one go; ask several times, keep-alive or pipelined, for more) for bulk tests. Keep-alive and pipelining follow h11; request heads are bounded
(``MAX_HEAD``) and bodies are read and discarded up to ``MAX_BODY``; garbage gets a 400 and a
close. It is an application stage: last in its chain.
"""

from __future__ import annotations

from typing import Any

import h11

from pipeline.chain import BaseStage, Downstream, FlowInfo, PluginEnv, StreamStage

MAX_HEAD = 16 * 1024
MAX_BODY = 1 << 20
MAX_BYTES = 2 * 1024 * 1024
MAX_EVENTS_PER_CALL = 4096
CHUNK = 64 * 1024
FACT_ORDER = (
    "tls_version",
    "tls_cipher",
    "tls_resumed",
    "tls_method",
    "tls_session_id",
    "tls_sni",
    "tls_alpn",
    "tls_group",
    "tls_ems",
)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def facts_page(flow: FlowInfo | None) -> bytes:
    facts = dict(flow.facts) if flow is not None else {}
    lines = []
    if not any(k.startswith("tls_") for k in facts):
        lines.append("tls: none")
    for key in FACT_ORDER:
        if key in facts:
            lines.append(f"{key}: {_fmt(facts[key])}")
    for key in sorted(facts):
        if key not in FACT_ORDER:
            lines.append(f"{key}: {_fmt(facts[key])}")
    if flow is not None:
        host, port = flow.client
        lines.append(f"client: [{host}]:{port}" if ":" in host else f"client: {host}:{port}")
    return ("\n".join(lines) + "\n").encode()


class HttpStage(BaseStage):
    def __init__(self) -> None:
        super().__init__(None)
        # Made on the first bytes: a connection that never sends a request (openssl s_time,
        # health checks, TLS-only probes) costs no parser (~4 µs per connection).
        self._h11: h11.Connection | None = None
        self.request: h11.Request | None = None
        self.body_bytes = 0
        self.requests = 0
        self.closed = False

    def on_open(self, flow: FlowInfo, down: Downstream, now: float) -> None:
        self.flow, self.down = flow, down

    @property
    def h11(self) -> h11.Connection:
        conn = self._h11
        if conn is None:
            conn = self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        return conn

    def receive_data(self, data: bytes, now: float) -> None:
        if self.closed:
            return
        try:
            self.h11.receive_data(data)
        except h11.RemoteProtocolError:
            self._fail(400)
            return
        self._drive()

    def receive_eof(self, now: float) -> None:
        if self.closed:
            return
        if self._h11 is None:  # closed before sending anything: nothing to answer
            self._close()
            return
        try:
            self.h11.receive_data(b"")
        except h11.RemoteProtocolError:
            pass
        self._drive()
        self._close()

    # ---- internals -----------------------------------------------------------------------
    def _drive(self) -> None:
        for _ in range(MAX_EVENTS_PER_CALL):
            if self.closed:
                return
            try:
                ev = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._fail(exc.error_status_hint)
                return
            if ev is h11.NEED_DATA or ev is h11.PAUSED:
                return
            if isinstance(ev, h11.Request):
                self.request, self.body_bytes = ev, 0
            elif isinstance(ev, h11.Data):
                self.body_bytes += len(ev.data)
                if self.body_bytes > MAX_BODY:
                    self._fail(413)
                    return
            elif isinstance(ev, h11.EndOfMessage):
                self._respond()
            elif isinstance(ev, h11.ConnectionClosed):
                self._close()
                return

    def _respond(self) -> None:
        req = self.request
        assert req is not None
        self.requests += 1
        target = req.target.decode("latin-1").split("?", 1)[0]
        status, body = 200, b""
        if req.method not in (b"GET", b"HEAD"):
            status, body = 405, b"method not allowed\n"
        elif target.startswith("/bytes/"):
            n_text = target[len("/bytes/") :]
            if not n_text.isdigit() or int(n_text) > MAX_BYTES:
                status, body = 400, f"N must be an integer 0..{MAX_BYTES}\n".encode()
            else:
                body = b"x" * int(n_text)
        else:
            body = facts_page(self.flow)
        headers = [
            ("content-type", "text/plain"),
            ("content-length", str(len(body))),
            ("server", "tapnf"),
        ]
        self._send(h11.Response(status_code=status, headers=headers))
        if req.method != b"HEAD":
            for off in range(0, len(body), CHUNK):
                self._send(h11.Data(data=body[off : off + CHUNK]))
        self._send(h11.EndOfMessage())
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        elif self.h11.our_state is h11.MUST_CLOSE:
            self._close()

    def _send(self, event: Any) -> None:
        data = self.h11.send(event)
        if data and self.down is not None:
            self.down.send(data)

    def _fail(self, status: int) -> None:
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = f"{status} bad request\n".encode()
            try:
                self._send(
                    h11.Response(
                        status_code=status,
                        headers=[
                            ("content-type", "text/plain"),
                            ("content-length", str(len(body))),
                            ("connection", "close"),
                        ],
                    )
                )
                self._send(h11.Data(data=body))
                self._send(h11.EndOfMessage())
            except h11.LocalProtocolError:
                pass
        self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.down is not None:
                self.down.close()


class HttpPlugin:
    """The HTTP/1.1 facts responder; takes no argument."""

    def __init__(self, arg: str | None, env: PluginEnv) -> None:
        if arg:
            raise ValueError(f"http takes no argument (got {arg!r})")

    def new_stage(self, next_stage: StreamStage | None) -> StreamStage:
        if next_stage is not None:
            raise ValueError("http is an application stage and must be last in its chain")
        return HttpStage()


__all__ = ["HttpPlugin", "HttpStage", "facts_page"]
