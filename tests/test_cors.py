"""CORS (ORTHOVAULT_CORS_ORIGINS): preflights and headers on /graphql, /api and /dicomweb,
answered before the rate limiter and the token check; the websocket handshake's Origin.
The browser's side of it is tests/test_browser_clients.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from api.cors import DEV_ORIGINS
from conftest import bearer, make_settings, token_for

VIEWER = "https://viewer.clinic.test"
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type"}
PATHS = ("/graphql", "/api/v1/patients/00000000-0000-0000-0000-000000000000/images",
         "/dicomweb/studies")


@pytest.fixture(scope="module")
def strict_app(database_factory, tmp_path_factory) -> Iterator[tuple[TestClient, str]]:
    """Production mode, one allowed origin, and budgets a second request would exceed."""
    settings = make_settings(database_factory(), tmp_path_factory.mktemp("cors"),
                             mode="production", run_background=False, cors_origins=VIEWER,
                             rate_limit_requests="2/minute", rate_limit_failed_auth="1/minute")
    with TestClient(create_app(settings)) as client:
        yield client, token_for(settings, "clinic_admin", "clinic-cors")


def test_embedded_mode_allows_the_local_dev_origins(client: TestClient, auth) -> None:
    origin = "http://localhost:3000"
    assert origin in DEV_ORIGINS
    for path in PATHS:
        answer = client.options(path, headers={"Origin": origin, **PREFLIGHT})
        assert answer.status_code == 200, path
        assert answer.headers["access-control-allow-origin"] == origin
        assert "authorization" in answer.headers["access-control-allow-headers"].lower()
        assert "POST" in answer.headers["access-control-allow-methods"]
    found = client.get("/dicomweb/studies", headers={"Origin": origin, **auth("doctor")})
    assert found.status_code == 200
    assert found.headers["access-control-allow-origin"] == origin
    exposed = found.headers["access-control-expose-headers"].lower()
    for header in ("etag", "content-location", "warning", "retry-after"):
        assert header in exposed
    # Credentials (cookies) are never allowed: tokens travel in Authorization.
    assert "access-control-allow-credentials" not in found.headers
    elsewhere = client.options("/graphql", headers={"Origin": "https://evil.test", **PREFLIGHT})
    assert elsewhere.status_code == 400
    assert "access-control-allow-origin" not in elsewhere.headers


def test_production_allows_only_the_configured_origins(strict_app) -> None:
    client, token = strict_app
    for _ in range(4):  # past both budgets: a preflight is never 401 or 429
        for path in PATHS:
            answer = client.options(path, headers={"Origin": VIEWER, **PREFLIGHT})
            assert answer.status_code == 200, (path, answer.status_code)
            assert answer.headers["access-control-allow-origin"] == VIEWER
    dev = client.options("/graphql", headers={"Origin": "http://localhost:3000", **PREFLIGHT})
    assert "access-control-allow-origin" not in dev.headers
    # A refusal by the limiter still carries the headers, so the page can read the 429.
    for _ in range(3):
        refused = client.get("/dicomweb/studies", headers={"Origin": VIEWER, **bearer(token)})
    assert refused.status_code == 429
    assert refused.headers["access-control-allow-origin"] == VIEWER
    assert "retry-after" in refused.headers["access-control-expose-headers"].lower()


def test_websocket_handshake_checks_the_origin(client: TestClient, auth) -> None:
    token = auth("doctor")["Authorization"]
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect(
            "/graphql", subprotocols=["graphql-transport-ws"],
            headers={"Origin": "https://evil.test"}) as socket:
        socket.receive_json()
    assert refused.value.code == 1008
    for origin in ("http://127.0.0.1:5173", None):  # allowed, or not a browser at all
        headers = {"Origin": origin} if origin else {}
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"],
                                      headers=headers) as socket:
            socket.send_json({"type": "connection_init",
                              "payload": {"Authorization": token}})
            assert socket.receive_json()["type"] == "connection_ack"
