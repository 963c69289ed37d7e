"""Every gallery filter, alone and combined, and a clear 400 for each bad filter value."""

from __future__ import annotations

from organisation_support import add_image, error_code, ok

from conftest import graphql, register_patient, wait_until

IMAGES = """query($id: ID!, $category: String, $view: String, $quality: String, $tag: String,
  $from: DateTime, $to: DateTime, $deleted: Boolean, $after: String) {
  patient(id: $id) { images(first: 50, category: $category, view: $view, quality: $quality,
    tag: $tag, capturedFrom: $from, capturedTo: $to, includeDeleted: $deleted, after: $after)
  { edges { node { id status quality { status } } } } } }"""
DELETE = """mutation($input: DeleteImageInput!) { deleteImage(input: $input) { id } }"""


def _at(day: str) -> str:
    return f"2026-{day}T10:00:00+00:00"


def test_each_filter(client, auth):
    doctor, admin = auth("doctor"), auth("clinic_admin")
    patient = register_patient(client, doctor)
    frontal = add_image(client, doctor, patient, view="IV07", tags="initial",
                        capturedAt=_at("01-10"))
    profile = add_image(client, doctor, patient, view="EV01", tags="debond",
                        capturedAt=_at("03-10"))
    xray = add_image(client, doctor, patient, category="radiograph", tags="debond",
                     capturedAt=_at("05-10"))
    deleted = add_image(client, doctor, patient, view="IV01", capturedAt=_at("02-10"))
    ok(client, admin, DELETE, {"input": {"imageId": deleted}})

    def ids(headers=doctor, **filters):
        page = ok(client, headers, IMAGES, {"id": patient, **filters})
        return [e["node"]["id"] for e in page["patient"]["images"]["edges"]]

    assert ids() == [xray, profile, frontal]
    assert ids(category="intraoral") == [frontal]
    assert ids(category="RADIOGRAPH") == [xray]
    assert ids(view="ev01") == [profile]
    assert ids(tag="Debond") == [xray, profile]
    assert ids(**{"from": _at("02-01"), "to": _at("05-10")}) == [profile]  # to is exclusive
    assert ids(**{"from": _at("05-10")}) == [xray]
    assert ids(deleted=True) == [xray, profile, deleted, frontal]
    assert ids(category="radiograph", tag="debond") == [xray]
    assert ids(auth("front_desk"), category="radiograph") == []  # never radiographs

    # Quality: once the worker has assessed the photos, the filter selects by status.
    def assessed():
        edges = ok(client, doctor, IMAGES, {"id": patient})["patient"]["images"]["edges"]
        photos = [e for e in edges if e["node"]["id"] != xray]
        return edges if all(e["node"]["quality"] for e in photos) else None

    statuses = {e["node"]["id"]: (e["node"]["quality"] or {}).get("status")
                for e in wait_until(assessed, timeout=60)}
    for status in ("pass", "warn", "fail"):
        assert set(ids(quality=status)) == {i for i, s in statuses.items() if s == status}


def test_bad_filters_are_clear_errors(client, auth):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    for filters, code in [
        ({"category": "xray"}, "invalid_category"),
        ({"view": "IV99"}, "unknown_view"),
        ({"quality": "meh"}, "invalid_quality"),
        ({"tag": "   "}, "invalid_tag"),
        ({"from": _at("03-01"), "to": _at("02-01")}, "invalid_date_range"),
        ({"after": "bm9wZQ"}, "invalid_cursor"),
    ]:
        assert error_code(client, doctor, IMAGES, {"id": patient, **filters}) == code, code
    unknown_field = graphql(client, doctor, """query($id: ID!) { patient(id: $id) {
        images(first: 5, colour: "red") { edges { node { id } } } } }""", {"id": patient})
    assert unknown_field["errors"][0]["extensions"]["code"] == "invalid_query"
    assert ok(client, doctor, IMAGES, {"id": patient})["patient"]["images"]["edges"] == []
