"""``TlsServerConnection``: the sans-IO TLS 1.2 server engine.

Bytes in (``receive_data``), bytes out (``data_to_send``), events out (``next_event``), commands
``send`` / ``close``. Every peer error is a :class:`~plugins.tls.alerts.TlsAlert` raised deep in the
record layer, codec or a handshake state and caught once here, in ``receive_data``: the fatal alert
is queued (and flushed by the next ``data_to_send``), an :class:`AlertSent` event and, when the
handshake had not completed, a :class:`HandshakeFailed` event with the precise reason are emitted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from pipeline.errors import ApiError, DecodeError
from plugins.tls import messages as m
from plugins.tls.alerts import AlertDescription, AlertLevel, TlsAlert, alert_name
from plugins.tls.certs import CertResolver
from plugins.tls.ciphers import GROUP_NAMES
from plugins.tls.handshake import (
    CCS,
    TRAFFIC,
    ExpectClientHello,
    ExpectClientKeyExchange,
    Handshake,
    Message,
    Resumption,
    State,
)
from plugins.tls.keylog import KeyLog
from plugins.tls.record import (
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    RecordLayer,
)

MAX_RENEGOTIATION_ATTEMPTS = 3
#: Bounds on records that carry nothing (as OpenSSL: empty records, warning alerts).
MAX_EMPTY_RECORDS = 32
MAX_WARNING_ALERTS = 16


# ---- events ----------------------------------------------------------------------------------
# Made per handshake or per record: plain slotted dataclasses, read-only by convention (a frozen
# dataclass costs about five times as much to build, one object.__setattr__ per field).
@dataclass(slots=True)
class HandshakeInfo:
    """What one ClientHello led to (the body of the ``tls.handshake`` event, minus timings)."""

    outcome: str  # full|resumed|failed
    reason: str
    offered: str
    method: str | None
    version: str | None
    cipher: str | None
    group: str | None
    sni: str | None
    alpn: str | None
    session_id: str
    client_session_id: str
    tickets_issued: int
    ticket_key: str | None
    ticket_age_s: float | None
    ems: bool
    history: str
    alert: str | None = None


@dataclass(slots=True)
class HandshakeComplete:
    info: HandshakeInfo


@dataclass(slots=True)
class HandshakeFailed:
    info: HandshakeInfo


@dataclass(slots=True)
class ApplicationData:
    data: bytes


@dataclass(slots=True)
class CloseNotify:
    """The client sent close_notify; the engine has answered with its own."""


@dataclass(slots=True)
class AlertReceived:
    level: str
    description: str


@dataclass(slots=True)
class AlertSent:
    level: str
    description: str
    reason: str | None


Event = (
    HandshakeComplete | HandshakeFailed | ApplicationData | CloseNotify | AlertReceived | AlertSent
)

_MSG_NAMES = {t.value: t.name for t in m.HandshakeType}
_EXPECT_CLIENT_HELLO = ExpectClientHello()  # holds no data: one instance serves every connection
_MSG_NAMES[CCS] = "change_cipher_spec"


class TlsServerConnection:
    """One TLS 1.2 server connection. ``runtime`` is the profile's resumption runtime."""

    # Flags and counters start at class level (one connection per TCP flow: fewer stores).
    failed = False
    closed_read = False  # close_notify or fatal alert received
    closed_write = False  # close_notify or fatal alert sent
    close_notify_received = False
    close_notify_sent = False
    renegotiation_attempts = 0
    empty_records = 0  # consecutive empty application data records
    warning_alerts = 0
    client_hello_seen = False

    def __init__(
        self,
        runtime: Resumption,
        resolver: CertResolver,
        rng: Callable[[int], bytes],
        keylog: KeyLog | None = None,
    ) -> None:
        self._record = record = RecordLayer()
        self._events: deque[Event] = deque()
        self._hs_buf = bytearray()
        self._hs = Handshake(
            runtime, resolver, rng, record, keylog.write_line if keylog is not None else None
        )
        self._state: State = _EXPECT_CLIENT_HELLO

    # ---- public API ----------------------------------------------------------------------
    @property
    def handshake_complete(self) -> bool:
        return self._hs.complete

    @property
    def session_id(self) -> bytes:
        return self._hs.session_id

    @property
    def runtime(self) -> Resumption:
        return self._hs.runtime

    def receive_data(self, data: bytes, wall_now: float = 0.0) -> None:
        if self.closed_read:  # also after any failure
            return
        self._hs.wall_now = wall_now
        try:
            record = self._record
            record.feed(data)
            while not self.closed_read:  # every failure closes the read side too
                rec = record.next_record()
                if rec is None:
                    break
                self._dispatch(*rec)
        except TlsAlert as alert:
            self._fail(alert)
        except DecodeError as exc:
            self._fail(TlsAlert("decode_error", str(exc)))
        except Exception as exc:  # a bug must not escape into the data path: internal_error
            self._fail(TlsAlert("internal_error", f"{type(exc).__name__}: {exc}"))
        finally:
            self._hs.flush()

    def data_to_send(self) -> bytes:
        self._hs.flush()
        return self._record.data_to_send()

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def send(self, data: bytes) -> None:
        if not self._hs.complete:
            raise ApiError("send() before the handshake completed")
        if self.closed_write:
            raise ApiError("send() after close")
        if data:
            self._record.write(CT_APPLICATION_DATA, data)

    def close(self) -> None:
        """Send close_notify (once); no more application data may be sent."""
        if self.closed_write:
            return
        self._hs.flush()
        self._send_alert(AlertLevel.warning, AlertDescription.close_notify, None)
        self.close_notify_sent = True
        self.closed_write = True

    # ---- record dispatch -----------------------------------------------------------------
    def _dispatch(self, ctype: int, payload: bytes) -> None:
        if ctype == CT_HANDSHAKE:
            self._drain_handshake(payload)
        elif ctype == CT_CHANGE_CIPHER_SPEC:
            if payload != b"\x01":
                raise TlsAlert("ccs_bad_payload", f"ChangeCipherSpec payload {payload.hex()}")
            if self._hs_buf:
                raise TlsAlert("ccs_mid_message", "ChangeCipherSpec inside a handshake message")
            if isinstance(self._state, ExpectClientHello | ExpectClientKeyExchange):
                raise TlsAlert("ccs_before_keys", f"ChangeCipherSpec in {self._state.NAME}")
            self._handle(Message(CCS, payload))
        elif ctype == CT_ALERT:
            self._receive_alerts(payload)
        elif ctype == CT_APPLICATION_DATA:
            if not self._hs.complete:
                raise TlsAlert("app_data_before_handshake")
            if payload:
                self.empty_records = 0
                self._events.append(ApplicationData(payload))
            else:
                self.empty_records += 1
                if self.empty_records > MAX_EMPTY_RECORDS:
                    raise TlsAlert("empty_record_flood", f"{self.empty_records} empty records")

    def _drain_handshake(self, payload: bytes) -> None:
        """Handle every complete handshake message of ``payload`` (after any partial one held
        from earlier records); keep the incomplete tail, at most one message's worth."""
        buf = self._hs_buf
        if buf:
            buf += payload
            data = bytes(buf)
            buf.clear()
        else:
            data = payload  # the usual case: the record holds whole messages, no copy
        pos, n = 0, len(data)
        while n - pos >= 4:
            length = (data[pos + 1] << 16) | (data[pos + 2] << 8) | data[pos + 3]
            if length > m.MAX_HANDSHAKE_MESSAGE:
                raise TlsAlert("handshake_too_large", f"handshake message of {length} bytes")
            end = pos + 4 + length
            if n < end:
                break
            raw = data if (pos == 0 and end == n) else data[pos:end]
            pos = end
            self._handle(Message(raw[0], raw[4:], raw))
            if self.closed_read:  # failed, or the peer closed
                return
        if pos < n:
            buf += data[pos:]

    def _handle(self, msg: Message) -> None:
        state = self._state
        if msg.kind not in state.ACCEPTS:
            name = _MSG_NAMES.get(msg.kind, f"type{msg.kind}")
            raise TlsAlert(f"unexpected_{name}_in_{state.NAME}")
        if state is TRAFFIC:
            self._refuse_renegotiation()
            return
        if state is _EXPECT_CLIENT_HELLO:
            self.client_hello_seen = True
        self._state = state.handle(self._hs, msg)
        if self._hs.complete:  # Traffic, the only state after completion, returned above
            self._events.append(HandshakeComplete(self._info(None)))

    def _refuse_renegotiation(self) -> None:
        # RFC 5746 §4.4 / RFC 5246 §7.2.2: decline with a no_renegotiation warning. The refused
        # ClientHello still gets its one handshake event (outcome failed); the session goes on.
        self.renegotiation_attempts += 1
        if self.renegotiation_attempts > MAX_RENEGOTIATION_ATTEMPTS:
            raise TlsAlert("unexpected_client_hello_in_traffic", "repeated renegotiation")
        self._send_alert(AlertLevel.warning, AlertDescription.no_renegotiation, "renegotiation")
        info = replace(
            self._info(("renegotiation_refused", AlertDescription.no_renegotiation.name)),
            history="ca",
        )
        self._events.append(HandshakeFailed(info))

    def _receive_alerts(self, payload: bytes) -> None:
        if len(payload) % 2:
            raise TlsAlert("alert_bad_length", f"alert record of {len(payload)} bytes")
        for i in range(0, len(payload), 2):
            level, desc = payload[i], payload[i + 1]
            name = alert_name(desc)
            if desc == AlertDescription.close_notify:
                self._events.append(AlertReceived("warning", name))
                self.close_notify_received = True
                self.closed_read = True
                if not self._hs.complete:
                    self._handshake_failed("closed_by_peer", None)
                self._events.append(CloseNotify())
                self.close()
                return
            level_name = "fatal" if level == AlertLevel.fatal else "warning"
            self._events.append(AlertReceived(level_name, name))
            if level != AlertLevel.fatal:
                self.warning_alerts += 1
                if self.warning_alerts > MAX_WARNING_ALERTS:
                    raise TlsAlert("warning_alert_flood", f"{self.warning_alerts} warning alerts")
                continue
            self.closed_read = True
            self.closed_write = True
            self.failed = True
            if not self._hs.complete and self.client_hello_seen:
                self._handshake_failed(f"alert_received_{name}", name)
            return

    # ---- output helpers ------------------------------------------------------------------
    def _send_alert(self, level: AlertLevel, desc: AlertDescription, reason: str | None) -> None:
        self._record.write(CT_ALERT, bytes([level, desc]))
        self._events.append(AlertSent(level.name, desc.name, reason))
        self._hs.history.append("a")

    def _fail(self, alert: TlsAlert) -> None:
        self._hs.out.clear()  # a half-built flight is not sent; the alert is
        if not self.closed_write:
            self._send_alert(AlertLevel.fatal, alert.description, alert.reason)
        self.failed = True
        self.closed_write = True
        self.closed_read = True
        if not self._hs.complete:
            self._handshake_failed(alert.reason, alert.description.name)

    def _handshake_failed(self, reason: str, alert: str | None) -> None:
        self._events.append(HandshakeFailed(self._info((reason, alert))))

    def _info(self, failure: tuple[str, str | None] | None) -> HandshakeInfo:
        hs = self._hs
        d = hs.decision
        suite = hs.suite
        if d is None:
            resumed, method, reason, ticket_key, age = False, None, "", None, None
        else:
            resumed = d.resumed is not None
            method = d.method if resumed else None
            reason, ticket_key, age = d.reason, d.ticket_key, d.ticket_age_s
        if failure is None:
            outcome, alert = ("resumed" if resumed else "full"), None
        else:
            outcome, (reason, alert) = "failed", failure
        # Positional, in field order (once per handshake: keywords cost ~0.5 µs more here).
        return HandshakeInfo(
            outcome,
            reason,
            hs.offered,
            method,
            "1.2" if suite is not None else None,  # version
            suite.name if suite is not None else None,  # cipher
            GROUP_NAMES.get(hs.group) if hs.group is not None and not resumed else None,
            hs.sni,
            hs.alpn,
            hs.session_id.hex(),
            hs.client_session_id.hex(),
            hs.tickets_issued,
            hs.ticket_key or ticket_key,
            age,  # ticket_age_s
            hs.ems,
            "".join(hs.history),
            alert,
        )

    def info_for_failure(self, reason: str) -> HandshakeInfo:
        """The handshake summary of a connection that ended mid-handshake (transport closed)."""
        return self._info((reason, None))

    # ---- end of connection ---------------------------------------------------------------
    def connection_lost(self, wall_now: float) -> None:
        """The transport is gone: tell the resumption runtime whether the session ended cleanly."""
        if self._hs.complete and self._hs.session_id:
            clean = (self.close_notify_received or self.close_notify_sent) and not self.failed
            self._hs.runtime.session_closed(self._hs.session_id, clean, wall_now)


__all__ = [
    "AlertReceived",
    "AlertSent",
    "ApplicationData",
    "CloseNotify",
    "Event",
    "HandshakeComplete",
    "HandshakeFailed",
    "HandshakeInfo",
    "TlsServerConnection",
]
