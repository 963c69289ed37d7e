"""Errors that reach a user, each with a stable machine-readable code.

The API maps each kind to an HTTP status (see ``api/errors.py``); the code is what clients
branch on and must never change once published.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorKind(Enum):
    INVALID = "invalid"  # 400/422: the request itself is wrong
    UNAUTHENTICATED = "unauthenticated"  # 401
    FORBIDDEN = "forbidden"  # 403: authenticated, but the role lacks the permission
    NOT_FOUND = "not_found"  # 404: unknown, or another clinic's
    CONFLICT = "conflict"  # 409: the state forbids it (consent, stale version, deleted)
    GONE = "gone"  # 410: destroyed for good
    TOO_LARGE = "too_large"  # 413
    UNSUPPORTED = "unsupported"  # 415: bytes of a type we do not take
    UNPROCESSABLE = "unprocessable"  # 422: well-formed but unusable content
    INSUFFICIENT_STORAGE = "insufficient_storage"  # 507: our disk is full, not their fault


class OrthovaultError(Exception):
    """Base for every error whose message may be shown to the caller.

    Messages never contain PHI: they name ids and fields, not patients.
    """

    kind: ErrorKind = ErrorKind.INVALID

    def __init__(self, code: str, message: str, *, kind: ErrorKind | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if kind is not None:
            self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle as ``cls(*self.args)``, and args holds only the message: name
        # the code too, so an error raised in a decoder child process crosses back intact
        # (``kind``, when overridden, travels in the instance dict).
        return type(self), (self.code, self.message), self.__dict__


class InvalidInput(OrthovaultError):
    kind = ErrorKind.INVALID


class Unauthenticated(OrthovaultError):
    kind = ErrorKind.UNAUTHENTICATED


class PermissionDenied(OrthovaultError):
    kind = ErrorKind.FORBIDDEN


class NotFound(OrthovaultError):
    kind = ErrorKind.NOT_FOUND


class Conflict(OrthovaultError):
    kind = ErrorKind.CONFLICT


class Gone(OrthovaultError):
    kind = ErrorKind.GONE


class TooLarge(OrthovaultError):
    kind = ErrorKind.TOO_LARGE


class UnsupportedMedia(OrthovaultError):
    kind = ErrorKind.UNSUPPORTED


class Unprocessable(OrthovaultError):
    kind = ErrorKind.UNPROCESSABLE


class StorageFull(OrthovaultError):
    """The blob store has no space left; nothing of the refused write was kept.

    Deliberately not an ``OSError``: workers treat it as transient (retry after space is
    freed), not as a broken file to record as failed for good.
    """

    kind = ErrorKind.INSUFFICIENT_STORAGE
