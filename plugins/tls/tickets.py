"""Session ticket keys (RFC 5077): sealing, opening, rotation, import/export.

Key format (nginx/HAProxy ``ssl_session_ticket_key`` files, 80 bytes, base64 one per line, the
first line is the current key)::

    key[0:16]   key name, sent in the clear at the start of every ticket
    key[16:48]  unused by tapnf (nginx's HMAC key; kept so the files are interchangeable)
    key[48:80]  AES-256-GCM key

Ticket format (what the client stores and sends back; at most ``MAX_TICKET`` bytes)::

    name (16) || nonce (12, from the rng) || AES-256-GCM(
        key = key[48:80], nonce, aad = name,
        plaintext = issue time (8, big-endian IEEE double, wall seconds) || SessionState.encode()
    ) (ciphertext || 16-byte tag)

The name is authenticated as associated data, so a ticket cannot be moved to another key.
``open`` never raises: it returns a ``TicketOpen`` whose ``status`` is ``ok`` or one of the
reason codes ``ticket_unknown_key`` (no key has that name — e.g. erased), ``ticket_invalid``
(wrong size, tag mismatch, undecodable state, issued in the future) or ``ticket_expired`` (older
than the lifetime). Key names are compared with ``hmac.compare_digest`` against every key, with
no early exit.

Rotation: one current key seals; ``rotate(now)`` installs a new current key and keeps the old
ones decrypt-only until every ticket they sealed has outlived ``lifetime`` (retired time +
lifetime), then erases them (the 80-byte ``bytearray`` is overwritten with zeros; the AEAD
context is dropped). Keys imported or read from ``ticket_key_file`` are *pinned*: ``handle_timer``
does not rotate them away (the operator or a fleet controller does). ``on_event(action, name)``
reports ``installed``, ``promoted``, ``retired``, ``erased``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipeline.errors import DecodeError
from plugins.tls.session import MAX_ENCODED_LEN, SessionState

KEY_LEN = 80
NAME_LEN = 16
NONCE_LEN = 12
TAG_LEN = 16
_TIME = struct.Struct(">d")
MIN_TICKET = NAME_LEN + NONCE_LEN + _TIME.size + 1 + TAG_LEN
MAX_TICKET = NAME_LEN + NONCE_LEN + _TIME.size + MAX_ENCODED_LEN + TAG_LEN
#: Bound on keys held (current + decrypt-only); the oldest are erased early past it.
MAX_KEYS = 32
#: Tickets sealed under one generated key before it is rotated regardless of the schedule.
MAX_SEALS_PER_KEY = 2**31
#: Tickets claiming an issue time further in the future than this are invalid (clock skew).
MAX_SKEW_S = 60.0

Rng = Callable[[int], bytes]
KeyEvent = Callable[[str, str], None]


@dataclass(slots=True)
class TicketOpen:
    """Result of opening a ticket: ``status`` is ``ok`` or a reason code."""

    status: str
    state: SessionState | None = None
    key_name: str | None = None  # hex, when a key with that name exists
    age_s: float | None = None
    current: bool = False  # opened with the current (sealing) key


@dataclass(eq=False)
class TicketKey:
    """One key; ``material`` is erased (zeroed) when the key is retired for good."""

    material: bytearray = field(repr=False)
    installed: float
    pinned: bool = False
    retired: float | None = None
    sealed: int = 0
    opened: int = 0
    _aead: AESGCM | None = field(default=None, repr=False)
    _name: bytes | None = field(default=None, repr=False)  # cached: compared on every open

    @property
    def name(self) -> bytes:
        if self._name is None:
            self._name = bytes(self.material[:NAME_LEN])
        return self._name

    @property
    def aead(self) -> AESGCM:
        if self._aead is None:
            self._aead = AESGCM(bytes(self.material[48:80]))
        return self._aead

    def erase(self) -> None:
        for i in range(len(self.material)):
            self.material[i] = 0
        self._aead = None
        self._name = None


def parse_key_file(text: str) -> list[bytes]:
    """Keys from a ticket key file: base64 80-byte keys, one per line (``#`` comments allowed)."""
    keys = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            raw = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"line {n}: not base64") from None
        if len(raw) != KEY_LEN:
            raise ValueError(f"line {n}: key is {len(raw)} bytes, expected {KEY_LEN}")
        keys.append(raw)
    if not keys:
        raise ValueError("no keys in file")
    return keys


def format_key_file(keys: list[bytes]) -> str:
    return "".join(base64.b64encode(k).decode() + "\n" for k in keys)


class TicketKeyRing:
    """One current sealing key and decrypt-only previous keys."""

    def __init__(
        self,
        rng: Rng,
        now: float,
        *,
        rotation: float = 3600,
        lifetime: float = 3600,
        on_event: KeyEvent | None = None,
        keys: list[bytes] | None = None,
    ) -> None:
        self.rng = rng
        self.rotation = rotation
        self.lifetime = lifetime
        self.on_event = on_event
        self.keys: list[TicketKey] = []  # keys[0] is current
        self.forced_erasures = 0
        self.invalid = 0
        self.unknown = 0
        self.expired = 0
        if keys:
            self.import_keys(keys, now)
        else:
            self.rotate(now)

    # ---- properties ----------------------------------------------------------------------
    @property
    def current(self) -> TicketKey:
        return self.keys[0]

    @property
    def pinned(self) -> bool:
        return self.current.pinned

    # ---- sealing / opening ---------------------------------------------------------------
    def seal(self, state: SessionState, now: float) -> tuple[bytes, str]:
        """A ticket for ``state`` under the current key, and that key's name (hex)."""
        key = self.current
        if key.sealed >= MAX_SEALS_PER_KEY and not key.pinned:
            self.rotate(now)  # random 96-bit GCM nonces: stay far below the birthday bound
            key = self.current
        name = key.name
        nonce = self.rng(NONCE_LEN)
        body = key.aead.encrypt(nonce, _TIME.pack(now) + state.encode(), name)
        key.sealed += 1
        return name + nonce + body, name.hex()

    def open(self, ticket: bytes, now: float, lifetime: float | None = None) -> TicketOpen:
        """Open a ticket. Never raises; see the module docstring for the statuses."""
        try:
            return self._open(ticket, now, self.lifetime if lifetime is None else lifetime)
        except Exception:  # defence in depth: attacker-controlled input must not escape
            self.invalid += 1
            return TicketOpen("ticket_invalid")

    def _open(self, ticket: bytes, now: float, lifetime: float) -> TicketOpen:
        if not MIN_TICKET <= len(ticket) <= MAX_TICKET:
            self.invalid += 1
            return TicketOpen("ticket_invalid")
        name = bytes(ticket[:NAME_LEN])
        found: TicketKey | None = None
        for key in self.keys:  # compare against every key, no early exit
            if hmac.compare_digest(key.name, name) and found is None:
                found = key
        if found is None:
            self.unknown += 1
            return TicketOpen("ticket_unknown_key")
        hexname = name.hex()
        current = found is self.current
        nonce = bytes(ticket[NAME_LEN : NAME_LEN + NONCE_LEN])
        try:
            plain = found.aead.decrypt(nonce, bytes(ticket[NAME_LEN + NONCE_LEN :]), name)
            issued = _TIME.unpack_from(plain)[0]
            state = SessionState.decode(plain[_TIME.size :])
        except (InvalidTag, DecodeError, struct.error):
            self.invalid += 1
            return TicketOpen("ticket_invalid", key_name=hexname, current=current)
        age = now - issued
        if not age >= -MAX_SKEW_S:  # also catches NaN
            self.invalid += 1
            return TicketOpen("ticket_invalid", key_name=hexname, current=current)
        age = max(age, 0.0)
        if age > lifetime:
            self.expired += 1
            return TicketOpen("ticket_expired", None, hexname, age, current)
        found.opened += 1
        return TicketOpen("ok", state, hexname, age, current)

    # ---- key management ------------------------------------------------------------------
    def rotate(self, now: float) -> str:
        """Install a fresh random key as current; the previous one becomes decrypt-only."""
        material = bytearray(self.rng(KEY_LEN))
        if len(material) != KEY_LEN:
            raise ValueError("rng returned the wrong number of bytes")
        while any(hmac.compare_digest(k.name, bytes(material[:NAME_LEN])) for k in self.keys):
            material[:NAME_LEN] = self.rng(NAME_LEN)  # name clash (seeded rng in tests)
        self._install([TicketKey(material, now)], now)
        return self.current.name.hex()

    def import_keys(self, keys: list[bytes], now: float) -> list[str]:
        """Install ``keys`` (first = current, others decrypt-only), pinned.

        Keys already held under the same name are replaced; other held keys are retired
        (decrypt-only until their tickets expire), so importing never invalidates tickets.
        """
        if not keys:
            raise ValueError("no keys given")
        names = []
        for i, k in enumerate(keys):
            if len(k) != KEY_LEN:
                raise ValueError(f"key {i} is {len(k)} bytes, expected {KEY_LEN}")
            names.append(bytes(k[:NAME_LEN]))
        if len(set(names)) != len(names):
            raise ValueError("duplicate key names")
        if len(keys) > MAX_KEYS:
            raise ValueError(f"at most {MAX_KEYS} keys")
        new = [TicketKey(bytearray(k), now, pinned=True) for k in keys]
        for extra in new[1:]:
            extra.retired = now
        self._install(new, now)
        return [n.hex() for n in names]

    def _install(self, new: list[TicketKey], now: float) -> None:
        new_names = {k.name for k in new}
        kept: list[TicketKey] = []
        for old in self.keys:
            if old.name in new_names:  # replaced by an imported key of the same name
                self._erase(old)
                continue
            if old.retired is None:
                old.retired = now
                self._emit("retired", old)
            kept.append(old)
        for k in new:
            self._emit("installed", k)
        self.keys = new + kept
        self._emit("promoted", self.current)
        while len(self.keys) > MAX_KEYS:
            self.forced_erasures += 1
            self._erase(self.keys.pop())

    def export(self) -> list[bytes]:
        """Every key's 80 bytes, current first (secret material: secure channels only)."""
        return [bytes(k.material) for k in self.keys]

    def erase_at(self, key: TicketKey) -> float | None:
        """When a decrypt-only key will be erased (pinned imported keys too)."""
        if key.retired is None:
            return None
        return key.retired + self.lifetime

    def handle_timer(self, now: float, rotate: bool = True) -> list[str]:
        """Rotate when due (``rotate`` and not pinned); erase keys whose tickets have expired."""
        done = []
        if rotate and not self.pinned and now >= self.current.installed + self.rotation:
            done.append("rotated")
            self.rotate(now)
        keep = [self.current]
        for k in self.keys[1:]:
            at = self.erase_at(k)
            if at is not None and now >= at:
                self._erase(k)
                done.append("erased")
            else:
                keep.append(k)
        self.keys = keep
        return done

    def poll_at(self, rotate: bool = True) -> float | None:
        # Asked once per loop iteration: no temporary list.
        first: float | None = None
        if rotate and not self.pinned:
            first = self.current.installed + self.rotation
        keys = self.keys
        for i in range(1, len(keys)):
            retired = keys[i].retired
            if retired is not None:
                at = retired + self.lifetime
                if first is None or at < first:
                    first = at
        return first

    def describe(self, now: float) -> list[dict[str, object]]:
        """Names and states, never key material (``tls.tickets.list``)."""
        out: list[dict[str, object]] = []
        for i, k in enumerate(self.keys):
            out.append(
                {
                    "name": k.name.hex(),
                    "state": "current" if i == 0 else "decrypt_only",
                    "pinned": k.pinned,
                    "installed": k.installed,
                    "retired": k.retired,
                    "erase_at": self.erase_at(k) if i else None,
                    "sealed": k.sealed,
                    "opened": k.opened,
                }
            )
        return out

    def _erase(self, key: TicketKey) -> None:
        name = key.name.hex()
        key.erase()
        if self.on_event is not None:
            self.on_event("erased", name)

    def _emit(self, action: str, key: TicketKey) -> None:
        if self.on_event is not None:
            self.on_event(action, key.name.hex())


def load_key_file(path: str | Path) -> list[bytes]:
    """Read a ticket key file (raises OSError / ValueError)."""
    return parse_key_file(Path(path).read_text())


__all__ = [
    "KEY_LEN",
    "MAX_KEYS",
    "MAX_TICKET",
    "TicketKey",
    "TicketKeyRing",
    "TicketOpen",
    "format_key_file",
    "load_key_file",
    "parse_key_file",
]
