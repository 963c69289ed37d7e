"""Smaller hardening items of issue 17, each failing without its fix: CBCT is an X-ray for
front desk everywhere; production hides the API description and GraphQL's field hints;
deeply nested JSON and an unterminated multipart body are clean 400s that store nothing;
tokens have a maximum lifetime."""

from __future__ import annotations

import time
import uuid

import jwt
from click.testing import CliRunner
from dicom_support import dicom_bytes
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main as cli
from api.graphql_json import MAX_DEPTH
from conftest import (
    GALLERY,
    TEST_TOKEN_SECRET,
    bearer,
    blob_subjects,
    graphql,
    jpeg_bytes,
    make_settings,
    register_patient,
    stored_events,
    token_for,
    upload,
    wait_until,
)
from domain.image import Image

REGISTER = """mutation($i: RegisterPatientInput!){ registerPatient(input: $i){ id } }"""
TAG = """mutation($input: TagImageInput!) { tagImage(input: $input) { id } }"""
CREATE_ALBUM = """mutation($input: CreateAlbumInput!) { createAlbum(input: $input) { id } }"""
ADD = """mutation($input: AlbumImagesInput!) { addImagesToAlbum(input: $input) { id } }"""
ALBUM = """query($id: ID!) { album(id: $id) { images(first: 10) { edges { node { id } } } } }"""
SEARCH = """query($q: String!) { search(query: $q) { edges { node { image { id } } } } }"""


def _ids(edges: list[dict]) -> set[str]:
    return {e["node"]["id"] for e in edges}


def test_cbct_is_an_x_ray_for_front_desk_everywhere(client, auth):
    admin, desk = auth("clinic_admin"), auth("front_desk")
    external = f"CBCT-{uuid.uuid4().hex[:6]}"
    patient = graphql(client, admin, REGISTER, {"i": {
        "externalId": external, "givenName": "Ada", "familyName": "Lovelace",
        "birthDate": "2012-04-01", "sex": "female"}})["data"]["registerPatient"]["id"]
    filed = upload(client, admin, patient, dicom_bytes(modality="CT", patient_id=external),
                   filename="cbct.dcm", content_type="application/dicom")
    assert filed.status_code == 201, filed.text
    cbct = filed.json()["id"]
    document = upload(client, admin, patient, jpeg_bytes(seed=3),
                      fields={"category": "document"}).json()["id"]
    tag = f"cbcttag{uuid.uuid4().hex[:6]}"
    for image in (cbct, document):
        assert "errors" not in graphql(client, admin, TAG,
                                       {"input": {"imageId": image, "tag": tag}})
    album = graphql(client, admin, CREATE_ALBUM, {"input": {"name": "volumes"}})[
        "data"]["createAlbum"]["id"]
    graphql(client, admin, ADD, {"input": {"albumId": album, "imageIds": [cbct, document]}})

    def found(headers: dict) -> set[str]:
        hits = graphql(client, headers, SEARCH, {"q": tag})["data"]["search"]["edges"]
        return {e["node"]["image"]["id"] for e in hits}

    wait_until(lambda: found(admin) == {cbct, document})
    gallery = graphql(client, admin, GALLERY, {"id": patient, "first": 10})
    assert {cbct, document} <= _ids(gallery["data"]["patient"]["images"]["edges"])

    thumbnail = client.get(f"/api/v1/images/{cbct}/thumbnail", headers=desk)
    assert thumbnail.status_code == 403
    assert thumbnail.json()["code"] == "radiographs_restricted"
    gallery = graphql(client, desk, GALLERY, {"id": patient, "first": 10})
    assert _ids(gallery["data"]["patient"]["images"]["edges"]) == {document}
    in_album = graphql(client, desk, ALBUM, {"id": album})["data"]["album"]["images"]["edges"]
    assert _ids(in_album) == {document}
    assert found(desk) == {document}


INTROSPECTION_OFF_TYPO = "{ patien(id: \"x\") { id } }"


def test_production_hides_the_api_description_and_field_hints(client, auth, database_factory,
                                                               tmp_path):
    embedded_typo = graphql(client, auth("doctor"), INTROSPECTION_OFF_TYPO)
    assert "Did you mean" in embedded_typo["errors"][0]["message"]  # developing: hints stay
    assert client.get("/openapi.json").status_code == 200
    settings = make_settings(database_factory(), tmp_path, mode="production",
                             run_background=False)
    headers = bearer(token_for(settings, "doctor", "c1"))
    with TestClient(create_app(settings)) as production:
        refused = production.get("/openapi.json")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert "paths" not in refused.text
        # The docs page: not served in production, or only with a token.
        assert production.get("/docs").status_code in (401, 404)
        assert production.get("/openapi.json", headers=bearer("garbage")).status_code == 401
        served = production.get("/openapi.json", headers=headers)
        assert served.status_code == 200 and "/api/v1/images/{image_id}/original" in served.json()[
            "paths"]
        typo = production.post("/graphql", json={"query": INTROSPECTION_OFF_TYPO},
                               headers=headers).json()
        message = typo["errors"][0]["message"]
        assert "patien" in message and "Did you mean" not in message
        assert "'patient'" not in message


def test_deeply_nested_json_is_a_400_problem(client, auth):
    headers = {**auth("doctor"), "content-type": "application/json"}
    for depth in (100_000, MAX_DEPTH + 1):
        nested = "[" * depth + "]" * depth
        body = '{"query":"{ __typename }","variables":{"x":' + nested + "}}"
        refused = client.post("/graphql", content=body, headers=headers)
        assert refused.status_code == 400, (depth, refused.text[:200])
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "json_too_deep"
    nested = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    by_get = client.get("/graphql", params={"query": "{ __typename }",
                                            "variables": '{"x":' + nested + "}"},
                        headers=auth("doctor"))
    assert by_get.status_code == 400 and by_get.json()["code"] == "json_too_deep"
    fine = "[" * 10 + "]" * 10
    served = client.post("/graphql", headers=headers,
                         content='{"query":"{ __typename }","variables":{"x":' + fine + "}}")
    assert served.json() == {"data": {"__typename": "Query"}}


def test_an_unterminated_multipart_body_stores_nothing(client, auth, clinic):
    headers = auth("clinic_admin")
    patient = register_patient(client, headers)
    boundary = "cutshort"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"category\"\r\n\r\n"
            f"document\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\";"
            f" filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
    photo = jpeg_bytes(seed=11)
    blobs_before = blob_subjects(client)
    captured_before = len(stored_events(client, Image.Captured))
    for body in (head + photo, head + photo + f"\r\n--{boundary}".encode()):
        refused = client.post(f"/api/v1/patients/{patient}/images", content=body,
                              headers={**headers, "content-type":
                                       f"multipart/form-data; boundary={boundary}"})
        assert refused.status_code == 400, refused.text
        assert refused.json()["code"] == "invalid_multipart"
    assert blob_subjects(client) == blobs_before
    assert len(stored_events(client, Image.Captured)) == captured_before
    whole = head + photo + f"\r\n--{boundary}--\r\n".encode()
    accepted = client.post(f"/api/v1/patients/{patient}/images", content=whole,
                           headers={**headers, "content-type":
                                    f"multipart/form-data; boundary={boundary}"})
    assert accepted.status_code == 201, accepted.text


def _token(settings, **claims) -> str:
    now = int(time.time())
    payload = {"sub": "u1", "clinic": "c1", "role": "doctor", "iss": settings.token_issuer,
               "aud": settings.token_audience, "iat": now, "exp": now + 600, **claims}
    return jwt.encode(payload, TEST_TOKEN_SECRET, algorithm="HS256")


def test_tokens_have_a_maximum_lifetime(client, shared_settings, database_factory, tmp_path):
    def status(token: str, on: TestClient = client) -> int:
        return on.post("/graphql", json={"query": "{ __typename }"},
                       headers=bearer(token)).status_code

    now = int(time.time())
    assert status(_token(shared_settings)) == 200
    assert status(_token(shared_settings, exp=now + 24 * 3600 - 60)) == 200
    centuries = _token(shared_settings, exp=now + 300 * 365 * 86400)
    assert status(centuries) == 401
    refused = client.post("/graphql", json={"query": "{ __typename }"},
                          headers=bearer(centuries))
    assert refused.json()["code"] == "token_lifetime_too_long"
    # Back-dated issue time: what counts is exp - iat.
    assert status(_token(shared_settings, iat=now - 2 * 86400, nbf=now - 2 * 86400,
                         exp=now + 600)) == 401

    short = make_settings(database_factory(), tmp_path, run_background=False,
                          token_max_lifetime_seconds=3600)
    with TestClient(create_app(short)) as strict:
        assert status(_token(short, exp=now + 1800), strict) == 200
        assert status(_token(short, exp=now + 7200), strict) == 401

    env = {"ORTHOVAULT_TOKEN_SECRET": TEST_TOKEN_SECRET, "ORTHOVAULT_DATA_DIR": str(tmp_path)}
    args = ["token", "--user", "u", "--clinic", "c", "--role", "doctor"]
    issued = CliRunner().invoke(cli, [*args, "--ttl", "3600"], env=env)
    assert issued.exit_code == 0, issued.output
    assert status(issued.output.strip()) == 200
    too_long = CliRunner().invoke(cli, [*args, "--ttl", str(25 * 3600)], env=env)
    assert too_long.exit_code != 0 and "--ttl" in too_long.output
