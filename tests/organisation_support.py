"""Helpers shared by the organisation tests (albums, tags, phases, search)."""

from __future__ import annotations

import itertools
from typing import Any

from conftest import graphql, jpeg_bytes, upload

_seeds = itertools.count(1000)


def add_image(client: Any, headers: dict[str, str], patient_id: str, **fields: str) -> str:
    """Upload a small distinct photo (or radiograph with category=radiograph)."""
    response = upload(client, headers, patient_id, jpeg_bytes(64, 48, seed=next(_seeds)),
                      fields=fields)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def ok(client: Any, headers: dict[str, str], query: str, variables: dict[str, Any]
       ) -> dict[str, Any]:
    result = graphql(client, headers, query, variables)
    assert "errors" not in result, result
    return result["data"]


def error_code(client: Any, headers: dict[str, str], query: str,
               variables: dict[str, Any]) -> str:
    result = graphql(client, headers, query, variables)
    assert "errors" in result, result
    return result["errors"][0]["extensions"]["code"]


def searchable(client: Any) -> None:
    """Uploads wait for the gallery only: wait until search has applied every event so far."""
    services = client.app.state.services
    assert services.wait_for_read_models(services.app.recorder.max_notification_id(),
                                         services.search)
