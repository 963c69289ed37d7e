"""The audit read model: who saw what and when, a hash chain that shows tampering, a chain
that survives crypto-shredding, and exports a compliance officer can check offline."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
import pytest
from eventsourcing.projection import ProjectionRunner

from adapters.event_store import PostgresImaging
from api.services import tracking_recorder
from conftest import (
    bearer,
    graphql,
    jpeg_bytes,
    register_patient,
    stored_events,
    token_for,
    upload,
    wait_until,
)
from domain.access import AccessRecord
from domain.errors import InvalidInput
from domain.events import ShreddedEvent
from projections.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditProjection,
    AuditView,
    seal,
    verify_against_log,
    verify_chain,
    verify_entries,
)
from projections.audit_export import (
    AUDIT_EVENT_TYPE,
    RESTFUL_INTERACTION,
    read_csv,
    read_jsonl,
    to_fhir_bundle,
    write_csv,
    write_jsonl,
)

IMAGE = """query($id: ID!){ image(id: $id){ id } }"""
TAG = """mutation($i: TagImageInput!){ tagImage(input: $i){ id } }"""
DESTROY = """mutation($i: DestroyImageInput!){ destroyImage(input: $i){ id } }"""
WAIT = 30.0


def _projection(prefix: str) -> type[AuditProjection]:
    # A name of its own per test run: never shares a chain with a runner the app may start.
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    return type(f"AuditProjection_{name}", (AuditProjection,), {"name": name})


def _runner(services, projection: type[AuditProjection]) -> ProjectionRunner:
    return ProjectionRunner(application_class=PostgresImaging, projection_class=projection,
                            view_class=AuditView, env=services.env)


def _head(services) -> int:
    return services.app.recorder.max_notification_id() or 0


def _caught_up(runner: ProjectionRunner, services) -> AuditView:
    runner.wait(_head(services), timeout=WAIT)
    return runner.view


@pytest.fixture(scope="module")
def services(client):
    return client.app.state.services


@pytest.fixture(scope="module")
def live(services) -> Iterator[ProjectionRunner]:
    """The audit projection running alongside the app for the whole module."""
    with _runner(services, _projection("audit_live")) as runner:
        yield runner


def _user(shared_settings, role: str, clinic: str, user: str) -> dict[str, str]:
    return bearer(token_for(shared_settings, role, clinic, user=user))


def _image_ready(services, clinic: str, *image_ids: str) -> None:
    # The read model, not GraphQL: a GraphQL read would itself be an audited view.
    wait_until(lambda: all(
        (image := services.gallery.image(clinic, UUID(i))) and image.has_derivatives
        for i in image_ids
    ))


def _upload(client, headers, patient_id: str, seed: int = 0) -> str:
    response = upload(client, headers, patient_id, jpeg_bytes(seed=seed))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _get(client, headers, image_id: str, kind: str, status: int = 200) -> None:
    assert client.get(f"/api/v1/images/{image_id}/{kind}", headers=headers).status_code == status


def test_who_viewed_a_patient_between_two_times(client, auth, clinic, shared_settings,
                                               services, live):
    admin = auth("clinic_admin")
    doctor = _user(shared_settings, "doctor", clinic, "dr-ana")
    reader = _user(shared_settings, "read_only", clinic, "ro-ben")
    staff = _user(shared_settings, "clinical_staff", clinic, "cs-cyd")
    outsider_clinic = f"{clinic}-other"
    outsider = _user(shared_settings, "clinic_admin", outsider_clinic, "oa-dan")
    patient_x = register_patient(client, admin)
    patient_y = register_patient(client, admin, given_name="Grace", family_name="Hopper")
    other_patient = register_patient(client, outsider)
    img1, img2 = _upload(client, doctor, patient_x, 1), _upload(client, doctor, patient_x, 2)
    img3 = _upload(client, staff, patient_y, 3)
    other_img = _upload(client, outsider, other_patient, 4)
    _image_ready(services, clinic, img1, img2, img3)
    _image_ready(services, outsider_clinic, other_img)
    assert "errors" not in graphql(client, doctor, TAG, {"i": {"imageId": img1, "tag": "pre"}})
    _get(client, reader, img1, "thumbnail")  # before the window

    t1 = datetime.now(UTC)
    _get(client, doctor, img1, "original")
    assert "errors" not in graphql(client, reader, IMAGE, {"id": img1})
    _get(client, staff, img2, "preview")
    _get(client, staff, img3, "thumbnail")  # another patient
    _get(client, outsider, other_img, "thumbnail")  # another clinic
    _get(client, outsider, img1, "original", status=404)  # refused: not an access
    t2 = datetime.now(UTC)
    _get(client, doctor, img2, "thumbnail")  # after the window

    view = _caught_up(live, services)
    seen = view.who_viewed(clinic, UUID(patient_x), t1, t2)
    assert [(v.user_id, v.role, v.kind, str(v.image_id)) for v in seen] == [
        ("dr-ana", "doctor", "original", img1),
        ("ro-ben", "read_only", "metadata", img1),
        ("cs-cyd", "clinical_staff", "preview", img2),
    ]
    recorded = sorted(
        (r.timestamp, r.actor.user_id, r.kind)
        for r in stored_events(client, AccessRecord.Recorded)
        if r.clinic_id == clinic and str(r.patient_id) == patient_x and t1 <= r.timestamp <= t2
    )
    assert [(v.at, v.user_id, v.kind) for v in seen] == recorded
    assert all(v.request_id for v in seen)
    # A wider window shows the views around it too, and still nothing of patient Y.
    wider = view.who_viewed(clinic, UUID(patient_x), t1 - timedelta(hours=1),
                            t2 + timedelta(hours=1))
    assert [(v.user_id, v.kind) for v in wider] == [
        ("ro-ben", "thumbnail"), ("dr-ana", "original"), ("ro-ben", "metadata"),
        ("cs-cyd", "preview"), ("dr-ana", "thumbnail"),
    ]
    # Another clinic cannot see this patient's history, even with the right id.
    assert view.who_viewed(outsider_clinic, UUID(patient_x), t1, t2) == []
    with pytest.raises(InvalidInput):
        view.who_viewed(clinic, UUID(patient_x), t2, t1)


def test_queries_filter_combine_and_page(client, auth, clinic, shared_settings, services,
                                         live):
    admin = auth("clinic_admin")
    doctor = _user(shared_settings, "doctor", clinic, "dr-eve")
    patient = register_patient(client, admin)
    image = _upload(client, doctor, patient)
    _image_ready(services, clinic, image)
    t_tag = datetime.now(UTC)
    for tag in ("a", "b", "c"):
        graphql(client, doctor, TAG, {"i": {"imageId": image, "tag": tag}})
    _get(client, doctor, image, "thumbnail")
    view = _caught_up(live, services)

    everything = list(view.iter_clinic(clinic))
    assert {e.clinic_id for e in everything} == {clinic}
    assert [e.action for e in everything if e.aggregate_type == "patient"] == [
        "patient.registered", "patient.consent_granted"]
    by_image = view.search(clinic, image_id=UUID(image)).entries
    by_people = [e for e in by_image if e.actor_user != "system:derivatives"
                 and e.action != "image.metadata_extracted"]
    assert [e.action for e in by_people] == [
        "image.captured", "image.tagged", "image.tagged", "image.tagged",
        "image.viewed.thumbnail"]
    assert all(e.patient_id == UUID(patient) for e in by_image)  # inherited by the tags
    processing = {e.action for e in by_image if e.actor_user == "system:derivatives"}
    assert {"image.quality_assessed", "image.derivatives_generated"} <= processing
    assert by_image[0].actor_role == "doctor" and by_image[0].request_id
    by_user = view.search(clinic, user_id="dr-eve").entries
    assert {e.action for e in by_user} - {"image.metadata_extracted"} == {
        "image.captured", "image.tagged", "image.viewed.thumbnail"}
    assert [e.action for e in view.search(clinic, action="image.viewed").entries] == [
        "image.viewed.thumbnail"]
    assert view.search(clinic, action="image.view").entries == []  # dotted prefix only
    combined = view.search(clinic, patient_id=UUID(patient), user_id="dr-eve",
                           action="image.tagged", since=t_tag, until=datetime.now(UTC))
    assert len(combined.entries) == 3 and not combined.has_next_page
    assert view.search(clinic, action="image.tagged", until=t_tag).entries == []

    pages, after = [], None
    while True:
        page = view.search(clinic, first=2, after=after)
        pages.append(page.entries)
        if not page.has_next_page:
            break
        after = page.end_position
    assert [e for p in pages for e in p] == everything
    assert all(len(p) == 2 for p in pages[:-1])
    newest = view.search(clinic, first=3, newest_first=True)
    older = view.search(clinic, first=3, newest_first=True, after=newest.end_position)
    assert newest.entries + older.entries == everything[::-1][:6]
    with pytest.raises(InvalidInput):
        view.search(clinic, first=0)
    with pytest.raises(InvalidInput):
        view.search("")


def test_queries_never_cross_clinics(client, auth, clinic, shared_settings, services, live):
    admin = auth("clinic_admin")
    other_clinic = f"{clinic}-b"
    other_admin = _user(shared_settings, "clinic_admin", other_clinic, "admin-b")
    patient = register_patient(client, admin)
    image = _upload(client, admin, patient)
    other_patient = register_patient(client, other_admin)
    other_image = _upload(client, other_admin, other_patient)
    # The other clinic probing this clinic's image changes nothing and records nothing.
    probe = graphql(client, other_admin, TAG, {"i": {"imageId": image, "tag": "x"}})
    assert probe["errors"][0]["extensions"]["code"] == "image_not_found"
    _get(client, other_admin, image, "original", status=404)
    _get(client, admin, image, "original")
    _get(client, other_admin, other_image, "original")
    view = _caught_up(live, services)

    mine, theirs = list(view.iter_clinic(clinic)), list(view.iter_clinic(other_clinic))
    assert mine and theirs
    assert {e.clinic_id for e in mine} == {clinic}
    assert {e.clinic_id for e in theirs} == {other_clinic}
    assert UUID(image) not in {e.image_id for e in theirs}
    assert "admin-b" not in {e.actor_user for e in mine}
    for kwargs in ({"patient_id": UUID(patient)}, {"image_id": UUID(image)},
                   {"user_id": "user-clinic_admin"}):
        assert view.search(other_clinic, **kwargs).entries == []
    assert view.search(clinic, patient_id=UUID(other_patient)).entries == []
    assert view.who_viewed(other_clinic, UUID(patient), datetime(2000, 1, 1, tzinfo=UTC),
                           datetime.now(UTC)) == []


def _set(database_url: str, table: str, position: int, assignment: str, *params) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'UPDATE "{table}" SET {assignment} WHERE position = %s',
                     (*params, position))


def test_tampering_is_detected(client, auth, clinic, shared_settings, services):
    admin = auth("clinic_admin")
    patient = register_patient(client, admin)
    image = _upload(client, admin, patient)
    _get(client, admin, image, "original")
    projection = _projection("audit_tamper")
    with _runner(services, projection) as runner:
        _caught_up(runner, services)
    view = tracking_recorder(services.env, projection.name, AuditView)
    table = f"{projection.name}_entries"
    url = shared_settings.database_url
    try:
        intact = verify_chain(view)
        assert intact.ok and intact.checked >= 5 and intact.head_hash
        assert intact.head_position == view.max_tracking_id(services.app.name)
        assert verify_against_log(view, services.app).ok
        ours = view.search(clinic, image_id=UUID(image)).entries
        target = ours[0]
        entries = list(view.iter_all())
        after_target = entries[entries.index(target) + 1]

        # An edited column breaks that entry's own hash.
        _set(url, table, target.position, "actor_user = %s", "someone-else")
        broken = verify_chain(view)
        assert not broken.ok and broken.first_broken_position == target.position
        assert "content" in broken.reason
        _set(url, table, target.position, "actor_user = %s", target.actor_user)
        assert verify_chain(view).ok

        # A deleted entry breaks the link of the entry after it.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DELETE FROM "{table}" WHERE position = %s', (target.position,))
        broken = verify_chain(view)
        assert not broken.ok and broken.first_broken_position == after_target.position
        assert "missing" in broken.reason

        # Relinking everything after the gap fools the chain, not the event log.
        prev = entries[entries.index(target) - 1].entry_hash
        for entry in entries[entries.index(target) + 1:]:
            relinked = seal(entry, prev)
            _set(url, table, entry.position, "prev_hash = %s, entry_hash = %s",
                 relinked.prev_hash, relinked.entry_hash)
            prev = relinked.entry_hash
        assert verify_chain(view).ok
        against_log = verify_against_log(view, services.app)
        assert not against_log.ok and against_log.first_broken_position == target.position

        # Cutting the end of the chain is caught against the tracking position.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DELETE FROM "{table}" WHERE position = %s', (entries[-1].position,))
        broken = verify_chain(view)
        assert not broken.ok and broken.first_broken_position == entries[-1].position
    finally:
        view.datastore.close()


def test_chain_survives_destruction_and_rebuild(client, auth, clinic, services, live):
    admin = auth("clinic_admin")
    patient = register_patient(client, admin)
    image = _upload(client, admin, patient, 5)
    kept = _upload(client, admin, patient, 6)
    _image_ready(services, clinic, image, kept)
    graphql(client, admin, TAG, {"i": {"imageId": image, "tag": "sensitive-tag"}})
    _get(client, admin, image, "thumbnail")
    view = _caught_up(live, services)  # the live projection saw the events decrypted
    before = view.search(clinic, image_id=UUID(image)).entries

    reason = "Patient Jane Roe asked for erasure"
    assert "errors" not in graphql(client, admin, DESTROY,
                                   {"i": {"imageId": image, "reason": reason}})
    assert isinstance(next(iter(services.app.events.get(UUID(image)))), ShreddedEvent)
    view = _caught_up(live, services)
    after = view.search(clinic, image_id=UUID(image)).entries
    assert after[:len(before)] == before
    assert after[-1].action == "image.destroyed"
    assert after[-1].reason_category == "other"  # free text never reaches the audit
    assert after[-1].patient_id == UUID(patient)
    assert verify_chain(view).ok

    head = view.max_tracking_id(services.app.name)
    with _runner(services, _projection("audit_rebuild")) as rebuild:
        rebuild.wait(head, timeout=WAIT)
        rebuilt = list(rebuild.view.iter_all(stop=head))
    assert rebuilt == list(view.iter_all(stop=head))
    assert verify_against_log(view, services.app).ok


def test_reason_categories_keep_known_codes_only(client, auth, clinic, services, live):
    admin = auth("clinic_admin")
    patient = register_patient(client, admin)
    image = _upload(client, admin, patient)
    graphql(client, admin, DESTROY, {"i": {"imageId": image, "reason": "Retention expired"}})
    view = _caught_up(live, services)
    destroyed = view.search(clinic, image_id=UUID(image), action="image.destroyed").entries
    assert [e.reason_category for e in destroyed] == ["retention_expired"]


def test_exports_round_trip_and_fhir_shape(client, auth, clinic, shared_settings, services,
                                           live):
    admin = auth("clinic_admin")
    # A user id a spreadsheet would run as a formula.
    formula = _user(shared_settings, "doctor", clinic, "=HYPERLINK(\"x\")")
    patient = register_patient(client, admin, given_name="Zelda", family_name="Marker")
    image = _upload(client, formula, patient)
    _image_ready(services, clinic, image)
    _get(client, formula, image, "original")
    graphql(client, admin, DESTROY, {"i": {"imageId": image, "reason": "duplicate"}})
    view = _caught_up(live, services)
    entries = list(view.iter_clinic(clinic))
    assert any(e.actor_user == "=HYPERLINK(\"x\")" for e in entries)

    csv_text = io.StringIO()
    assert write_csv(entries, csv_text) == len(entries)
    assert "\n=" not in csv_text.getvalue() and ",=" not in csv_text.getvalue()
    assert list(read_csv(io.StringIO(csv_text.getvalue()))) == entries
    jsonl = io.StringIO()
    write_jsonl(entries, jsonl)
    assert list(read_jsonl(io.StringIO(jsonl.getvalue()))) == entries
    # One clinic's export is a subset of the chain: each entry still proves its content.
    assert verify_entries(read_jsonl(io.StringIO(jsonl.getvalue())), linked=False).ok
    forged = [*entries[:-1], replace(entries[-1], actor_user="x")]
    assert not verify_entries(forged, linked=False).ok
    for text in (csv_text.getvalue(), jsonl.getvalue()):
        assert "Zelda" not in text and "Marker" not in text and "photo.jpg" not in text

    bundle = to_fhir_bundle(entries)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    assert "Zelda" not in json.dumps(bundle)
    resources = [item["resource"] for item in bundle["entry"]]
    assert len(resources) == len(entries)
    assert len({item["fullUrl"] for item in bundle["entry"]}) == len(entries)
    for resource in resources:
        assert resource["resourceType"] == "AuditEvent"
        assert resource["type"]["system"] == AUDIT_EVENT_TYPE
        assert resource["type"]["code"] == "rest"
        (subtype,) = resource["subtype"]
        assert subtype["system"] == RESTFUL_INTERACTION
        assert subtype["code"] in {"create", "read", "update", "delete", "vread"}
        assert resource["action"] in {"C", "R", "U", "D", "E"}
        assert resource["outcome"] == "0"
        assert datetime.fromisoformat(resource["recorded"]).tzinfo is not None
        assert resource["agent"] and all(isinstance(a["requestor"], bool)
                                         for a in resource["agent"])
        assert resource["agent"][0]["who"]["identifier"]["value"]
        assert resource["source"]["observer"]["display"] == "orthovault"
        assert resource["source"]["site"] == clinic
        assert all(e["what"]["identifier"]["value"] for e in resource["entity"])
    by_action = {e.action: r for e, r in zip(entries, resources, strict=True)}
    viewed = by_action["image.viewed.original"]
    assert (viewed["action"], viewed["subtype"][0]["code"]) == ("R", "read")
    assert viewed["agent"][0]["who"]["identifier"] == {
        "system": "urn:orthovault:user", "value": "=HYPERLINK(\"x\")"}
    identifiers = {e["what"]["identifier"]["system"]: e["what"]["identifier"]["value"]
                   for e in viewed["entity"]}
    assert identifiers["urn:orthovault:image"] == image
    assert identifiers["urn:orthovault:patient"] == patient
    assert by_action["image.captured"]["action"] == "C"
    assert by_action["image.derivatives_generated"]["action"] == "U"
    assert (by_action["image.destroyed"]["action"],
            by_action["image.destroyed"]["subtype"][0]["code"]) == ("D", "delete")
    searchset = to_fhir_bundle(entries[:2], "searchset")
    assert searchset["total"] == 2
    assert all(item["search"]["mode"] == "match" for item in searchset["entry"])


def test_entries_hash_canonically():
    entry = AuditEntry(
        position=7, occurred_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC), clinic_id="c1",
        actor_user="u1", actor_role="doctor", request_id=None, action="image.tagged",
        aggregate_type="image", aggregate_id=UUID(int=1), aggregate_version=2,
        patient_id=UUID(int=2), image_id=UUID(int=1), reason_category=None,
    )
    sealed = seal(entry, GENESIS_HASH)
    canonical = json.dumps({k: v for k, v in sealed.as_record().items()
                            if k not in ("prev_hash", "entry_hash")},
                           sort_keys=True, separators=(",", ":")).encode()
    assert sealed.entry_hash == hashlib.sha256(GENESIS_HASH.encode() + canonical).hexdigest()
    assert b'"occurred_at":"2024-05-01T12:00:00.000000+00:00"' in canonical
    second = seal(replace(entry, position=8), sealed.entry_hash)
    assert verify_entries([sealed, second]).ok
    assert verify_entries([second]).first_broken_position == 8
