"""Errors shared by every layer of tapnf."""

from __future__ import annotations


class DecodeError(ValueError):
    """Input bytes do not form a valid message. Raised by every codec; never escapes the data path."""


class ConfigError(ValueError):
    """A configuration value (file or control request) is invalid.

    ``path`` names the key (``"profiles.clientssl.cache_size"``), ``value`` the offending value.
    """

    def __init__(self, path: str, message: str, value: object = None) -> None:
        self.path = path
        self.message = message
        self.value = value
        shown = f" (got {value!r})" if value is not None else ""
        super().__init__(f"{path}: {message}{shown}")


class ApiError(RuntimeError):
    """Misuse of tapnf's own API (a programming error, not peer misbehaviour)."""
