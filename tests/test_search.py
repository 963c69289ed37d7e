"""Search: ranking, typo tolerance, clinic and role restrictions, bad input."""

from __future__ import annotations

import pytest
from organisation_support import add_image, error_code, ok

from conftest import graphql, register_patient

SEARCH = """query($q: String!, $first: Int, $after: String) {
  search(query: $q, first: $first, after: $after) {
    edges { cursor node { score snippet image { id category thumbnailUrl originalUrl } } }
    pageInfo { hasNextPage endCursor }
    patients { id name externalId }
    corrections { word terms }
    facets { category { value count } view { value count } }
  } }"""
NOTE = """mutation($input: AddImageNoteInput!) { addImageNote(input: $input) { id } }"""
TAG = """mutation($input: TagImageInput!) { tagImage(input: $input) { id tags } }"""
CREATE_ALBUM = """mutation($input: CreateAlbumInput!) { createAlbum(input: $input) { id } }"""
ADD = """mutation($input: AlbumImagesInput!) { addImagesToAlbum(input: $input) { id } }"""
RENAME = """mutation($input: RenameAlbumInput!) { renameAlbum(input: $input) { id } }"""
DESTROY = """mutation($input: DestroyImageInput!) { destroyImage(input: $input) { id } }"""


def search(client, headers, q, **variables):
    return ok(client, headers, SEARCH, {"q": q, **variables})["search"]


def hit_ids(result):
    return [e["node"]["image"]["id"] for e in result["edges"]]


@pytest.fixture
def practice(client, auth):
    """Ada Lovelace's records, Grace Hopper's image tagged "lovelace", and a note."""
    doctor = auth("doctor")
    ada = register_patient(client, doctor, given_name="Ada", family_name="Lovelace")
    grace = register_patient(client, doctor, given_name="Grace", family_name="Hopper")
    ada_photo = add_image(client, doctor, ada, view="IV24", tags="debond")
    ada_xray = add_image(client, doctor, ada, category="radiograph", tags="panoramic")
    grace_tagged = add_image(client, doctor, grace, tags="lovelace")
    grace_noted = add_image(client, doctor, grace, view="IV07")
    ok(client, doctor, NOTE, {"input": {"imageId": grace_noted,
                                        "text": "Lovelace style bracket debonded early"}})
    return {"doctor": doctor, "ada": ada, "grace": grace, "ada_photo": ada_photo,
            "ada_xray": ada_xray, "grace_tagged": grace_tagged, "grace_noted": grace_noted}


def test_ranking_name_over_tag_over_note(client, practice):
    result = search(client, practice["doctor"], "lovelace")
    ids = hit_ids(result)
    assert set(ids[:2]) == {practice["ada_photo"], practice["ada_xray"]}  # name (weight A)
    assert ids[2:] == [practice["grace_tagged"], practice["grace_noted"]]  # tag B, note D
    scores = [e["node"]["score"] for e in result["edges"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[2] > scores[3]
    assert [p["name"] for p in result["patients"]] == ["Ada Lovelace"]
    assert "«Lovelace»" in result["edges"][0]["node"]["snippet"]
    # Several words must all match: Ada's debond photo only.
    assert hit_ids(search(client, practice["doctor"], "ada debond")) == [practice["ada_photo"]]
    # Prefixes match while typing.
    assert practice["ada_photo"] in hit_ids(search(client, practice["doctor"], "lovel"))


def test_typo_tolerance(client, practice):
    doctor = practice["doctor"]
    result = search(client, doctor, "Lovlace")
    assert {"word": "lovlace", "terms": ["lovelace"]} in result["corrections"]
    assert set(hit_ids(result)[:2]) == {practice["ada_photo"], practice["ada_xray"]}
    assert set(hit_ids(search(client, doctor, "grace hoper"))) == {
        practice["grace_noted"], practice["grace_tagged"]}
    # View names are searchable, with typos too: the upper occlusal photo.
    assert hit_ids(search(client, doctor, "uper oclusal")) == [practice["ada_photo"]]
    # An exact spelling outranks a typo-corrected match of the same field.
    assert search(client, doctor, "lovelace")["edges"][0]["node"]["score"] > \
        result["edges"][0]["node"]["score"]


def test_roles_limit_what_is_found(client, practice, auth):
    front_desk, billing = auth("front_desk"), auth("billing")
    # Notes are clinical: only roles with full view match on them.
    assert hit_ids(search(client, practice["doctor"], "bracket")) == [practice["grace_noted"]]
    for role in (front_desk, billing):
        assert search(client, role, "bracket")["edges"] == []
        snippets = " ".join(e["node"]["snippet"] for e in search(client, role, "grace")["edges"])
        assert "bracket" not in snippets.lower()
    # Front desk never finds radiographs; billing finds their metadata, never pixels.
    assert hit_ids(search(client, front_desk, "panoramic")) == []
    billing_hits = search(client, billing, "panoramic")["edges"]
    assert [e["node"]["image"]["id"] for e in billing_hits] == [practice["ada_xray"]]
    assert billing_hits[0]["node"]["image"]["originalUrl"] is None
    assert billing_hits[0]["node"]["image"]["thumbnailUrl"] is None
    assert practice["ada_xray"] in hit_ids(search(client, practice["doctor"], "panoramic"))


def test_another_clinic_never_appears(client, practice, auth):
    other = auth("doctor", "clinic-search-other")
    twin = register_patient(client, other, given_name="Ada", family_name="Lovelace")
    twin_image = add_image(client, other, twin, tags="zebedee")
    mine = search(client, practice["doctor"], "lovelace")
    assert twin_image not in hit_ids(mine) and twin not in [p["id"] for p in mine["patients"]]
    theirs = search(client, other, "lovelace")
    assert hit_ids(theirs) == [twin_image]
    assert [p["id"] for p in theirs["patients"]] == [twin]
    # Their words do not even leak as spelling suggestions.
    assert search(client, practice["doctor"], "zebadee")["corrections"] == []
    assert search(client, other, "zebadee")["corrections"] == [
        {"word": "zebadee", "terms": ["zebedee"]}]


def test_albums_and_read_your_writes(client, practice):
    doctor = practice["doctor"]
    album = ok(client, doctor, CREATE_ALBUM, {"input": {"name": "Smile makeover"}})
    album_id = album["createAlbum"]["id"]
    ok(client, doctor, ADD, {"input": {"albumId": album_id,
                                       "imageIds": [practice["grace_tagged"]]}})
    assert hit_ids(search(client, doctor, "makeover")) == [practice["grace_tagged"]]
    ok(client, doctor, RENAME, {"input": {"albumId": album_id, "name": "Veneers"}})
    assert search(client, doctor, "makeover")["edges"] == []
    assert hit_ids(search(client, doctor, "veneers")) == [practice["grace_tagged"]]
    # A tag added is findable by the very next query.
    ok(client, doctor, TAG, {"input": {"imageId": practice["ada_photo"], "tag": "crossbite"}})
    assert hit_ids(search(client, doctor, "crossbite")) == [practice["ada_photo"]]


def test_pages_facets_and_destruction(client, practice, auth):
    doctor, admin = practice["doctor"], auth("clinic_admin")
    first = search(client, doctor, "lovelace", first=2)
    assert first["pageInfo"]["hasNextPage"] is True
    second = search(client, doctor, "lovelace", first=2, after=first["pageInfo"]["endCursor"])
    assert hit_ids(first) + hit_ids(second) == hit_ids(search(client, doctor, "lovelace"))
    assert second["pageInfo"]["hasNextPage"] is False
    facets = first["facets"]
    assert {f["value"]: f["count"] for f in facets["category"]} == {
        "intraoral": 2, "radiograph": 1, "photo": 1}
    # A destroyed image and its tag words vanish from search.
    ok(client, admin, DESTROY, {"input": {"imageId": practice["ada_xray"], "reason": "test"}})
    assert search(client, doctor, "panoramic")["edges"] == []
    assert search(client, doctor, "panoramc")["corrections"] == []


@pytest.mark.parametrize("query", [
    "lovelace & | ! :* ( ) <-> 'x'", "'; DROP TABLE search_v1_images; --", "lovelace:*A",
    "\\x00 lovelace %", "ÄDA lovelace",
])
def test_query_syntax_is_matched_literally(client, practice, query):
    result = graphql(client, practice["doctor"], SEARCH, {"q": query})
    assert "errors" not in result, result


@pytest.mark.parametrize("variables,code", [
    ({"q": "x" * 201}, "query_too_long"),
    ({"q": "&& || !!"}, "empty_query"),
    ({"q": "one two three four five six seven eight nine"}, "too_many_words"),
    ({"q": "ada", "after": "not-a-cursor"}, "invalid_cursor"),
    ({"q": "ada", "first": 0}, "invalid_page_size"),
    ({"q": "ada", "first": 101}, "invalid_page_size"),
])
def test_bad_input_is_a_clear_error(client, auth, variables, code):
    headers = auth("doctor")
    assert error_code(client, headers, SEARCH, variables) == code
    assert "errors" not in graphql(client, headers, SEARCH, {"q": "still serving"})


def test_unauthenticated_is_refused(client):
    response = client.post("/graphql", json={"query": SEARCH, "variables": {"q": "ada"}})
    assert response.status_code == 401 and response.json()["code"] == "missing_token"


def test_corrected_demographics_replace_the_old_name(client, practice, clinic):
    from datetime import date
    from uuid import UUID

    from domain.patient_sync import Demographics
    from domain.values import Actor

    services = client.app.state.services
    actor = Actor("system:crm", "clinic_admin", clinic)
    upserted = services.app.upsert_patient(actor, UUID(practice["ada"]), Demographics.checked(
        external_id="P-42", given_name="Augusta", family_name="King", birth_date=date(2012, 4, 1),
        sex="female", guardian=None))
    assert services.wait_for_read_models(upserted.position)
    doctor = practice["doctor"]
    assert search(client, doctor, "lovelace")["patients"] == []
    assert set(hit_ids(search(client, doctor, "lovelace"))) == {
        practice["grace_tagged"], practice["grace_noted"]}  # Grace's tag and note remain
    found = search(client, doctor, "augusta king")
    assert set(hit_ids(found)) == {practice["ada_photo"], practice["ada_xray"]}
    assert [p["name"] for p in found["patients"]] == ["Augusta King"]
    assert search(client, doctor, "augsta")["corrections"] == [
        {"word": "augsta", "terms": ["augusta"]}]
