"""schemathesis against the app's own OpenAPI document: every REST and DICOMweb route, with
generated (valid and invalid) path parameters, query strings, headers and bodies, sent
in-process through the session's running app with a valid bearer token.

No answer may be a 5xx; every 4xx must be ``application/problem+json`` with a stable
``code``. Bounded (``MAX_EXAMPLES`` per operation) so it stays well under a minute or two.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from conftest import bearer, jpeg_bytes, register_patient, token_for, upload

MAX_EXAMPLES = 30
# STOW-RS documents its body as multipart/related of DICOM parts (api/offline_docs.py):
# generated bodies go out as raw bytes under that media type.
schemathesis.serializer.alias('multipart/related; type="application/dicom"',
                              "application/octet-stream")


def _operations() -> list[Any]:
    """The operations of the app's OpenAPI document (built without starting the app)."""
    from api.app import create_app
    from api.settings import Settings

    document = create_app(Settings(database_url="postgresql://unused/unused")).openapi()
    schema = schemathesis.openapi.from_dict(document)
    return [result.ok() for result in schema.get_all_operations()]


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def fuzz_world(client: TestClient, shared_settings: Any) -> dict[str, Any]:
    """A clinic admin of a clinic of its own, with a patient and an image, so that generated
    requests also reach past the "no such id" checks."""
    headers = bearer(token_for(shared_settings, "clinic_admin", "clinic-fuzz"))
    patient_id = register_patient(client, headers)
    image = upload(client, headers, patient_id, jpeg_bytes(64, 48, seed=4242))
    assert image.status_code in (200, 201), image.text
    return {"headers": headers, "ids": {"patient_id": patient_id,
                                        "image_id": image.json()["id"]}}


@pytest.mark.slow
@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_no_route_answers_5xx(operation: Any, client: TestClient,
                              fuzz_world: dict[str, Any]) -> None:
    # Valid inputs (deep paths) and invalid ones (wrong types, missing parts) alike.
    @given(case=st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                          operation.as_strategy(GenerationMode.NEGATIVE)),
           real_ids=st.booleans())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any, real_ids: bool) -> None:
        if real_ids and case.path_parameters:
            for name, value in fuzz_world["ids"].items():
                if name in case.path_parameters:
                    case.path_parameters[name] = value
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        headers = {**(kwargs.get("headers") or {}), **fuzz_world["headers"]}
        response = client.request(kwargs["method"], kwargs["url"], headers=headers,
                                  params=kwargs.get("params"),
                                  content=kwargs.get("data"), json=kwargs.get("json"))
        case.validate_response(response, checks=[not_a_server_error])
        if 400 <= response.status_code < 500 and not kwargs["url"].endswith("/graphql"):
            # (/graphql's own transport errors are strawberry's plain text, not REST.)
            assert response.headers["content-type"].startswith("application/problem+json"), (
                kwargs["method"], kwargs["url"], response.status_code, response.text[:300])
            assert response.json()["code"], response.text

    check()
