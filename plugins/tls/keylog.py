"""Key log in the NSS ``SSLKEYLOGFILE`` format, so captures can be decrypted in Wireshark.

The engine hands each line to a :class:`KeyLog`; it never writes files itself (the TLS stage owns
the file writer; the runtime may share a listener in ``env.shared["keylog"]``, e.g. a capture,
which may set ``active = False`` while it wants no lines, so the engine formats none).
TLS 1.2 lines are ``CLIENT_RANDOM <64 hex> <96 hex>``.
"""

from __future__ import annotations

from typing import Protocol


class KeyLog(Protocol):
    def write_line(self, line: str) -> None: ...


class ListKeyLog:
    """Keeps lines in memory (tests, tools)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_line(self, line: str) -> None:
        self.lines.append(line)


class KeyLogTee:
    """Hands each line to several key logs (the profile's file and the runtime's shared
    listener, e.g. a capture embedding the secrets)."""

    def __init__(self, *logs: KeyLog) -> None:
        self.logs = logs

    def write_line(self, line: str) -> None:
        for log in self.logs:
            log.write_line(line)


def client_random_line(client_random: bytes, master_secret: bytes) -> str:
    return f"CLIENT_RANDOM {client_random.hex()} {master_secret.hex()}"


__all__ = ["KeyLog", "KeyLogTee", "ListKeyLog", "client_random_line"]
