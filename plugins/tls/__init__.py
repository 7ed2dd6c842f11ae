"""tapnf plugins/tls: TLS 1.2 termination with stateful and stateless resumption."""

from plugins.tls.alerts import AlertDescription, TlsAlert
from plugins.tls.certs import CertResolver
from plugins.tls.keylog import KeyLog
from plugins.tls.profile import (
    CIPHER_NAMES,
    CIPHER_SUITES,
    GROUPS,
    CertPair,
    TlsProfile,
    apply_changes,
    parse_profile,
)
from plugins.tls.registry import ProfileRegistry
from plugins.tls.resumption import Decision, HelloOffer, ProfileRuntime
from plugins.tls.server import (
    AlertReceived,
    AlertSent,
    ApplicationData,
    CloseNotify,
    HandshakeComplete,
    HandshakeFailed,
    HandshakeInfo,
    TlsServerConnection,
)
from plugins.tls.session import SessionState
from plugins.tls.stage import TlsPlugin
from plugins.tls.store import MemorySessionStore, SessionStore
from plugins.tls.tickets import TicketKeyRing, TicketOpen

__all__ = [
    "AlertDescription",
    "AlertReceived",
    "AlertSent",
    "ApplicationData",
    "CertResolver",
    "CloseNotify",
    "HandshakeComplete",
    "HandshakeFailed",
    "HandshakeInfo",
    "KeyLog",
    "TlsAlert",
    "TlsPlugin",
    "TlsServerConnection",
    "CIPHER_NAMES",
    "CIPHER_SUITES",
    "GROUPS",
    "CertPair",
    "Decision",
    "HelloOffer",
    "MemorySessionStore",
    "ProfileRegistry",
    "ProfileRuntime",
    "SessionState",
    "SessionStore",
    "TicketKeyRing",
    "TicketOpen",
    "TlsProfile",
    "apply_changes",
    "parse_profile",
]
