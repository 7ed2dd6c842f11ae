"""TLS alerts: the wire codes, and the one exception every layer of the engine raises.

Code deep inside the engine raises :class:`TlsAlert` with a *reason* (a precise, stable cause such
as ``bad_record_mac`` or ``unexpected_finished_in_expect_client_key_exchange``); the connection's
entry point catches it once, sends the fatal alert and reports a failure event. ``REASON_ALERTS``
is the single table from reason to alert description; tests parametrise over it.
"""

from __future__ import annotations

from enum import IntEnum


class AlertLevel(IntEnum):
    warning = 1
    fatal = 2


class AlertDescription(IntEnum):
    close_notify = 0
    unexpected_message = 10
    bad_record_mac = 20
    record_overflow = 22
    handshake_failure = 40
    bad_certificate = 42
    illegal_parameter = 47
    decode_error = 50
    decrypt_error = 51
    protocol_version = 70
    insufficient_security = 71
    internal_error = 80
    inappropriate_fallback = 86
    user_canceled = 90
    no_renegotiation = 100
    unsupported_extension = 110
    unrecognized_name = 112
    no_application_protocol = 120


A = AlertDescription

# reason -> alert sent. Reasons not listed here but starting with "unexpected_" (one per message
# and state, e.g. "unexpected_finished_in_expect_client_key_exchange") map to unexpected_message.
REASON_ALERTS: dict[str, AlertDescription] = {
    # record layer
    "record_bad_content_type": A.unexpected_message,
    "record_bad_version": A.protocol_version,
    "record_overflow": A.record_overflow,
    "record_empty_fragment": A.unexpected_message,
    "bad_record_mac": A.bad_record_mac,
    "sslv2_hello": A.protocol_version,
    "ccs_bad_payload": A.decode_error,
    "ccs_before_keys": A.unexpected_message,
    "ccs_mid_message": A.unexpected_message,
    "alert_bad_length": A.decode_error,
    "handshake_too_large": A.decode_error,
    "app_data_before_handshake": A.unexpected_message,
    "empty_record_flood": A.unexpected_message,
    "warning_alert_flood": A.unexpected_message,
    # handshake codec / negotiation
    "decode_error": A.decode_error,
    "duplicate_extension": A.illegal_parameter,
    "tls13_only": A.protocol_version,
    "version_too_old": A.protocol_version,
    "inappropriate_fallback": A.inappropriate_fallback,
    "no_null_compression": A.illegal_parameter,
    "no_uncompressed_point_format": A.illegal_parameter,
    "bad_renegotiation_info": A.handshake_failure,
    "no_shared_cipher": A.handshake_failure,
    "no_shared_group": A.handshake_failure,
    "no_usable_certificate": A.handshake_failure,
    "no_application_protocol": A.no_application_protocol,
    "unrecognized_name": A.unrecognized_name,
    "bad_key_share": A.illegal_parameter,
    "bad_finished": A.decrypt_error,
    "ems_required": A.handshake_failure,
    "internal_error": A.internal_error,
}


class TlsAlert(Exception):
    """A fatal condition: the connection sends ``description`` and fails with ``reason``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        self.description = alert_for(reason)
        super().__init__(f"{reason}: {detail}" if detail else reason)


def alert_for(reason: str) -> AlertDescription:
    if reason in REASON_ALERTS:
        return REASON_ALERTS[reason]
    if reason.startswith("unexpected_"):
        return A.unexpected_message
    return A.internal_error


def alert_name(code: int) -> str:
    try:
        return AlertDescription(code).name
    except ValueError:
        return f"unknown_{code}"


__all__ = [
    "REASON_ALERTS",
    "AlertDescription",
    "AlertLevel",
    "TlsAlert",
    "alert_for",
    "alert_name",
]
