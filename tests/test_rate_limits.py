"""Request budgets: past one, a caller gets 429 ``rate_limited`` with Retry-After; others don't.

The limits are counted, not timed: each test spends a small budget and checks the request
after it, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.rate_limits import RateBudgets
from conftest import bearer, jpeg_bytes, make_settings, register_patient, token_for, upload

PATIENT = "query($id: ID!){ patient(id: $id){ id } }"


@pytest.fixture
def limited(database_factory, tmp_path) -> Iterator[tuple[TestClient, object]]:
    # Background jobs on: read-your-writes waits would otherwise outlast the one-minute window.
    settings = make_settings(database_factory(), tmp_path,
                             rate_limit_requests="8/minute", rate_limit_writes="3/minute",
                             rate_limit_failed_auth="4/minute")
    with TestClient(create_app(settings)) as client:
        yield client, settings


def _refusal(response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


def test_a_caller_past_its_budget_gets_429_and_others_carry_on(limited):
    client, settings = limited
    doctor = bearer(token_for(settings, "doctor", "clinic-a"))
    statuses = [client.get("/api/v1/images/00000000-0000-0000-0000-000000000000/thumbnail",
                           headers=doctor).status_code for _ in range(8)]
    assert statuses == [404] * 8  # spent on real answers
    refused = client.get("/api/v1/images/00000000-0000-0000-0000-000000000000/thumbnail",
                         headers=doctor)
    assert _refusal(refused) == (429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["x-request-id"]
    # GraphQL counts against the same budget.
    blocked = client.post("/graphql", headers=doctor,
                          json={"query": PATIENT, "variables": {"id": "x"}})
    assert _refusal(blocked) == (429, "rate_limited")
    # Another user of the same clinic, and the same user name in another clinic, are not
    # affected; nor are the probes.
    for other in (bearer(token_for(settings, "doctor", "clinic-a", user="someone-else")),
                  bearer(token_for(settings, "doctor", "clinic-b"))):
        assert client.get("/api/v1/images/00000000-0000-0000-0000-000000000000/thumbnail",
                          headers=other).status_code == 404
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)


def test_uploads_have_their_own_smaller_budget(limited):
    client, settings = limited
    admin = bearer(token_for(settings, "clinic_admin", "clinic-u"))
    patient_id = register_patient(client, admin, consent=True)  # two GraphQL requests
    accepted = [upload(client, admin, patient_id, jpeg_bytes(seed=i)) for i in range(3)]
    assert [r.status_code for r in accepted] == [201, 201, 201]
    refused = upload(client, admin, patient_id, jpeg_bytes(seed=9))
    assert _refusal(refused) == (429, "rate_limited")
    assert "upload" in refused.json()["detail"]
    # Nothing of the refused upload was stored: the patient has exactly the three images.
    reader = bearer(token_for(settings, "clinic_admin", "clinic-u", user="reader"))
    images = client.post("/graphql", headers=reader, json={
        "query": "query($id: ID!){ patient(id: $id){ images(first: 10){ edges { node { id }"
                 " } } } }", "variables": {"id": patient_id}}).json()
    ids = {e["node"]["id"] for e in images["data"]["patient"]["images"]["edges"]}
    assert ids == {r.json()["id"] for r in accepted}


def test_failed_authentications_lock_out_the_address_not_valid_callers_elsewhere(limited):
    client, settings = limited
    for _ in range(4):
        r = client.get("/api/v1/audit/export", headers=bearer("not-a-token"))
        assert _refusal(r) == (401, "invalid_token")
    locked = client.get("/api/v1/audit/export", headers=bearer("another-guess"))
    assert _refusal(locked) == (429, "rate_limited")
    # The address is locked out even with a valid token: guessing cannot be interleaved
    # with real requests to stay under the budget.
    valid = bearer(token_for(settings, "clinic_admin", "clinic-x"))
    assert _refusal(client.get("/api/v1/audit/export", headers=valid)) == (429, "rate_limited")


def test_an_unreadable_budget_is_refused_at_start(database_factory, tmp_path):
    settings = make_settings(database_factory(), tmp_path, rate_limit_requests="lots")
    with pytest.raises(ValueError, match="ORTHOVAULT_RATE_LIMIT_REQUESTS"):
        RateBudgets.from_settings(settings)
    with pytest.raises(ValueError, match="ORTHOVAULT_RATE_LIMIT_REQUESTS"):
        create_app(settings)


def test_an_empty_budget_means_unlimited(database_factory, tmp_path):
    settings = make_settings(database_factory(), tmp_path)
    assert RateBudgets.from_settings(settings) == RateBudgets((), (), ())
