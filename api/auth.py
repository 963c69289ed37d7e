"""Bearer tokens: local HS256 tokens in embedded mode, verified strictly on every request."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from domain.errors import Unauthenticated
from domain.permissions import ROLES
from domain.values import Actor

ALGORITHM = "HS256"


@dataclass(frozen=True)
class TokenConfig:
    secret: str
    issuer: str
    audience: str
    ttl_seconds: int
    # A token living longer than this (exp - iat) is refused, however it was signed.
    max_lifetime_seconds: int = 24 * 3600


class TokenLifetimeTooLong(ValueError):
    pass


def issue_token(config: TokenConfig, *, user: str, clinic: str, role: str,
                ttl_seconds: int | None = None) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    lifetime = ttl_seconds if ttl_seconds is not None else config.ttl_seconds
    if not 0 < lifetime <= config.max_lifetime_seconds:
        raise TokenLifetimeTooLong(
            f"a token lives 1 to {config.max_lifetime_seconds} seconds "
            "(ORTHOVAULT_TOKEN_MAX_LIFETIME_SECONDS)")
    now = int(time.time())
    claims = {
        "sub": user, "clinic": clinic, "role": role, "iss": config.issuer,
        "aud": config.audience, "iat": now, "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, config.secret, algorithm=ALGORITHM)


def verify_token(config: TokenConfig, token: str, request_id: str) -> Actor:
    try:
        # One algorithm only: no "none", no HS/RS confusion.
        claims = jwt.decode(
            token, config.secret, algorithms=[ALGORITHM], audience=config.audience,
            issuer=config.issuer, options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token_expired", "the bearer token has expired") from None
    except jwt.InvalidSignatureError:
        # Said apart from other faults: the usual cause is a token minted with another data
        # directory's key (`orthovault token` run elsewhere); the key itself stays unsaid.
        raise Unauthenticated(
            "invalid_token_signature", "the bearer token is not signed with this server's "
            "key (was it minted for another data directory?)") from None
    except jwt.PyJWTError:
        raise Unauthenticated("invalid_token", "the bearer token is not valid") from None
    issued = claims["iat"] if isinstance(claims["iat"], int | float) else time.time()
    if claims["exp"] - issued > config.max_lifetime_seconds:
        raise Unauthenticated("token_lifetime_too_long",
                              "the bearer token lives longer than this server accepts")
    role, clinic, user = claims.get("role"), claims.get("clinic"), claims.get("sub")
    if role not in ROLES or not isinstance(clinic, str) or not clinic or not user:
        raise Unauthenticated("invalid_token", "the bearer token lacks a valid role or clinic")
    return Actor(user_id=str(user), role=role, clinic_id=clinic, request_id=request_id)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("missing_token", "send Authorization: Bearer <token>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing_token", "send Authorization: Bearer <token>")
    return token.strip()
