"""Signed, expiring share links to one version of a report.

A link token is ``<payload>.<signature>``, both base64url: the payload names the report,
the version, the link id, the clinic and the expiry (ids and a time, never PHI); the
signature is HMAC-SHA256 under a key derived from the server's signing secret, so a link
cannot be forged or altered. Revocation is state (``Report.ShareRevoked``), checked on
every download by the caller, because a signature alone cannot be taken back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from domain.errors import Gone, NotFound

MAX_TOKEN_CHARS = 600


@dataclass(frozen=True, slots=True)
class LinkClaim:
    report_id: UUID
    version: int
    link_id: str
    clinic_id: str
    expires_at: datetime


def _key(secret: str) -> bytes:
    # Domain separation: the bearer-token secret is never used as-is for another purpose.
    return hashlib.sha256(b"orthovault report links v1|" + secret.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(claim: LinkClaim, secret: str) -> str:
    payload = json.dumps({
        "r": str(claim.report_id), "v": claim.version, "l": claim.link_id,
        "c": claim.clinic_id, "e": int(claim.expires_at.timestamp()),
    }, separators=(",", ":"), sort_keys=True).encode()
    signature = hmac.new(_key(secret), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(signature)}"


def _invalid() -> NotFound:
    # Tampered, truncated or foreign: indistinguishable from a link that never existed.
    return NotFound("link_invalid", "this link is not valid")


def verify(token: str, secret: str, now: datetime) -> LinkClaim:
    """The claim of a genuine, unexpired link; ``NotFound("link_invalid")`` for anything
    altered, ``Gone("link_expired")`` once it has expired."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise _invalid()
    encoded, signature = token.split(".")
    try:
        payload, given = _unb64(encoded), _unb64(signature)
    except (binascii.Error, ValueError):
        raise _invalid() from None
    expected = hmac.new(_key(secret), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        raise _invalid()
    try:
        raw = json.loads(payload)
        claim = LinkClaim(UUID(raw["r"]), int(raw["v"]), str(raw["l"]), str(raw["c"]),
                          datetime.fromtimestamp(int(raw["e"]), UTC))
    except (KeyError, TypeError, ValueError):
        raise _invalid() from None
    if now >= claim.expires_at:
        raise Gone("link_expired", "this link has expired; ask the practice for a new one")
    return claim
