"""GraphQL introspection: available while developing (embedded), off in production."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from conftest import bearer, make_settings, token_for

INTROSPECT = "{ __schema { queryType { name } } }"
TYPE = '{ __type(name: "Query") { name } }'


def test_introspection_is_off_in_production_mode(database_factory, tmp_path, client, auth):
    for query in (INTROSPECT, TYPE):
        allowed = client.post("/graphql", json={"query": query}, headers=auth("doctor"))
        assert "errors" not in allowed.json(), allowed.json()
    settings = make_settings(database_factory(), tmp_path, mode="production",
                             run_background=False)
    headers = bearer(token_for(settings, "doctor", "c1"))
    with TestClient(create_app(settings)) as production:
        for query in (INTROSPECT, TYPE):
            refused = production.post("/graphql", json={"query": query}, headers=headers)
            body = refused.json()
            assert body.get("data") is None
            assert "introspection" in body["errors"][0]["message"].lower()
        ordinary = production.post("/graphql", headers=headers,
                                   json={"query": "{ __typename }"})
        assert ordinary.json() == {"data": {"__typename": "Query"}}
        assert production.get("/docs").status_code == 404
