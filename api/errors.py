"""Errors as application/problem+json (RFC 9457) with a stable ``code``."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
        return problem(error.status_code, code, str(error.detail), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error("unhandled_error", error=type(error).__name__)
        return problem(500, "internal_error", "an unexpected error occurred", request)
