"""One error format: every error, the transport's own included, is problem+json."""

from __future__ import annotations


def test_graphql_with_a_malformed_body_is_a_problem(client, auth):
    for body in (b"{not json", b"[1, 2"):
        r = client.post("/graphql", content=body,
                        headers={**auth("doctor"), "Content-Type": "application/json"})
        assert r.status_code == 400
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "invalid_request" and r.json()["status"] == 400
        assert r.json()["request_id"] == r.headers["x-request-id"]


def test_method_not_allowed_names_the_allowed_methods(client, auth):
    r = client.delete("/healthz")
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "method_not_allowed"
    batch = client.get("/api/v1/patients/00000000-0000-4000-8000-000000000000/image-batches",
                       headers=auth("doctor"))
    assert batch.status_code == 405 and batch.headers["allow"] == "POST"
