"""Health, readiness, metrics, problem+json errors, and logs free of PHI."""

from __future__ import annotations

import json
import os

from conftest import GALLERY, graphql, jpeg_bytes, register_patient, upload, wait_until


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = wait_until(lambda: client.get("/readyz").status_code == 200 and client.get("/readyz"))
    body = ready.json()
    assert body["ready"] is True
    assert set(body["checks"]) >= {"database", "gallery_v1", "audit_v1",
                                   "capture_sessions_v1", "dicom_index_v1", "derivatives_v1",
                                   "dicom_derivatives_v1"}
    assert set(body["checks"].values()) == {"ok"}


def test_metrics_expose_latency_uploads_and_projection_lag(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    upload(client, headers, patient_id, jpeg_bytes())
    text = client.get("/metrics").text
    assert "orthovault_http_request_seconds_bucket" in text
    assert 'orthovault_uploads_total{outcome="stored"}' in text
    assert 'orthovault_projection_lag_events{runner="gallery_v1"}' in text
    assert 'orthovault_runner_up{runner="derivatives_v1"} 1.0' in text


def test_errors_are_problem_json_with_stable_codes(client, auth):
    r = client.get("/api/v1/nowhere")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "not_found" and r.json()["status"] == 404
    r = client.get("/api/v1/images/not-a-uuid/thumbnail", headers=auth("doctor"))
    assert r.status_code == 400 and r.json()["code"] == "invalid_request"
    assert r.headers["x-request-id"]
    g = client.post("/graphql", json={"query": "{ nope }"}, headers=auth("doctor"))
    assert g.json()["errors"][0]["extensions"]["code"] == "invalid_query"


def test_graphql_depth_and_alias_limits(client, auth):
    aliases = " ".join(f"a{i}: __typename" for i in range(40))
    r = client.post("/graphql", json={"query": "{ " + aliases + " }"}, headers=auth("doctor"))
    assert r.json()["errors"][0]["extensions"]["code"] == "invalid_query"
    assert r.json().get("data") is None


def _nested(levels: int) -> str:
    # Albums nest in albums: a legal query of any depth (the album need not exist).
    return ('{ album(id: "00000000-0000-4000-8000-000000000000") { '
            + "children { " * levels + "id" + " }" * levels + " } }")


def test_graphql_depth_limit(client, auth):
    allowed = client.post("/graphql", json={"query": _nested(8)}, headers=auth("doctor"))
    assert allowed.json()["errors"][0]["extensions"]["code"] == "album_not_found"  # it ran
    refused = client.post("/graphql", json={"query": _nested(12)}, headers=auth("doctor"))
    assert refused.json()["errors"][0]["extensions"]["code"] == "invalid_query"
    assert "depth" in refused.json()["errors"][0]["message"]


def test_graphql_size_limit(client, auth):
    """A query of more than 5000 tokens is refused before it is validated or run."""
    fields = " ".join("__typename" for _ in range(6000))
    r = client.post("/graphql", json={"query": "{ " + fields + " }"}, headers=auth("doctor"))
    assert r.json()["errors"][0]["extensions"]["code"] == "invalid_query"
    assert r.json().get("data") is None
    assert client.get("/healthz").status_code == 200


def test_request_id_is_echoed(client):
    r = client.get("/healthz", headers={"X-Request-ID": "trace-123"})
    assert r.headers["x-request-id"] == "trace-123"


def test_logs_are_json_and_free_of_phi(client, auth, capsys):
    marker = "Phimarker" + os.urandom(3).hex()
    headers = auth("doctor")
    patient_id = register_patient(client, headers, given_name=marker, family_name=marker)
    image_id = upload(client, headers, patient_id, jpeg_bytes(), filename=f"{marker}.jpg",
                      fields={"tags": marker}).json()["id"]
    wait_until(lambda: graphql(client, headers, GALLERY, {"id": patient_id, "first": 5})
               ["data"]["patient"]["images"]["edges"][0]["node"]["thumbnailUrl"])
    client.get(f"/api/v1/images/{image_id}/thumbnail", headers=headers)
    upload(client, headers, patient_id, b"\x00" * 100, filename=f"{marker}.jpg")  # refused
    graphql(client, headers, """mutation($i: TagImageInput!){ tagImage(input: $i){ id } }""",
            {"i": {"imageId": image_id, "tag": "x" * 100 + marker}})  # refused: too long
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("{")]
    assert lines, "the flow should have logged something"
    assert all(isinstance(json.loads(line), dict) for line in lines)
    assert any(json.loads(line).get("event") == "request" for line in lines)
    assert marker.lower() not in err.lower()
