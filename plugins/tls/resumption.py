"""The resumption decision (one reason code per ClientHello) and the per-profile runtime.

``ProfileRuntime`` is shared by every connection of every virtual server using one profile. The
engine calls, per handshake::

    decision = runtime.decide(offer, wall_now, rng)        # at ClientHello
    runtime.finish_full(decision, state, wall_now)         # full handshake finished (caches it)
    runtime.new_ticket(state, wall_now)                    # when it sends NewSessionTicket
    runtime.session_closed(session_id, clean, wall_now)    # connection ended (strict_resume)

Rules (DESIGN.md, TLS 1.2):

1. A non-empty ticket wins when tickets are on and it opens, is not expired and still fits the
   hello (version, cipher suite offered and enabled, SNI, EMS). The ServerHello then echoes the
   client's session ID byte for byte, with the client's length (RFC 5077 §3.4; Ticketbleed was a
   server that echoed 32 bytes whatever the client sent). A ticket opened with a non-current key
   is re-issued (``reissue_ticket``).
2. Otherwise a non-empty session ID resumes from the cache when the cache is on, the entry is
   there and not expired, and the same checks hold. RFC 7627 §5.3: if the original session used
   EMS and the new hello does not offer it, the server must not resume (abort the abbreviated
   handshake: we fall back to a full one); if the original did not use EMS and the new hello
   offers it, a full handshake is required too. Both are ``ems_mismatch``.
3. Anything else is a full handshake. When tickets are on and the client sent the
   session_ticket extension it is stateless: empty session ID, a ticket is issued, nothing is
   stored. Otherwise, with the cache on, a fresh 32-byte session ID is stored at Finished.

Exactly one reason per decision: ``resumed``, or the ticket's failure reason when a ticket was
offered (``tickets_disabled`` when tickets are off), else the session ID's (``cache_disabled``,
``cache_miss``, ``cache_expired``, ``cache_evicted``, ``strict_resume``, ``*_mismatch``), else
``nothing_offered``. ``strict_resume``: a session whose connection ended without close_notify is
removed from the cache (as OpenSSL does) and remembered, so a later attempt reports
``strict_resume``; tickets cannot be revoked this way (the server keeps no per-ticket state).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, DecodeError
from pipeline.events import EventBus, NullBus, wants
from plugins.tls.profile import CIPHER_NAMES, TlsProfile, apply_changes, describe
from plugins.tls.session import SessionState
from plugins.tls.store import ExplainsMisses, MemorySessionStore, SessionStore
from plugins.tls.tickets import TicketKeyRing, load_key_file

Rng = Callable[[int], bytes]
SESSION_ID_LEN = 32
#: Bound on per-key-name counters kept in stats (older names are folded into "other").
MAX_NAMED_COUNTERS = 256
#: Bound on the rows ``sessions_list`` returns.
MAX_LISTED = 1000
#: Store entries looked at per ``handle_timer`` call for expiry.
EXPIRE_BUDGET = 4096

_GONE_REASON = {"expired": "cache_expired", "evicted": "cache_evicted", "strict": "strict_resume"}


@dataclass(slots=True)
class HelloOffer:
    """What a ClientHello offers for resumption."""

    session_id: bytes  # legacy_session_id (0..32 bytes)
    ticket: bytes | None  # None: no session_ticket extension; b"": empty extension
    cipher_suites: tuple[int, ...]
    sni: str | None
    ems: bool  # client offered extended_master_secret
    client_version: int = 0x0303  # the version this handshake negotiates


@dataclass(slots=True)
class Decision:
    """The verdict for one ClientHello; see the module docstring."""

    offered: str  # none|session_id|ticket
    resumed: SessionState | None
    method: str | None  # session_id|ticket|None
    reason: str
    server_session_id: bytes
    send_ticket_ext: bool
    ticket_key: str | None = None
    ticket_age_s: float | None = None
    reissue_ticket: bool = False


class ProfileRuntime:
    """One profile's live state: the session cache, the ticket key ring, counters."""

    def __init__(
        self,
        profile: TlsProfile,
        *,
        bus: EventBus | None = None,
        rng: Rng,
        wall_clock: Callable[[], float],
        base_dir: Path | None = None,
        store: SessionStore | None = None,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.profile = profile
        self.bus: EventBus = bus if bus is not None else NullBus()
        self.rng = rng
        self.wall_clock = wall_clock
        self.base_dir = base_dir if base_dir is not None else Path(".")
        self.on_change = on_change
        now = wall_clock()
        self.store: SessionStore = (
            store
            if store is not None
            else MemorySessionStore(profile.cache_size, profile.cache_timeout, self._cache_event)
        )
        self.ring: TicketKeyRing | None = None
        if profile.session_ticket or profile.ticket_key_file:
            self._make_ring(profile, now)
        self.decisions: dict[str, int] = {}
        self.offered: dict[str, int] = {}
        self.tickets_issued: dict[str, int] = {}
        self.tickets_accepted: dict[str, int] = {}
        self.strict_invalidations = 0

    # ---- the decision --------------------------------------------------------------------
    def decide(self, offer: HelloOffer, wall_now: float, rng: Rng) -> Decision:
        """Decide how to answer one ClientHello. Never raises on peer input."""
        p = self.profile
        offered = "ticket" if offer.ticket else ("session_id" if offer.session_id else "none")
        stateless = p.session_ticket and offer.ticket is not None
        reason: str | None = None
        key_name: str | None = None
        age: float | None = None
        if offer.ticket:
            if not p.session_ticket:
                reason = "tickets_disabled"
            else:
                ring = self._ring(wall_now)
                res = ring.open(offer.ticket, wall_now, p.ticket_lifetime())
                key_name, age = res.key_name, res.age_s
                if res.status == "ok" and res.state is not None:
                    reason = self._mismatch(res.state, offer)
                    if reason is None:
                        assert key_name is not None
                        _count(self.tickets_accepted, key_name)
                        return self._done(
                            Decision(
                                offered,
                                res.state,
                                "ticket",
                                "resumed",
                                bytes(offer.session_id),
                                not res.current,  # send_ticket_ext
                                key_name,  # ticket_key
                                age,  # ticket_age_s
                                not res.current,  # reissue_ticket
                            )
                        )
                else:
                    reason = res.status
        if offer.session_id:
            state, why = self._from_cache(offer, wall_now)
            if state is not None:
                return self._done(
                    Decision(
                        offered,
                        state,
                        "session_id",
                        "resumed",
                        bytes(offer.session_id),
                        stateless,  # send_ticket_ext
                        key_name,  # ticket_key
                        age,  # ticket_age_s
                    )
                )
            reason = reason or why
        if stateless:
            sid = b""
        elif self.store.can_cache():
            sid = rng(SESSION_ID_LEN)
        else:
            sid = b""
        return self._done(
            Decision(
                offered,
                None,
                None,
                reason or "nothing_offered",
                sid,
                stateless,  # send_ticket_ext
                key_name,  # ticket_key
                age,  # ticket_age_s
            )
        )

    def _from_cache(self, offer: HelloOffer, now: float) -> tuple[SessionState | None, str]:
        if not self.store.can_cache():
            return None, "cache_disabled"
        data = self.store.get(bytes(offer.session_id), now)
        if data is None:
            gone = None
            if isinstance(self.store, ExplainsMisses):
                gone = self.store.forgotten(bytes(offer.session_id))
            return None, _GONE_REASON.get(gone or "", "cache_miss")
        try:
            state = SessionState.decode(data)
        except DecodeError:
            return None, "cache_miss"
        why = self._mismatch(state, offer)
        if why is not None:
            return None, why
        return state, "resumed"

    def _mismatch(self, state: SessionState, offer: HelloOffer) -> str | None:
        p = self.profile
        if state.version != offer.client_version or state.version not in p.version_codes:
            return "version_mismatch"
        if (
            state.cipher_suite not in offer.cipher_suites
            or state.cipher_suite not in p.cipher_code_set
        ):
            return "cipher_mismatch"
        if state.sni != offer.sni and _norm(state.sni) != _norm(offer.sni):
            return "sni_mismatch"
        if state.ems != offer.ems:  # RFC 7627 §5.3, both directions
            return "ems_mismatch"
        return None

    def _done(self, d: Decision) -> Decision:
        _count(self.decisions, d.reason, None)
        _count(self.offered, d.offered, None)
        return d

    # ---- after the handshake -------------------------------------------------------------
    def finish_full(self, decision: Decision, state: SessionState, wall_now: float) -> None:
        """A full handshake finished: cache the session if it got a session ID."""
        if decision.server_session_id and decision.resumed is None and self.store.can_cache():
            self.store.put(decision.server_session_id, state.encode(), wall_now)

    def new_ticket(self, state: SessionState, wall_now: float) -> tuple[bytes, int, str]:
        """(ticket, lifetime hint seconds, key name hex) for a NewSessionTicket.

        Works even if tickets were turned off after this handshake's ``decide``: a handshake in
        flight finishes with the decision it got."""
        ticket, name = self._ring(wall_now).seal(state, wall_now)
        _count(self.tickets_issued, name)
        return ticket, self.profile.ticket_lifetime(), name

    def session_closed(self, session_id: bytes, clean: bool, wall_now: float) -> None:
        """The connection of ``session_id`` ended; without close_notify + strict_resume it
        can no longer be resumed."""
        if clean or not session_id or not self.profile.strict_resume:
            return
        store = self.store
        if isinstance(store, MemorySessionStore):
            done = store.invalidate(bytes(session_id), "strict")
        else:
            done = store.take(bytes(session_id), wall_now) is not None
        if done:
            self.strict_invalidations += 1

    # ---- timers --------------------------------------------------------------------------
    def handle_timer(self, wall_now: float) -> None:
        """Expire cached sessions; rotate ticket keys (while tickets are on); erase old keys."""
        if isinstance(self.store, MemorySessionStore):
            self.store.expire(wall_now, EXPIRE_BUDGET)
        if self.ring is not None:
            self.ring.handle_timer(wall_now, rotate=self.profile.session_ticket)

    def poll_at(self) -> float | None:
        # Asked once per loop iteration (per profile): no temporary list.
        first: float | None = None
        store = self.store
        if isinstance(store, MemorySessionStore):
            first = store.next_expiry()
        if self.ring is not None:
            t = self.ring.poll_at(rotate=self.profile.session_ticket)
            if t is not None and (first is None or t < first):
                first = t
        return first

    # ---- control channel -----------------------------------------------------------------
    def get(self) -> dict[str, Any]:
        return describe(self.profile)

    def set(
        self,
        changes: Mapping[str, Any],
        *,
        source: str = "control",
        version: int | None = None,
        announce: bool = True,
    ) -> list[str]:
        """Validate and apply ``changes`` atomically; returns the changed keys.

        Nothing changes unless every key is valid. New handshakes see the new profile at once;
        a handshake already past ``decide`` keeps the decision it got. Emits ``nf.profile``
        (unless ``announce`` is False, for a caller that announces itself) and bumps ``gen``.
        """
        path = f"profiles.{self.profile.name}"
        new, changed = apply_changes(self.profile, changes, self.base_dir, path)
        keys: list[bytes] | None = None
        if "ticket_key_file" in changed and new.ticket_key_file:
            try:
                keys = load_key_file(new.ticket_key_file)
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    path + ".ticket_key_file", str(exc), new.ticket_key_file
                ) from None
        if not changed:
            return []
        now = self.wall_clock()
        old, self.profile = self.profile, new
        if isinstance(self.store, MemorySessionStore):
            self.store.timeout = new.cache_timeout
            if new.cache_size != old.cache_size:
                self.store.set_capacity(new.cache_size, now)
        if self.ring is not None:
            self.ring.rotation = new.ticket_key_rotation
            self.ring.lifetime = new.ticket_lifetime()
            if keys is not None:
                self.ring.import_keys(keys, now)
            elif "ticket_key_file" in changed:  # file removed: back to generated keys
                self.ring.rotate(now)
        elif new.session_ticket or keys is not None:
            self._make_ring(new, now)
        if self.ring is not None and new.session_ticket:
            self.ring.handle_timer(now)  # a shorter rotation may be due already
        if self.on_change is not None:  # first: the announcement carries the new generation
            self.on_change("set")
        if announce:
            self.bus.emit(
                "nf.profile",
                {"profile": new.name, "changed": changed, "source": source, "version": version},
            )
        return changed

    def sessions_list(self, wall_now: float, limit: int = MAX_LISTED) -> list[dict[str, Any]]:
        """Cached sessions (least recently used first), never secrets."""
        out: list[dict[str, Any]] = []
        if not isinstance(self.store, MemorySessionStore):
            return out
        for sid, age, data in self.store.items(wall_now):
            if len(out) >= min(limit, MAX_LISTED):
                break
            try:
                st = SessionState.decode(data)
            except DecodeError:
                continue
            out.append(
                {
                    "session_id": sid.hex(),
                    "age_s": age,
                    "cipher": CIPHER_NAMES.get(st.cipher_suite, hex(st.cipher_suite)),
                    "sni": st.sni,
                    "alpn": st.alpn,
                    "ems": st.ems,
                }
            )
        return out

    def sessions_flush(self) -> int:
        if not isinstance(self.store, MemorySessionStore):
            return 0
        now = self.wall_clock()
        for sid, age, _ in list(self.store.items(now)):
            self._cache_event("flushed", sid, age)
        return self.store.flush()

    def tickets_list(self) -> list[dict[str, Any]]:
        if self.ring is None:
            return []
        return self.ring.describe(self.wall_clock())

    def tickets_rotate(self, wall_now: float) -> str:
        """Install a new current key now; returns its name (hex)."""
        if self.ring is None:
            self._make_ring(self.profile, wall_now)  # a new ring starts with a fresh key
            assert self.ring is not None
            name = self.ring.current.name.hex()
        else:
            name = self.ring.rotate(wall_now)
        if self.on_change is not None:
            self.on_change("rotate")
        return name

    def tickets_import(self, keys: list[bytes], wall_now: float) -> list[str]:
        if not isinstance(keys, list) or not all(isinstance(k, bytes) for k in keys):
            raise ConfigError("keys", "must be a list of 80-byte binary keys", None)
        try:
            if self.ring is None:
                self._make_ring(self.profile, wall_now, keys)
                assert self.ring is not None
                names = [k[:16].hex() for k in keys]
            else:
                names = self.ring.import_keys(keys, wall_now)
        except ValueError as exc:
            raise ConfigError("keys", str(exc), None) from None  # never echo key bytes
        if self.on_change is not None:
            self.on_change("import")
        return names

    def tickets_export(self) -> list[bytes]:
        return self.ring.export() if self.ring is not None else []

    def stats(self) -> dict[str, Any]:
        s = self.store
        cache: dict[str, Any] = {"enabled": s.can_cache()}
        if isinstance(s, MemorySessionStore):
            cache.update(
                entries=len(s),
                capacity=s.capacity,
                hits=s.hits,
                misses=s.misses,
                evictions=s.evictions,
                expirations=s.expirations,
                refused=s.refused,
            )
        cache["strict_invalidations"] = self.strict_invalidations
        tickets: dict[str, Any] = {
            "enabled": self.profile.session_ticket,
            "issued": dict(self.tickets_issued),
            "accepted": dict(self.tickets_accepted),
            "keys": len(self.ring.keys) if self.ring else 0,
        }
        if self.ring is not None:
            tickets.update(
                invalid=self.ring.invalid,
                unknown_key=self.ring.unknown,
                expired=self.ring.expired,
                forced_erasures=self.ring.forced_erasures,
            )
        return {
            "cache": cache,
            "tickets": tickets,
            "decisions": dict(self.decisions),
            "offered": dict(self.offered),
        }

    # ---- internals -----------------------------------------------------------------------
    def _make_ring(self, profile: TlsProfile, now: float, keys: list[bytes] | None = None) -> None:
        if keys is None and profile.ticket_key_file:
            try:
                keys = load_key_file(profile.ticket_key_file)
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"profiles.{profile.name}.ticket_key_file", str(exc), profile.ticket_key_file
                ) from None
        self.ring = TicketKeyRing(
            self.rng,
            now,
            rotation=profile.ticket_key_rotation,
            lifetime=profile.ticket_lifetime(),
            on_event=self._ticket_event,
            keys=keys,
        )

    def _ring(self, now: float) -> TicketKeyRing:
        if self.ring is None:
            self._make_ring(self.profile, now)
        assert self.ring is not None
        return self.ring

    def _cache_event(self, action: str, sid: bytes, age: float) -> None:
        if not wants(self.bus, "tls.cache"):  # a full cache evicts on every put: no collector,
            return  # no event built
        self.bus.emit(
            "tls.cache",
            {"profile": self.profile.name, "action": action, "session_id": sid.hex(), "age_s": age},
        )

    def _ticket_event(self, action: str, name: str) -> None:
        self.bus.emit("tls.tickets", {"profile": self.profile.name, "action": action, "key": name})


def _norm(name: str | None) -> str | None:
    return name.lower().rstrip(".") if name else None


def _count(table: dict[str, int], key: str, bound: int | None = MAX_NAMED_COUNTERS) -> None:
    if key in table or bound is None or len(table) < bound:
        table[key] = table.get(key, 0) + 1
    else:
        table["other"] = table.get("other", 0) + 1


__all__ = ["Decision", "HelloOffer", "ProfileRuntime", "SESSION_ID_LEN"]
