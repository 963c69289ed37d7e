"""Test session: a real PostgreSQL database per session, real blob folders, a real app.

Postgres comes from ORTHOVAULT_TEST_DATABASE_URL, else the machine's server on
127.0.0.1:5432, else an embedded PostgreSQL in a temp dir. With ORTHOVAULT_REQUIRE_POSTGRES=1
(CI) a missing server fails the run instead of falling back.
"""

from __future__ import annotations

import base64
import io
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from api.app import create_app
from api.auth import issue_token
from api.services import token_config
from api.settings import Settings

pytest_plugins = ["phi_log_scan"]

TEST_MASTER_KEY = base64.b64encode(b"k" * 32).decode()
TEST_TOKEN_SECRET = "test-token-secret-" + "x" * 32


def _server_url() -> str:
    explicit = os.environ.get("ORTHOVAULT_TEST_DATABASE_URL")
    if explicit:
        return explicit
    local = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        psycopg.connect(local, connect_timeout=3).close()
        return local
    except psycopg.OperationalError as error:
        if "refused" not in str(error) and "timeout" not in str(error).lower():
            raise  # a server is there but refused us (e.g. too many clients): say so
        if os.environ.get("ORTHOVAULT_REQUIRE_POSTGRES") == "1":
            raise pytest.UsageError(
                "ORTHOVAULT_REQUIRE_POSTGRES=1 but no PostgreSQL answers on 127.0.0.1:5432"
            ) from None
    from adapters import embedded_postgres

    embedded_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"ov-embedded-{os.getpid()}"
    return embedded_postgres.start(embedded_dir).replace("/orthovault?", "/postgres?")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    return _server_url()


@pytest.fixture(scope="session")
def database_factory(postgres_server: str) -> Iterator[Callable[[], str]]:
    """Creates fresh databases on the test server; drops them all at the end."""
    created: list[str] = []

    def create() -> str:
        name = f"ov_test_{secrets.token_hex(6)}"
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        base, _, query = postgres_server.partition("?")
        url = base.rsplit("/", 1)[0] + "/" + name
        return url + ("?" + query if query else "")

    yield create
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir, "database_url": database_url, "master_key": TEST_MASTER_KEY,
        "token_secret": TEST_TOKEN_SECRET, "read_your_writes_timeout": 20.0,
        # Each test database is its own installation on the session's one broker.
        "kafka_group_prefix": "ov-" + database_url.rsplit("/", 1)[-1],
        # The whole session calls from one address; tests/test_rate_limits.py sets its own.
        "rate_limit_requests": "", "rate_limit_writes": "", "rate_limit_failed_auth": "",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def shared_settings(database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
                    ) -> Settings:
    return make_settings(database_factory(), tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def client(shared_settings: Settings) -> Iterator[TestClient]:
    """One running app (API + projections + workers) shared by the session's tests.

    Tests stay independent by working in clinics of their own (see ``clinic``).
    """
    with TestClient(create_app(shared_settings)) as test_client:
        yield test_client


@pytest.fixture
def clinic() -> str:
    return f"clinic-{uuid.uuid4().hex[:8]}"


def token_for(settings: Settings, role: str, clinic: str, user: str | None = None) -> str:
    return issue_token(token_config(settings), user=user or f"user-{role}", clinic=clinic,
                       role=role)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth(shared_settings: Settings, clinic: str) -> Callable[..., dict[str, str]]:
    """``auth("doctor")`` → headers for that role in this test's clinic."""

    def headers(role: str = "clinic_admin", clinic_id: str | None = None) -> dict[str, str]:
        return bearer(token_for(shared_settings, role, clinic_id or clinic))

    return headers


def graphql(client: TestClient, headers: dict[str, str], query: str,
            variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": query, "variables": variables or {}},
                           headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


REGISTER = """
mutation($input: RegisterPatientInput!) {
  registerPatient(input: $input) { id externalId givenName familyName }
}"""
GRANT = """
mutation($input: GrantConsentInput!) {
  grantConsent(input: $input) { id consents { scope active } }
}"""


def register_patient(client: TestClient, headers: dict[str, str], *, consent: bool = True,
                     given_name: str = "Ada", family_name: str = "Lovelace") -> str:
    result = graphql(client, headers, REGISTER, {"input": {
        "externalId": f"EXT-{uuid.uuid4().hex[:6]}", "givenName": given_name,
        "familyName": family_name, "birthDate": "2012-04-01", "sex": "female",
    }})
    assert "errors" not in result, result
    patient_id = result["data"]["registerPatient"]["id"]
    if consent:
        granted = graphql(client, headers, GRANT, {"input": {
            "patientId": patient_id, "scope": "CLINICAL_PHOTOGRAPHY"}})
        assert "errors" not in granted, granted
    return patient_id


def jpeg_bytes(width: int = 640, height: int = 480, seed: int = 0, **save: Any) -> bytes:
    """A textured JPEG (noise over a gradient) so it compresses like a photo."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)),
                     np.full_like(x, 128)], axis=-1)
    noise = rng.integers(-20, 20, size=(height, width, 3))
    pixels = np.clip(base + noise, 0, 255).astype("uint8")
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, "JPEG", quality=90, **save)
    return out.getvalue()


def upload(client: TestClient, headers: dict[str, str], patient_id: str, data: bytes,
           filename: str = "photo.jpg", content_type: str = "image/jpeg",
           fields: dict[str, str] | None = None, extra_headers: dict[str, str] | None = None):
    return client.post(
        f"/api/v1/patients/{patient_id}/images",
        files={"file": (filename, data, content_type)},
        data=fields or {},
        headers={**headers, **(extra_headers or {})},
    )


GALLERY = """
query($id: ID!, $first: Int!, $after: String) {
  patient(id: $id) {
    images(first: $first, after: $after) {
      edges { cursor node { id status category view tags capturedAt thumbnailUrl } }
      pageInfo { hasNextPage endCursor }
    }
  }
}"""


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


def stored_events(client: TestClient, event_class: type) -> list[Any]:
    """Every stored event of one type, decoded through the real (decrypting) mapper.

    Events of destroyed subjects come back as ShreddedEvent placeholders and are left out.
    """
    from eventsourcing.utils import get_topic

    app = client.app.state.services.app
    notifications = app.recorder.select_notifications(
        start=None, limit=1_000_000, topics=[get_topic(event_class)]
    )
    events = (app.mapper.to_domain_event(n) for n in notifications)
    return [event for event in events if isinstance(event, event_class)]


def blob_subjects(client: TestClient) -> set[str]:
    root = client.app.state.services.settings.blob_dir
    return {p.name for p in root.glob("*/*") if p.is_dir()}
