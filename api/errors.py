"""Errors as application/problem+json (RFC 9457) with a stable ``code``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import psycopg
import structlog
from eventsourcing.persistence import ConnectionUnavailableError, PersistenceError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from domain.errors import ErrorKind, OrthovaultError

log = structlog.get_logger("orthovault.errors")

STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.GONE: 410,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNSUPPORTED: 415,
    ErrorKind.UNPROCESSABLE: 422,
    ErrorKind.INSUFFICIENT_STORAGE: 507,
}


# What a client may do when PostgreSQL is away (restarting, failing over): try again soon.
DATABASE_RETRY_AFTER = "5"


def database_unavailable(error: BaseException | None) -> bool:
    """Whether ``error`` (or what caused it) means PostgreSQL cannot be reached right now: a
    lost or refused connection, a server shutting down or starting up, or no pooled
    connection within the pool's timeout. Not a failing statement on a live connection."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, psycopg.InterfaceError | ConnectionUnavailableError):
            return True
        if isinstance(current, psycopg.OperationalError):
            state = current.sqlstate or ""
            # No SQLSTATE: the connection itself failed (or the pool timed out);
            # 08xxx: connection exception; 57P0x: admin/crash shutdown, cannot connect now.
            if not state or state.startswith(("08", "57P")):
                return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend((current.__cause__, current.__context__))
    return False


def problem(status: int, code: str, detail: str, request: Request | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body = {
        "type": f"https://orthovault.dev/problems/{code}",
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
        request_id = getattr(request.state, "request_id", None)
        if request_id:
            body["request_id"] = request_id
    extra = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse(body, status_code=status, media_type="application/problem+json",
                        headers={**extra, **(headers or {})})


PLAIN_ERROR_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed",
                     413: "too_large", 415: "unsupported_media_type"}


async def plain_errors_as_problems(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Errors that libraries answer as text/plain (strawberry's "Unable to parse request
    body as JSON", say) become problem+json like every other error."""
    response = await call_next(request)
    media = response.headers.get("content-type", "")
    if response.status_code < 400 or not media.startswith("text/plain"):
        return response
    body = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
    code = PLAIN_ERROR_CODES.get(response.status_code, "http_error")
    keep = {k: v for k, v in response.headers.items()
            if k.lower() in ("allow", "retry-after", "www-authenticate")}
    return problem(response.status_code, code, body.decode("utf-8", "replace")[:500], request,
                   headers=keep)


def install(app: FastAPI) -> None:
    @app.exception_handler(OrthovaultError)
    async def _domain(request: Request, error: OrthovaultError) -> JSONResponse:
        log.info("request_refused", code=error.code, status=STATUS[error.kind])
        return problem(STATUS[error.kind], error.code, error.message, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in error.errors())
        return problem(400, "invalid_request", f"invalid or missing: {fields}", request)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        # Keep the router's headers: a 405 names the methods that are allowed (Allow).
        return problem(error.status_code, code, str(error.detail), request,
                       headers=dict(error.headers or {}))

    def _unavailable(request: Request, error: Exception) -> JSONResponse:
        # Expected while PostgreSQL restarts: the pools reconnect by themselves.
        log.warning("database_unavailable", error=type(error).__name__)
        return problem(503, "database_unavailable", "the database is unavailable; retry shortly",
                       request, headers={"Retry-After": DATABASE_RETRY_AFTER})

    async def _database(request: Request, error: Exception) -> JSONResponse:
        if not database_unavailable(error):
            raise error  # a failing statement is a bug: the catch-all below answers 500
        return _unavailable(request, error)

    for database_error in (psycopg.Error, PersistenceError):
        app.add_exception_handler(database_error, _database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        if database_unavailable(error):  # wrapped, e.g. in an exception group
            return _unavailable(request, error)
        log.error("unhandled_error", error=type(error).__name__)
        return problem(500, "internal_error", "an unexpected error occurred", request)
