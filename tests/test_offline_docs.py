"""Swagger UI and GraphiQL work without internet access; the OpenAPI document says how to
authenticate, what the uploads take and which errors really come back (problem+json)."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi.testclient import TestClient

from api.offline_docs import external_urls

_ASSET = re.compile(r"""(?:src|href)\s*=\s*["'](/static/[^"']+)["']""")
_INTEGRITY = re.compile(r"""(?:src|href)="(/static/[^"]+)"\s+integrity="(sha384-[^"]+)\"""")


def _assets(client: TestClient, html: str) -> dict[str, bytes]:
    found = {}
    for path in _ASSET.findall(html):
        answer = client.get(path)
        assert answer.status_code == 200, path
        found[path] = answer.content
    return found


def test_swagger_ui_loads_nothing_from_the_internet(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert external_urls(page.text) == []
    assets = _assets(client, page.text)
    assert any(path.endswith("swagger-ui-bundle.js") for path in assets)
    assert any(path.endswith("swagger-ui.css") for path in assets)
    assert "persistAuthorization" in page.text  # the Authorize button's token survives reloads
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_graphiql_loads_the_shipped_assets(client: TestClient) -> None:
    page = client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    assert external_urls(page.text) == []
    assets = _assets(client, page.text)
    assert len(assets) == 7
    # Byte for byte the files strawberry names: the browser checks the same hashes.
    hashed = _INTEGRITY.findall(page.text)
    assert len(hashed) == len(assets)
    for path, integrity in hashed:
        digest = base64.b64encode(hashlib.sha384(assets[path]).digest()).decode()
        assert integrity == f"sha384-{digest}", path


def test_openapi_documents_auth_uploads_and_problem_responses(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"]}
    assert document["security"] == [{"bearerAuth": []}]
    text = client.get("/openapi.json").text
    assert '"422"' not in text and "HTTPValidationError" not in text
    problem = document["components"]["responses"]["Problem400"]["content"]
    assert problem["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"}
    assert "code" in document["components"]["schemas"]["Problem"]["required"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status in ("400", "401", "403", "429"):
                assert operation["responses"][status] == {
                    "$ref": f"#/components/responses/Problem{status}"}, (method, path)
    upload = document["paths"]["/api/v1/patients/{patient_id}/images"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"]
    assert form["properties"]["file"] == {"type": "string", "format": "binary",
                                          "description": form["properties"]["file"][
                                              "description"]}
    assert "413" in upload["responses"] and "404" in upload["responses"]
    batch = document["paths"]["/api/v1/patients/{patient_id}/image-batches"]["post"]
    assert batch["requestBody"]["content"]["multipart/form-data"]["schema"][
        "properties"]["files"]["type"] == "array"
    scans = document["paths"]["/api/v1/patients/{patient_id}/scans"]["post"]
    assert "arch" in scans["requestBody"]["content"]["multipart/form-data"]["schema"][
        "properties"]
    stow = document["paths"]["/dicomweb/studies"]["post"]["requestBody"]["content"]
    assert list(stow) == ['multipart/related; type="application/dicom"']


def test_production_serves_no_tooling(database_factory, tmp_path) -> None:
    from api.app import create_app
    from conftest import bearer, make_settings, token_for

    settings = make_settings(database_factory(), tmp_path, mode="production",
                             run_background=False)
    with TestClient(create_app(settings)) as production:
        assert production.get("/docs").status_code == 404
        assert production.get("/static/swagger-ui/swagger-ui-bundle.js").status_code == 404
        # the description is for token holders only (api/docs_guard.py), still with the scheme
        assert production.get("/openapi.json").status_code == 401
        document = production.get("/openapi.json", headers=bearer(
            token_for(settings, "doctor", "clinic-docs"))).json()
        assert "bearerAuth" in document["components"]["securitySchemes"]
