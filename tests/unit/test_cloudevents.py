"""Thin CloudEvents: exactly the allowlisted fields, and never any PHI."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import get_topic

from adapters.cloudevents import (
    InvalidCloudEvent,
    KafkaRecord,
    Owner,
    encode,
    parse_record,
    to_cloudevent,
)
from domain.access import AccessRecord
from domain.events import ShreddedEvent
from domain.image import Image as ImageAggregate
from domain.patient import Patient
from domain.values import Actor, BlobRef, Guardian

MARKER = "ZZPHIMARKER"
BIRTH = date(1901, 2, 3)
ACTOR = Actor(user_id="user-doc", role="doctor", clinic_id="clinic-a", request_id="req-1")


def _patient_events() -> tuple[Patient, list[Any]]:
    patient = Patient(
        clinic_id="clinic-a", external_id=f"EXT-{MARKER}", given_name=f"Given{MARKER}",
        family_name=f"Family{MARKER}", birth_date=BIRTH, sex="female",
        guardian=Guardian(name=f"Guardian{MARKER}", relationship="mother", phone=MARKER),
        actor=ACTOR,
    )
    patient.grant_consent(scope="clinical_photography", granted_by="guardian",
                          granted_at=datetime.now(UTC), expires_at=None, actor=ACTOR)
    patient.revoke_consent(scope="clinical_photography", actor=ACTOR)
    return patient, patient.collect_events()


def _image_events(patient_id: uuid.UUID) -> list[Any]:
    image = ImageAggregate(
        image_id=uuid.uuid4(), clinic_id="clinic-a", patient_id=patient_id,
        original=BlobRef(key=f"x/{MARKER}.jpg", sha256="0" * 64, size=3, media_type="image/jpeg"),
        width=10, height=10, category="intraoral", view="IV07",
        captured_at=datetime(1901, 2, 3, tzinfo=UTC),
        tags=[f"tag{MARKER}", f"other{MARKER}"], filename=f"{MARKER}.jpg", actor=ACTOR,
        category_source="user",
    )
    image.tag(tag=f"new{MARKER}", actor=ACTOR)
    image.untag(tag=f"new{MARKER}", actor=ACTOR)
    image.categorise(category="radiograph", view=f"free text {MARKER}", source=MARKER,
                     confidence=0.8123, actor=ACTOR)
    image.record_derivatives(derivatives={"thumbnail": BlobRef(f"k/{MARKER}", "0", 1, "x")},
                             actor=ACTOR)
    image.record_processing_failure(stage="derivatives", code="OSError", actor=ACTOR)
    image.soft_delete(reason=f"reason {MARKER}", actor=ACTOR)
    image.restore(actor=ACTOR)
    image.destroy(clinic_id="clinic-a", patient_id=patient_id, reason=f"why {MARKER}",
                  actor=ACTOR)
    return image.collect_events()


def _all_bytes(record: KafkaRecord) -> bytes:
    return b"|".join([record.topic.encode(), record.key, record.value,
                      *(name.encode() + b"=" + value for name, value in record.headers)])


def test_no_phi_in_any_encoded_event() -> None:
    patient, patient_events = _patient_events()
    events = patient_events + _image_events(patient.id)
    access = AccessRecord(clinic_id="clinic-a", image_id=uuid.uuid4(), patient_id=patient.id,
                          kind="original", actor=ACTOR)
    events += access.collect_events()
    records = [encode(e, position=i + 1) for i, e in enumerate(events)]
    assert all(records)
    for record in records:
        assert record is not None
        raw = _all_bytes(record)
        assert MARKER.encode() not in raw
        assert b"1901" not in raw  # neither the birth date nor the capture date
        assert b"mother" not in raw
        assert b"EXT-" not in raw


def test_types_topics_and_allowlisted_fields() -> None:
    patient, patient_events = _patient_events()
    image_events = _image_events(patient.id)
    out = [to_cloudevent(e, position=7) for e in patient_events + image_events]
    types = [ce.type for ce in out if ce]
    assert types == [
        "orthovault.patient.registered.v1", "orthovault.patient.consent_granted.v1",
        "orthovault.patient.consent_revoked.v1", "orthovault.image.captured.v1",
        "orthovault.image.tagged.v1", "orthovault.image.untagged.v1",
        "orthovault.image.categorised.v1", "orthovault.image.derivatives_generated.v1",
        "orthovault.image.processing_failed.v1", "orthovault.image.soft_deleted.v1",
        "orthovault.image.restored.v1", "orthovault.image.destroyed.v1",
    ]
    captured = out[3]
    assert captured is not None
    image_id = str(image_events[0].originator_id)
    assert captured.id == f"{image_id}:1"
    assert captured.subject == image_id
    assert captured.time and captured.time.endswith("Z")
    assert captured.data == {
        "image_id": image_id, "clinic_id": "clinic-a", "patient_id": str(patient.id),
        "version": 1, "actor": {"user_id": "user-doc", "role": "doctor"},
        "category": "intraoral", "view": "IV07", "tag_count": 2, "status": "active",
    }
    categorised = out[6]
    assert categorised is not None
    # A view that is not an ADA code is dropped rather than passed on as free text.
    assert "view" not in categorised.data
    assert categorised.data["category"] == "radiograph"
    assert "source" not in categorised.data  # not one of the known sources
    assert categorised.data["confidence"] == 0.812
    assert out[7] is not None and out[7].data["derivatives"] == ["thumbnail"]
    assert out[1] is not None and out[1].data["scope"] == "clinical_photography"
    assert out[1].data["granted_by"] == "guardian"
    assert out[9] is not None and out[9].data["status"] == "deleted"
    assert out[11] is not None and out[11].data["status"] == "destroyed"


def test_owner_fills_ids_the_event_lacks() -> None:
    patient, _ = _patient_events()
    tagged = _image_events(patient.id)[1]
    bare = to_cloudevent(tagged, 3)
    assert bare is not None and "patient_id" not in bare.data
    assert bare.data["clinic_id"] == "clinic-a"  # from the actor
    filled = to_cloudevent(tagged, 3, Owner(clinic_id="clinic-a", patient_id=str(patient.id)))
    assert filled is not None and filled.data["patient_id"] == str(patient.id)


def test_round_trip_through_kafka_record() -> None:
    patient, events = _patient_events()
    record = encode(events[0], position=42)
    assert record is not None
    assert record.topic == "imaging.patient.v1"
    assert record.key == str(patient.id).encode()
    headers = dict(record.headers)
    assert headers["content-type"] == b"application/json"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_source"] == b"orthovault/imaging"
    assert headers["ce_id"] == f"{patient.id}:1".encode()
    assert headers["ce_subject"] == str(patient.id).encode()
    assert headers["ce_position"] == b"42"
    parsed = parse_record(record.headers, record.value)
    assert parsed.id == f"{patient.id}:1"
    assert parsed.type == "orthovault.patient.registered.v1"
    assert parsed.data == json.loads(record.value)
    assert parsed.extensions == {"position": "42"}


def test_shredded_event_keeps_its_type_and_only_envelope_ids() -> None:
    image_id, patient_id = uuid.uuid4(), uuid.uuid4()
    shredded = ShreddedEvent(
        originator_id=image_id, originator_version=3, topic=get_topic(ImageAggregate.Tagged),
        timestamp=datetime.now(UTC),
        header={"patient_id": str(patient_id), "clinic_id": "clinic-b",
                "actor": {"user_id": "u1", "role": "doctor", "clinic_id": "clinic-b"}},
    )
    ce = to_cloudevent(shredded, position=9)
    assert ce is not None
    assert ce.type == "orthovault.image.tagged.v1"
    assert ce.id == f"{image_id}:3"
    assert ce.data == {"image_id": str(image_id), "clinic_id": "clinic-b",
                       "patient_id": str(patient_id), "version": 3, "redacted": True,
                       "actor": {"user_id": "u1", "role": "doctor"}}


def test_unknown_event_types_carry_envelope_only() -> None:
    class Image(Aggregate):  # a published aggregate with an event the mapping never heard of
        @event("NoteAdded")
        def add_note(self, *, note: str) -> None:
            self.note = note

    image = Image()
    image.add_note(note=MARKER)
    record = encode(image.collect_events()[-1], position=1)
    assert record is not None and record.topic == "imaging.image.v1"
    assert dict(record.headers)["ce_type"] == b"orthovault.image.note_added.v1"
    assert MARKER.encode() not in _all_bytes(record)


def test_events_of_unpublished_aggregates_are_skipped() -> None:
    class Other(Aggregate):
        pass

    assert to_cloudevent(Other().collect_events()[0], position=1) is None


@pytest.mark.parametrize("headers,value", [
    ([], b"{}"),
    ([("ce_specversion", b"0.3"), ("ce_id", b"x"), ("ce_source", b"s"), ("ce_type", b"t")],
     b"{}"),
    ([("ce_specversion", b"1.0"), ("ce_id", b"x"), ("ce_source", b"s"), ("ce_type", b"t")],
     b"not json"),
    ([("ce_specversion", b"1.0"), ("ce_id", b"x"), ("ce_source", b"s"), ("ce_type", b"t")],
     b"[1]"),
])
def test_parse_rejects_what_is_not_a_cloudevent(headers: list[tuple[str, bytes]],
                                                value: bytes) -> None:
    with pytest.raises(InvalidCloudEvent):
        parse_record(headers, value)
