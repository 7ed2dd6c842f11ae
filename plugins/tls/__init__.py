"""tapnf plugins/tls: TLS 1.2 termination with stateful and stateless resumption."""

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
from plugins.tls.session import SessionState
from plugins.tls.store import MemorySessionStore, SessionStore
from plugins.tls.tickets import TicketKeyRing, TicketOpen

__all__ = [
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
