"""Hostile strings in every text field a user can send (GraphQL inputs and variables, upload
form fields and file names, search queries, DICOMweb query parameters).

What must hold for each: the answer is a success or a refusal with a stable code (never a
500 or ``internal_error``); a value that is accepted reads back exactly as sent (no SQL or
tsquery is interpreted); a value that cannot be shown safely (NUL, control characters,
bidi overrides, lone surrogates, 100 000 characters) is refused in name-like fields; and the
read models keep up afterwards (a poisoned row would stall a projection for everyone).
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from corpus.build import HOSTILE_STRINGS, UNPRINTABLE_STRINGS, VERY_LONG
from fastapi.testclient import TestClient

from conftest import GALLERY, jpeg_bytes, register_patient, upload

Headers = dict[str, str]

ALL = {**HOSTILE_STRINGS, **UNPRINTABLE_STRINGS, "very-long": VERY_LONG}
SAFE = HOSTILE_STRINGS
# CR/LF is whitespace to fields that normalise whitespace (tags, album names, labels): those
# may keep it as a single space; every other unprintable string must be refused.
UNSAFE = {k: v for k, v in {**UNPRINTABLE_STRINGS, "very-long": VERY_LONG}.items()
          if k != "newline"}


def _refused_or_normalised(result: dict[str, Any], name: str, path: tuple[str, str]) -> None:
    if name == "newline" and "errors" not in result:
        stored = result["data"][path[0]][path[1]]
        assert "\r" not in stored and "\n" not in stored, stored
        return
    assert _codes(result) and _codes(result)[0].startswith("invalid_"), result


def _gql(client: TestClient, headers: Headers, query: str, variables: dict[str, Any]
         ) -> dict[str, Any]:
    # ensure_ascii keeps lone surrogates as \\u escapes, as a hostile client would send them.
    body = json.dumps({"query": query, "variables": variables}, ensure_ascii=True)
    response = client.post("/graphql", content=body,
                           headers={**headers, "Content-Type": "application/json"})
    assert response.status_code < 500, response.text
    result = response.json()
    for error in result.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert code and code != "internal_error", error
    return result


# NUL and unpaired surrogates are refused for every GraphQL string by api/graphql_text_guard.py
# before any resolver runs; other unprintable text is refused by each field's own rule.
GUARDED = {"nul", "lone-surrogate-escape"}


def _codes(result: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in result.get("errors") or []]


def _refused(result: dict[str, Any], name: str, code: str) -> None:
    assert _codes(result) == ["invalid_text" if name in GUARDED else code], result


@pytest.fixture(scope="module")
def world(client: TestClient, shared_settings: Any) -> dict[str, Any]:
    """One clinic with a patient and an image to aim the strings at."""
    from conftest import bearer, token_for

    clinic = f"clinic-hostile-{uuid.uuid4().hex[:6]}"
    headers = bearer(token_for(shared_settings, "clinic_admin", clinic))
    patient_id = register_patient(client, headers)
    created = upload(client, headers, patient_id, jpeg_bytes(96, 64, seed=77))
    assert created.status_code == 201, created.text
    return {"headers": headers, "patient": patient_id, "image": created.json()["id"]}


def _read_models_keep_up(client: TestClient, world: dict[str, Any]) -> None:
    """A fresh write is visible in the gallery and the search index: no projection is stuck."""
    headers = world["headers"]
    marker = f"probe{uuid.uuid4().hex[:8]}"
    tagged = _gql(client, headers, """mutation($i: TagImageInput!) {
        tagImage(input: $i) { tags } }""", {"i": {"imageId": world["image"], "tag": marker}})
    assert marker in tagged["data"]["tagImage"]["tags"]
    found = _gql(client, headers, "query($q: String!) { search(query: $q) { edges { node {"
                 " image { id } } } } }", {"q": marker})
    assert [e["node"]["image"]["id"] for e in found["data"]["search"]["edges"]] == [
        world["image"]]
    assert client.get("/readyz").status_code == 200


REGISTER = """mutation($input: RegisterPatientInput!) {
  registerPatient(input: $input) { id externalId givenName familyName } }"""


@pytest.mark.parametrize("name", list(ALL))
def test_patient_names(client: TestClient, world: dict[str, Any], name: str) -> None:
    value = ALL[name]
    result = _gql(client, world["headers"], REGISTER, {"input": {
        "externalId": f"EXT-{uuid.uuid4().hex[:6]}", "givenName": value, "familyName": value,
        "birthDate": "2010-01-01", "sex": "female"}})
    if name in SAFE:
        assert "errors" not in result, result
        patient = result["data"]["registerPatient"]
        assert (patient["givenName"], patient["familyName"]) == (value.strip(), value.strip())
        read = _gql(client, world["headers"], "query($id: ID!) { patient(id: $id) {"
                    " givenName familyName } }", {"id": patient["id"]})
        assert read["data"]["patient"]["givenName"] == value.strip()
    else:
        _refused(result, name, "invalid_field")
    _read_models_keep_up(client, world)


@pytest.mark.parametrize("name", list(ALL))
def test_external_id_and_guardian(client: TestClient, world: dict[str, Any], name: str
                                  ) -> None:
    value = ALL[name]
    result = _gql(client, world["headers"], REGISTER, {"input": {
        "externalId": value, "givenName": "Ada", "familyName": "Lovelace",
        "birthDate": "2010-01-01", "sex": "female",
        "guardian": {"name": value, "relationship": value, "phone": value}}})
    if name in SAFE:
        assert "errors" not in result, result
        assert result["data"]["registerPatient"]["externalId"] == value.strip()
    else:
        assert _codes(result) and _codes(result)[0].startswith("invalid_"), result
    _read_models_keep_up(client, world)


@pytest.mark.parametrize("name", list(ALL))
def test_tags_and_vocabulary(client: TestClient, world: dict[str, Any], name: str) -> None:
    value = ALL[name]
    tagged = _gql(client, world["headers"], """mutation($i: TagImageInput!) {
        tagImage(input: $i) { tags } }""", {"i": {"imageId": world["image"], "tag": value}})
    vocabulary = _gql(client, world["headers"], """mutation($t: String!) {
        addVocabularyTag(tag: $t) { __typename } }""", {"t": value})
    if name in SAFE and len(value) <= 64:
        assert "errors" not in tagged, tagged
        assert " ".join(value.split()).lower() in tagged["data"]["tagImage"]["tags"]
    if name in UNSAFE:
        _refused(tagged, name, "invalid_tag")
        _refused(vocabulary, name, "invalid_tag")
    if name == "newline":
        assert all("\n" not in t for t in tagged["data"]["tagImage"]["tags"])
    _read_models_keep_up(client, world)


@pytest.mark.parametrize("name", list(ALL))
def test_album_names(client: TestClient, world: dict[str, Any], name: str) -> None:
    value = ALL[name]
    result = _gql(client, world["headers"], """mutation($i: CreateAlbumInput!) {
        createAlbum(input: $i) { id name } }""", {"i": {"name": value}})
    if name in SAFE:
        assert "errors" not in result, result
        assert result["data"]["createAlbum"]["name"] == value.strip()
    else:
        _refused_or_normalised(result, name, ("createAlbum", "name"))
    _read_models_keep_up(client, world)


@pytest.mark.parametrize("name", list(ALL))
def test_image_notes(client: TestClient, world: dict[str, Any], name: str) -> None:
    """Notes are free text: newlines are fine; NUL, escapes and bidi overrides are not."""
    value = ALL[name]
    result = _gql(client, world["headers"], """mutation($i: AddImageNoteInput!) {
        addImageNote(input: $i) { id } }""", {"i": {"imageId": world["image"], "text": value}})
    if name in SAFE:
        assert "errors" not in result, result
    elif name != "newline":
        assert _codes(result) and _codes(result)[0].startswith("invalid_"), result
    _read_models_keep_up(client, world)


@pytest.mark.parametrize("name", list(ALL))
def test_milestone_labels(client: TestClient, world: dict[str, Any], name: str) -> None:
    value = ALL[name]
    result = _gql(client, world["headers"], """mutation($i: RecordMilestoneInput!) {
        recordMilestone(input: $i) { id label } }""", {"i": {
        "patientId": world["patient"], "kind": "initial_records", "occurredOn": "2024-01-05",
        "label": value, "milestoneId": f"m-{uuid.uuid4().hex[:8]}"}})
    if name in SAFE:
        assert "errors" not in result, result
    else:
        _refused_or_normalised(result, name, ("recordMilestone", "label"))
    kind = _gql(client, world["headers"], """mutation($i: RecordMilestoneInput!) {
        recordMilestone(input: $i) { id } }""", {"i": {
        "patientId": world["patient"], "kind": value, "occurredOn": "2024-01-05"}})
    assert _codes(kind) and _codes(kind)[0].startswith("invalid_"), kind
    _read_models_keep_up(client, world)


@pytest.mark.parametrize("name", list(ALL))
def test_search_queries(client: TestClient, world: dict[str, Any], name: str) -> None:
    """Any query string is searched for, never parsed as tsquery or SQL."""
    result = _gql(client, world["headers"], """query($q: String!) {
        search(query: $q) { edges { node { image { id } } } patients { id } } }""",
                  {"q": ALL[name]})
    for error in result.get("errors") or []:  # e.g. empty_query, query_too_long
        assert error["extensions"]["status"] == 400, result
    _read_models_keep_up(client, world)


@pytest.mark.parametrize("name", list(ALL))
def test_ids_in_graphql_variables(client: TestClient, world: dict[str, Any], name: str
                                  ) -> None:
    for query in ("query($id: ID!) { image(id: $id) { id } }",
                  "query($id: ID!) { patient(id: $id) { id } }",
                  "query($id: ID!) { album(id: $id) { id } }",
                  "query($id: ID!) { imageHistory(id: $id) { type } }"):
        result = _gql(client, world["headers"], query, {"id": ALL[name]})
        assert _codes(result) in (["invalid_id"], ["invalid_query"], ["invalid_text"]), (
            query, result)


def test_variables_of_the_wrong_shape(client: TestClient, world: dict[str, Any]) -> None:
    headers = world["headers"]
    for variables in ({"i": None}, {"i": []}, {"i": "x"}, {"i": {"imageId": 1, "tag": 2}},
                      {"i": {"imageId": world["image"], "tag": {"$ne": 1}}},
                      {"i": {"imageId": world["image"], "tag": ["a", "b"]}},
                      {"i": {"imageId": world["image"], "tag": "x", "extra": 1}}):
        result = _gql(client, headers, """mutation($i: TagImageInput!) {
            tagImage(input: $i) { tags } }""", variables)
        assert _codes(result) == ["invalid_query"], (variables, result)
    for raw in (b"{", b"[]", b'{"query": 1}', b'{"query": "{", "variables": 3}', b"\xff\xfe"):
        response = client.post("/graphql", content=raw,
                               headers={**headers, "Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (raw, response.text)


# ---- the upload form ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ALL))
def test_upload_form_fields_and_filenames(client: TestClient, world: dict[str, Any], name: str
                                          ) -> None:
    headers, patient = world["headers"], world["patient"]
    value = ALL[name]
    seed = abs(hash(name)) % 10_000 + 1000
    # A hostile client sends whatever bytes it likes: lone surrogates as invalid UTF-8.
    field_value = value[:2000].encode("utf-8", "surrogatepass")
    for field in ("tags", "view", "category", "captured_at", "session_id"):
        response = upload(client, headers, patient, jpeg_bytes(64, 48, seed=seed),
                          fields={field: field_value})
        assert response.status_code < 500, (field, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json"
    too_long = upload(client, headers, patient, jpeg_bytes(64, 48, seed=seed + 1),
                      fields={"tags": VERY_LONG})
    assert (too_long.status_code, too_long.json()["code"]) == (400, "field_too_long")
    # File names are kept (truncated), never used as paths, never echoed into headers.
    filename = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace") + ".jpg"
    named = upload(client, headers, patient, jpeg_bytes(64, 48, seed=seed + 2),
                   filename=filename)
    if name == "very-long":  # a 100 000-character part header is refused by the parser
        assert (named.status_code, named.json()["code"]) == (400, "invalid_multipart")
        return
    assert named.status_code in (200, 201), named.text
    original = client.get(f"/api/v1/images/{named.json()['id']}/original", headers=headers)
    assert original.headers["content-disposition"] == (
        f'attachment; filename="{named.json()["id"]}"')
    _read_models_keep_up(client, world)


@pytest.mark.parametrize("name", list(HOSTILE_STRINGS))
def test_idempotency_keys(client: TestClient, world: dict[str, Any], name: str) -> None:
    response = upload(client, world["headers"], world["patient"],
                      jpeg_bytes(64, 48, seed=abs(hash(name)) % 10_000 + 20_000),
                      extra_headers={"Idempotency-Key": HOSTILE_STRINGS[name].encode()})
    assert response.status_code in (200, 201, 400), response.text


@pytest.mark.parametrize("name", list(ALL))
def test_scan_arch_field(client: TestClient, world: dict[str, Any], name: str) -> None:
    from corpus.build import binary_stl

    response = client.post(f"/api/v1/patients/{world['patient']}/scans",
                           files={"file": ("s.stl", binary_stl(), "application/octet-stream")},
                           data={"arch": ALL[name][:2000].encode("utf-8", "surrogatepass")},
                           headers=world["headers"])
    assert (response.status_code, response.json()["code"]) == (400, "invalid_arch")


@pytest.mark.parametrize("name", list(ALL))
def test_dicomweb_query_parameters(client: TestClient, world: dict[str, Any], name: str
                                   ) -> None:
    value = ALL[name][:2000].encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    headers = {**world["headers"], "Accept": "application/dicom+json"}
    for params in ({"PatientName": value}, {"PatientID": value}, {"StudyInstanceUID": value},
                   {"StudyDate": value}, {"limit": value}, {"includefield": value},
                   {value[:50] or "x": "1"}):
        response = client.get("/dicomweb/studies", params=params, headers=headers)
        assert response.status_code in (200, 204, 400), (params, response.text)
    segment = quote(value[:200].encode("utf-8", "surrogatepass"), safe="")
    for path in (f"/dicomweb/studies/{segment}/metadata",
                 f"/api/v1/images/{segment}/thumbnail"):
        response = client.get(path, headers=headers)
        assert 400 <= response.status_code < 500, (path, response.text)


def test_gallery_still_answers(client: TestClient, world: dict[str, Any]) -> None:
    result = _gql(client, world["headers"], GALLERY, {"id": world["patient"], "first": 100})
    assert "errors" not in result
    assert result["data"]["patient"]["images"]["edges"]


@pytest.mark.parametrize("name", list(ALL))
def test_annotation_labels_and_text(client: TestClient, world: dict[str, Any], name: str
                                    ) -> None:
    """Annotation text is free text (kept verbatim, newlines included) but never a NUL,
    escape or bidi override; labels are one line."""
    value = ALL[name]
    result = _gql(client, world["headers"], """mutation($i: AddAnnotationInput!) {
        addAnnotation(input: $i) { id label } }""", {"i": {
        "imageId": world["image"], "kind": "text", "points": [[10.0, 10.0]],
        "label": value[:60], "text": value}})
    if name in SAFE:
        assert "errors" not in result, result
    elif name not in ("newline", "very-long"):
        assert _codes(result) and _codes(result)[0].startswith("invalid_"), result
    _read_models_keep_up(client, world)
    listed = _gql(client, world["headers"], """query($id: ID!) {
        imageAnnotations(imageId: $id) { id } }""", {"id": world["image"]})
    assert "errors" not in listed, listed


def test_every_graphql_string_refuses_nul_before_any_resolver(client: TestClient,
                                                             world: dict[str, Any]) -> None:
    """The guard covers fields no test above names (here: consent's grantedBy), variables
    nested in input objects and lists, and inline literals; nothing is stored."""
    headers = world["headers"]
    app = client.app.state.services.app
    head = app.recorder.max_notification_id()
    for query, variables in [
        ("""mutation($i: GrantConsentInput!) { grantConsent(input: $i) { id } }""",
         {"i": {"patientId": world["patient"], "scope": "CLINICAL_PHOTOGRAPHY",
                "grantedBy": "mum\x00"}}),
        ("""mutation($i: AlbumImagesInput!) { addImagesToAlbum(input: $i) { id } }""",
         {"i": {"albumId": str(uuid.uuid4()), "imageIds": [world["image"], "x\udcff"]}}),
        ('mutation { tagImage(input: {imageId: "' + world["image"]
         + '", tag: "a\\u0000b"}) { tags } }', {}),
    ]:
        assert _codes(_gql(client, headers, query, variables)) == ["invalid_text"]
    created = [n for n in app.recorder.select_notifications(start=head + 1, limit=1000)
               if world["patient"] in str(n.originator_id)]
    assert created == []
