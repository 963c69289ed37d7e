"""Cross-origin access for browser apps (the practice frontend, a web DICOM viewer such as OHIF).

Origins come from ``ORTHOVAULT_CORS_ORIGINS`` (comma list, ``*`` = any origin). Unset, a
production server allows none and an embedded one allows the usual local development
origins (:data:`DEV_ORIGINS`). Tokens travel in ``Authorization``, never in cookies, so
credentials stay off (``Access-Control-Allow-Credentials`` is never sent).

HTTP goes through Starlette's CORSMiddleware, placed outside the rate limiter so a preflight
is answered before a budget or a token is looked at. Websockets have no CORS: strawberry
checks the handshake's ``Origin`` against the same list (``allowed_origins`` of the GraphQL
router, api/graphql_schema.py); handshakes without ``Origin`` (not a browser) and
same-origin ones pass, others are refused with 403.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from api.settings import Settings

DEV_ORIGINS = tuple(f"http://{host}:{port}" for port in (3000, 5173, 8080)
                    for host in ("localhost", "127.0.0.1"))
# Headers a browser client must be able to read from our answers.
EXPOSED_HEADERS = ("ETag", "Content-Location", "Warning", "Retry-After", "Location",
                   "X-Request-ID")
ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight answer


def allowed_origins(settings: Settings) -> tuple[str, ...]:
    if settings.cors_origins is None:
        return DEV_ORIGINS if settings.mode == "embedded" else ()
    return tuple(o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip())


def install(app: FastAPI, settings: Settings) -> None:
    """Call it right after the rate limiter, so CORS sits outside it."""
    origins = allowed_origins(settings)
    app.add_middleware(CORSMiddleware, allow_origins=list(origins), allow_credentials=False,
                       allow_methods=list(ALLOWED_METHODS),
                       allow_headers=["Authorization", "Content-Type", "Accept",
                                      "If-None-Match", "X-Request-ID", "Idempotency-Key"],
                       expose_headers=list(EXPOSED_HEADERS), max_age=PREFLIGHT_MAX_AGE)
