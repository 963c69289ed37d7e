"""GraphQL over GET answers members only; only the IDE page itself is open.

Static reference queries (the landmark catalogue, report layouts) take no id, so the
permission matrix cannot catch them answering without a token; this does.
"""

from __future__ import annotations

import pytest

QUERIES = ["{ cephLandmarkCatalogue { code } }", "{ reportLayouts { name } }"]


@pytest.mark.parametrize("query", QUERIES)
def test_a_query_over_get_needs_a_token(client, auth, query):
    anonymous = client.get("/graphql", params={"query": query})
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "missing_token"
    member = client.get("/graphql", params={"query": query}, headers=auth("billing")).json()
    assert "errors" not in member, member
    assert next(iter(member["data"].values()))


def test_the_ide_page_needs_no_token(client):
    page = client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
