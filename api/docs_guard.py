"""Production mode: the API description is for callers holding a token.

``/openapi.json`` (and the docs pages, where served) answer 401 problem+json without a
valid bearer token, so an anonymous scanner gets no map of the routes; embedded mode keeps
them open for local development.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import Response

from api.auth import bearer_token, verify_token
from api.errors import problem
from domain.errors import Unauthenticated


def _describes_api(request: Request) -> bool:
    app = request.app
    path = request.url.path
    pages = (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    return any(page and (path == page or path.startswith(f"{page}/")) for page in pages)


def docs_guard_middleware(production: bool) -> Callable[..., Awaitable[Response]]:
    async def middleware(request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if production and _describes_api(request):
            try:
                verify_token(request.app.state.services.tokens,
                             bearer_token(request.headers.get("authorization")), "")
            except Unauthenticated as error:
                return problem(401, error.code, error.message, request)
        return await call_next(request)

    return middleware
