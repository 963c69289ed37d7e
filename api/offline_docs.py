"""The API's own tooling, usable on a clinic network without internet access.

- Swagger UI (``/docs``, embedded mode) from the ``swagger-ui-bundle`` package's files, and
  GraphiQL (``/graphql`` in a browser) from files shipped in ``api/static/graphiql`` (the
  very files strawberry's page names, so its integrity hashes still hold): no CDN.
- The OpenAPI document says how to authenticate (bearer scheme: Swagger's Authorize button),
  what the upload routes take (they read their multipart bodies as streams, which FastAPI
  cannot see), and the errors the server really answers: problem+json with a stable
  ``code`` (api/errors.py), never FastAPI's 422.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from api.graphql_json import BoundedJsonRouter
from api.settings import Settings

GRAPHIQL_ASSETS = Path(__file__).parent / "static" / "graphiql"
GRAPHIQL_PREFIX = "/static/graphiql"
SWAGGER_PREFIX = "/static/swagger-ui"

# strawberry's GraphiQL page -> the same file shipped here.
_GRAPHIQL_FILES = {
    "https://unpkg.com/react@18.2.0/umd/react.production.min.js": "react.production.min.js",
    "https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js":
        "react-dom.production.min.js",
    "https://unpkg.com/js-cookie@3.0.5/dist/js.cookie.min.js": "js.cookie.min.js",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.css": "graphiql.min.css",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.js": "graphiql.min.js",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/style.css": "plugin-explorer.css",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/index.umd.js":
        "plugin-explorer.umd.js",
}
_LOADED_URL = re.compile(r"""(?:src|href)\s*=\s*["']((?:https?:)?//[^"']+)""", re.IGNORECASE)


def external_urls(html: str) -> list[str]:
    """URLs a page would load from another host (scripts, styles, icons)."""
    return _LOADED_URL.findall(html)


def offline_graphiql(html: str) -> str:
    """strawberry's GraphiQL page with every asset served by orthovault itself."""
    for url, name in _GRAPHIQL_FILES.items():
        html = html.replace(url, f"{GRAPHIQL_PREFIX}/{name}")
    left = external_urls(html)
    if left:  # a strawberry upgrade changed the assets: ship the new ones (README there)
        raise RuntimeError(f"GraphiQL would load {left} from the internet")
    return html


class OfflineGraphQLRouter(BoundedJsonRouter):
    """The app's GraphQL router (bounded JSON), its GraphiQL page loading the shipped assets."""

    @property
    def graphql_ide_html(self) -> str:
        return offline_graphiql(super().graphql_ide_html)


# ---- OpenAPI ---------------------------------------------------------------------------

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details with a stable machine-readable `code`.",
    "required": ["type", "title", "status", "code", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string", "examples": ["invalid_request"]},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
    },
}
_ERRORS = {
    "400": "Invalid input (`code` says which, e.g. `invalid_request`).",
    "401": "No valid bearer token (`missing_token`, `invalid_token`).",
    "403": "The role may not do this (`permission_denied`, `consent_required`, …).",
    "404": "No such resource in the caller's clinic (another clinic's id is 404 too).",
    "409": "Conflicts with the current state.",
    "413": "The body is larger than allowed.",
    "415": "The body's media type is not accepted.",
    "429": "Over the caller's request budget (`rate_limited`; see Retry-After).",
    "503": "The database is unavailable; retry after Retry-After seconds.",
}
_ALWAYS = ("400", "401", "403", "429", "503")
_WITH_ID = ("404",)
_UPLOAD = ("409", "413", "415")


def _form(files: dict[str, str], fields: dict[str, str], required: str) -> dict[str, Any]:
    properties: dict[str, Any] = {
        name: {"type": "string", "format": "binary", "description": text}
        for name, text in files.items()}
    properties |= {name: {"type": "string", "description": text}
                   for name, text in fields.items()}
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": [required], "properties": properties}}}}


_IMAGE_FIELDS = {
    "view": "View code (e.g. IV07) for a photo of a standard series.",
    "category": "Image category; inferred from the file when absent.",
    "captured_at": "ISO 8601 time of capture.",
    "tags": "Comma-separated tags.",
    "session_id": "Capture session the image belongs to.",
}
UPLOAD_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/v1/patients/{patient_id}/images"): _form(
        {"file": "The image: JPEG, PNG, HEIC, TIFF or DICOM."}, _IMAGE_FIELDS, "file"),
    ("post", "/api/v1/patients/{patient_id}/image-batches"): {
        "required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["files"], "properties": {
                "files": {"type": "array", "description": "Images or zip archives of images.",
                          "items": {"type": "string", "format": "binary"}},
                **{name: {"type": "string", "description": text}
                   for name, text in _IMAGE_FIELDS.items()}}}}}},
    ("post", "/api/v1/patients/{patient_id}/scans"): _form(
        {"file": "One STL (binary or ASCII), PLY or OBJ mesh."},
        {"arch": "upper or lower; else taken from the file name or the mesh's name.",
         "captured_at": "ISO 8601 time of capture.", "tags": "Comma-separated tags."}, "file"),
    ("post", "/api/v1/capture-sessions/{session_id}/guidance"): _form(
        {"frame": "A live preview frame, at most 640 px."},
        {"slot": "The view code being shot."}, "frame"),
    ("post", "/dicomweb/studies"): {
        "required": True, "description": "STOW-RS: DICOM Part 10 instances, one per part.",
        "content": {'multipart/related; type="application/dicom"': {"schema": {
            "type": "string", "format": "binary"}}}},
}


def _document_errors(operation: dict[str, Any], path: str, upload: bool) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    codes = _ALWAYS + (_WITH_ID if "{" in path else ()) + (_UPLOAD if upload else ())
    for code in codes:
        responses.setdefault(code, {"$ref": f"#/components/responses/Problem{code}"})


def describe(document: dict[str, Any]) -> dict[str, Any]:
    """Bearer security, upload bodies and problem+json errors added to FastAPI's document."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A token from `orthovault token` or the practice's identity service."}
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    components["responses"] = {
        f"Problem{code}": {"description": text, "content": {"application/problem+json": {
            "schema": {"$ref": "#/components/schemas/Problem"}}}}
        for code, text in _ERRORS.items()}
    document["security"] = [{"bearerAuth": []}]
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            body = UPLOAD_BODIES.get((method, path))
            if body is not None:
                operation["requestBody"] = body
            _document_errors(operation, path, body is not None)
    return document


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the assets; in embedded mode Swagger UI at /docs (production: no tooling)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    if settings.mode != "embedded":
        return
    app.mount(SWAGGER_PREFIX, StaticFiles(directory=swagger_ui_path), name="swagger-ui")
    app.mount(GRAPHIQL_PREFIX, StaticFiles(directory=GRAPHIQL_ASSETS), name="graphiql")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
            swagger_js_url=f"{SWAGGER_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_PREFIX}/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_ui_parameters={"persistAuthorization": True})

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
