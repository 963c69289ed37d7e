"""Saved searches (smart albums) through GraphQL: stored, re-run on open with current counts,
events like every organisation change; who may create and see them; tenancy and privacy."""

from __future__ import annotations

import pytest
from organisation_support import add_image, error_code, ok, searchable

from conftest import bearer, graphql, register_patient, stored_events, token_for

FIELDS = """id name query shared filter { category view tag capturedFrom capturedTo } count"""
CREATE = f"""mutation($i: CreateSavedSearchInput!) {{ createSavedSearch(input: $i) {{
    {FIELDS} }} }}"""
RENAME = f"""mutation($i: RenameSavedSearchInput!) {{ renameSavedSearch(input: $i) {{
    {FIELDS} }} }}"""
UPDATE = f"""mutation($i: UpdateSavedSearchInput!) {{ updateSavedSearch(input: $i) {{
    {FIELDS} }} }}"""
DELETE = """mutation($i: SavedSearchIdInput!) { deleteSavedSearch(input: $i) }"""
LIST = f"""query {{ savedSearches {{ {FIELDS} }} albums {{ id name imageCount }} }}"""
OPEN = f"""query($id: ID!) {{ savedSearch(id: $id) {{ {FIELDS}
    results(first: 20) {{ edges {{ node {{ snippet image {{ id category thumbnailUrl }} }} }}
                          corrections {{ word terms }} }} }} }}"""
NOTE = """mutation($input: AddImageNoteInput!) { addImageNote(input: $input) { id } }"""


def _ids(opened):
    return [e["node"]["image"]["id"] for e in opened["results"]["edges"]]


@pytest.fixture
def debonds(client, auth):
    """A doctor's practice: two debond photos and a debond radiograph of Ada Lovelace."""
    doctor = auth("doctor")
    ada = register_patient(client, doctor, given_name="Ada", family_name="Lovelace")
    made = {"doctor": doctor, "ada": ada,
            "photo": add_image(client, doctor, ada, tags="debond"),
            "xray": add_image(client, doctor, ada, category="radiograph", tags="debond")}
    searchable(client)
    return made


def _create(client, headers, **fields):
    return ok(client, headers, CREATE, {"i": {"name": "Debonds", "query": "debond",
                                              **fields}})["createSavedSearch"]


def test_a_saved_search_reruns_on_open_with_current_counts(client, debonds):
    doctor = debonds["doctor"]
    saved = _create(client, doctor, shared=True)
    assert saved["shared"] is True and saved["count"] == 2 and saved["query"] == "debond"
    listed = ok(client, doctor, LIST, {})["savedSearches"]
    assert [(s["id"], s["count"]) for s in listed] == [(saved["id"], 2)]
    # Re-run on open: a new match is found and counted, nothing was stored as a result.
    later = add_image(client, doctor, debonds["ada"], tags="debond")
    searchable(client)
    opened = ok(client, doctor, OPEN, {"id": saved["id"]})["savedSearch"]
    assert opened["count"] == 3
    assert set(_ids(opened)) == {debonds["photo"], debonds["xray"], later}
    # Typos are forgiven in a saved query as in search.
    typo = _create(client, doctor, name="Typo", query="Lovelcae debnod")
    assert typo["count"] == 3
    # Rename; change the query's filters (radiographs only); delete.
    renamed = ok(client, doctor, RENAME, {"i": {"savedSearchId": saved["id"],
                                                "name": "Debond x-rays"}})["renameSavedSearch"]
    assert renamed["name"] == "Debond x-rays"
    updated = ok(client, doctor, UPDATE, {"i": {"savedSearchId": saved["id"], "query": "ada",
                                                "filter": {"category": "radiograph"}}}
                 )["updateSavedSearch"]
    assert updated["filter"]["category"] == "radiograph" and updated["count"] == 1
    opened = ok(client, doctor, OPEN, {"id": saved["id"]})["savedSearch"]
    assert _ids(opened) == [debonds["xray"]] and opened["name"] == "Debond x-rays"
    assert ok(client, doctor, DELETE, {"i": {"savedSearchId": saved["id"]}}) == {
        "deleteSavedSearch": saved["id"]}
    assert error_code(client, doctor, OPEN, {"id": saved["id"]}) == "saved_search_not_found"
    assert [s["name"] for s in ok(client, doctor, LIST, {})["savedSearches"]] == ["Typo"]
    # Every change is an event on the saved search's own aggregate.
    from domain.saved_search import SavedSearch

    mine = lambda cls: [e for e in stored_events(client, cls)  # noqa: E731
                        if e.originator_id.hex == saved["id"].replace("-", "")]
    assert [len(mine(c)) for c in (SavedSearch.Created, SavedSearch.Renamed,
                                   SavedSearch.QueryChanged, SavedSearch.Deleted)] == [1] * 4


def test_filters_narrow_a_saved_search(client, debonds):
    doctor = debonds["doctor"]
    saved = _create(client, doctor, filter={"category": "photo", "tag": "debond",
                                            "capturedFrom": "2000-01-01T00:00:00+00:00",
                                            "capturedTo": "2999-01-01T00:00:00+00:00"})
    assert saved["filter"]["tag"] == "debond" and saved["count"] == 1
    assert _ids(ok(client, doctor, OPEN, {"id": saved["id"]})["savedSearch"]) == [
        debonds["photo"]]
    empty = _create(client, doctor, filter={"capturedTo": "2000-01-01T00:00:00+00:00"})
    assert empty["count"] == 0


def test_running_one_obeys_the_callers_role(client, debonds, auth):
    """A doctor's shared smart album: front desk sees no radiograph in it, billing no pixels,
    neither matches on notes."""
    doctor = debonds["doctor"]
    ok(client, doctor, NOTE, {"input": {"imageId": debonds["photo"],
                                        "text": "bracket lost twice"}})
    saved = _create(client, doctor, shared=True)
    by_note = _create(client, doctor, name="Notes", query="bracket", shared=True)
    front_desk, billing, read_only = auth("front_desk"), auth("billing"), auth("read_only")
    opened = ok(client, front_desk, OPEN, {"id": saved["id"]})["savedSearch"]
    assert _ids(opened) == [debonds["photo"]] and opened["count"] == 1
    opened = ok(client, billing, OPEN, {"id": saved["id"]})["savedSearch"]
    assert set(_ids(opened)) == {debonds["photo"], debonds["xray"]}
    assert all(e["node"]["image"]["thumbnailUrl"] is None
               for e in opened["results"]["edges"])
    for role in (front_desk, billing):
        noted = ok(client, role, OPEN, {"id": by_note["id"]})["savedSearch"]
        assert noted["count"] == 0 and noted["results"]["edges"] == []
    assert ok(client, doctor, OPEN, {"id": by_note["id"]})["savedSearch"]["count"] == 1
    # Listing and running need a view grade; creating and changing follow the albums.
    for role in (front_desk, billing, read_only):
        assert [s["id"] for s in ok(client, role, LIST, {})["savedSearches"]] == [
            saved["id"], by_note["id"]]  # by name
        assert error_code(client, role, CREATE, {"i": {"name": "x", "query": "ada"}}) == \
            "permission_denied"
        assert error_code(client, role, RENAME, {"i": {"savedSearchId": saved["id"],
                                                       "name": "x"}}) == "permission_denied"
        assert error_code(client, role, DELETE, {"i": {"savedSearchId": saved["id"]}}) == \
            "permission_denied"
    staff = auth("clinical_staff")
    ok(client, staff, RENAME, {"i": {"savedSearchId": saved["id"], "name": "Renamed"}})
    assert _create(client, staff)["count"] == 2


def test_a_private_saved_search_is_its_owners_alone(client, debonds, clinic, shared_settings):
    doctor = debonds["doctor"]
    private = _create(client, doctor, name="Mine")
    assert private["shared"] is False
    colleague = bearer(token_for(shared_settings, "doctor", clinic, user="dr-colleague"))
    admin = bearer(token_for(shared_settings, "clinic_admin", clinic, user="the-admin"))
    for other in (colleague, admin):
        assert ok(client, other, LIST, {})["savedSearches"] == []
        assert error_code(client, other, OPEN, {"id": private["id"]}) == \
            "saved_search_not_found"
        for mutation, extra in ((RENAME, {"name": "x"}), (UPDATE, {"query": "x"}),
                                (DELETE, {})):
            assert error_code(client, other, mutation, {"i": {
                "savedSearchId": private["id"], **extra}}) == "saved_search_not_found"
    assert [s["id"] for s in ok(client, doctor, LIST, {})["savedSearches"]] == [private["id"]]


def test_another_clinic_never_finds_one(client, debonds, auth):
    shared = _create(client, debonds["doctor"], shared=True)
    theirs = auth("super_admin", clinic_id="clinic-saved-elsewhere")
    assert ok(client, theirs, LIST, {})["savedSearches"] == []
    assert error_code(client, theirs, OPEN, {"id": shared["id"]}) == "saved_search_not_found"
    for mutation, extra in ((RENAME, {"name": "x"}), (UPDATE, {"query": "x"}), (DELETE, {})):
        assert error_code(client, theirs, mutation, {"i": {
            "savedSearchId": shared["id"], **extra}}) == "saved_search_not_found"
    # Their own saved search with the same query finds none of this clinic's images.
    assert _create(client, theirs, shared=True)["count"] == 0
    assert ok(client, debonds["doctor"], OPEN, {"id": shared["id"]})["savedSearch"][
        "name"] == "Debonds"


@pytest.mark.parametrize("fields,code", [
    ({"query": "&& !!"}, "empty_query"),
    ({"query": "x" * 201}, "query_too_long"),
    ({"name": " "}, "invalid_saved_search_name"),
    ({"name": "n" * 121}, "invalid_saved_search_name"),
    ({"filter": {"category": "selfie"}}, "invalid_category"),
    ({"filter": {"view": "XX99"}}, "unknown_view"),
    ({"filter": {"capturedFrom": "2024-01-02T00:00:00Z",
                 "capturedTo": "2024-01-01T00:00:00Z"}}, "invalid_date_range"),
])
def test_bad_input_is_a_clear_error_and_stores_nothing(client, auth, fields, code):
    doctor = auth("doctor")
    assert error_code(client, doctor, CREATE, {"i": {"name": "n", "query": "ada",
                                                     **fields}}) == code
    assert ok(client, doctor, LIST, {})["savedSearches"] == []
    assert error_code(client, doctor, OPEN, {"id": "not-a-uuid"}) == "invalid_id"
    assert "errors" not in graphql(client, doctor, LIST, {})


def test_hostile_names_and_queries_are_stored_verbatim_or_refused(client, auth):
    """Names and queries read back as sent (whitespace normalised) or get a stable 4xx
    code; nothing is interpreted as SQL or tsquery, and the read model keeps up."""
    from corpus.build import HOSTILE_STRINGS, UNPRINTABLE_STRINGS

    doctor = auth("doctor")
    unprintable = {k: v for k, v in UNPRINTABLE_STRINGS.items()
                   if k != "lone-surrogate-escape"}  # refused for every field (TextGuard)
    for name, value in {**HOSTILE_STRINGS, **unprintable}.items():
        for field in ("name", "query"):
            fields = {"name": "n", "query": "ada", field: value}
            result = graphql(client, doctor, CREATE, {"i": fields})
            if "errors" in result:
                code = result["errors"][0]["extensions"]["code"]
                assert code.startswith("invalid_") or code in ("empty_query",), (name, code)
                assert name in UNPRINTABLE_STRINGS or field == "query", (name, field, code)
            else:
                saved = result["data"]["createSavedSearch"]
                assert saved[field] == " ".join(value.split()), (name, field)
                assert name in HOSTILE_STRINGS or name == "newline", (name, field)
    listed = ok(client, doctor, LIST, {})["savedSearches"]
    assert {s["name"] for s in listed} >= {" ".join(v.split()) for v in HOSTILE_STRINGS.values()}
