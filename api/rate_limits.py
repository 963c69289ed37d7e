"""Request budgets per caller: past its budget a caller gets 429 ``rate_limited``.

Three budgets, each in the `limits` notation (``"3000/minute"``, ``"50/second;1000/hour"``;
empty = off):
- every request of one caller (clinic + user of a valid token, else the client address);
- REST and DICOMweb writes (uploads, STOW, batches) of one caller, far fewer than reads: a
  viewer pulls dozens of tiles a second, an upload costs a full decode;
- failed authentications from one client address, so tokens cannot be guessed at speed
  (once spent, that address is refused before its token is even checked).

Counted in this process's memory with a moving window: N API processes allow N times the
budget. A global limit belongs in the reverse proxy (docs/deploy.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request, Response
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from api.auth import bearer_token, verify_token
from api.errors import problem
from api.settings import Settings
from domain.errors import Unauthenticated

UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
WRITE_PREFIXES = ("/api/v1/", "/dicomweb/")


def _budget(setting: str, name: str) -> tuple[RateLimitItem, ...]:
    if not setting.strip():
        return ()
    try:
        return tuple(parse_many(setting))
    except ValueError:
        raise ValueError(f"{name}: {setting!r} is not a rate such as '600/minute'") from None


@dataclass(frozen=True)
class RateBudgets:
    requests: tuple[RateLimitItem, ...]
    writes: tuple[RateLimitItem, ...]
    failed_auth: tuple[RateLimitItem, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> RateBudgets:
        return cls(
            _budget(settings.rate_limit_requests, "ORTHOVAULT_RATE_LIMIT_REQUESTS"),
            _budget(settings.rate_limit_writes, "ORTHOVAULT_RATE_LIMIT_WRITES"),
            _budget(settings.rate_limit_failed_auth, "ORTHOVAULT_RATE_LIMIT_FAILED_AUTH"),
        )


class RateLimiter:
    def __init__(self, budgets: RateBudgets) -> None:
        self.budgets = budgets
        self._window = MovingWindowRateLimiter(MemoryStorage())

    def spend(self, items: tuple[RateLimitItem, ...], *key: str) -> int | None:
        """Count one request; the seconds to wait if a budget was already spent, else None."""
        return self._first_spent(self._window.hit, items, key)

    def exhausted(self, items: tuple[RateLimitItem, ...], *key: str) -> int | None:
        """Like :meth:`spend` without counting: for budgets only failures spend."""
        return self._first_spent(self._window.test, items, key)

    def _first_spent(self, allows: Callable[..., bool], items: tuple[RateLimitItem, ...],
                     key: tuple[str, ...]) -> int | None:
        for item in items:
            if not allows(item, *key):
                reset = self._window.get_window_stats(item, *key).reset_time
                return max(1, math.ceil(reset - time.time()))
        return None


def _caller(request: Request, address: str) -> str:
    try:
        token = bearer_token(request.headers.get("authorization"))
        actor = verify_token(request.app.state.services.tokens, token, "")
    except (Unauthenticated, AttributeError):
        return f"address:{address}"
    return f"user:{actor.clinic_id}/{actor.user_id}"


def _refused(request: Request, wait: int, what: str) -> Response:
    return problem(429, "rate_limited", f"too many {what}; retry in {wait} s", request,
                   headers={"Retry-After": str(wait)})


def rate_limit_middleware(limiter: RateLimiter
                          ) -> Callable[..., Awaitable[Response]]:
    budgets = limiter.budgets

    async def middleware(request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path in UNLIMITED_PATHS:
            return await call_next(request)
        address = request.client.host if request.client else "unknown"
        if wait := limiter.exhausted(budgets.failed_auth, "failed_auth", address):
            return _refused(request, wait, "failed authentications from this address")
        caller = _caller(request, address)
        if wait := limiter.spend(budgets.requests, "requests", caller):
            return _refused(request, wait, "requests")
        is_write = request.method in ("POST", "PUT") and \
            request.url.path.startswith(WRITE_PREFIXES)
        if is_write and (wait := limiter.spend(budgets.writes, "writes", caller)):
            return _refused(request, wait, "uploads")
        response = await call_next(request)
        if response.status_code == 401:
            limiter.spend(budgets.failed_auth, "failed_auth", address)
        return response

    return middleware
