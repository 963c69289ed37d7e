"""treatment.milestones from a real Kafka-protocol broker (Tansu) phase the images, once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from kafka import KafkaProducer

from adapters.cloudevents import CloudEvent
from api.app import create_app
from conftest import (
    bearer,
    graphql,
    jpeg_bytes,
    make_settings,
    register_patient,
    stored_events,
    token_for,
    upload,
    wait_until,
)
from domain.treatment import TreatmentPlan

TIMELINE = """query($id: ID!) { treatmentTimeline(patientId: $id) {
  phases { milestone { id kind label occurredOn source } images { linkedBy image { id } } } } }"""
CLINIC = "clinic-milestones"


def _milestone(event_id: str, type_: str = "treatment.milestone.reached.v1",
               **data: object) -> CloudEvent:
    return CloudEvent(id=event_id, type=type_, subject=str(data.get("milestone_id", "x")),
                      time=datetime.now(UTC).isoformat(), data=data,
                      source="urn:suite:treatment")


def _send(bootstrap: str, events: list[CloudEvent]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for event in events:
        headers = [("content-type", b"application/json")] + [
            (f"ce_{name}", value.encode()) for name, value in (
                ("specversion", "1.0"), ("id", event.id), ("source", event.source),
                ("type", event.type), ("subject", event.subject), ("time", event.time))]
        producer.send("treatment.milestones", key=event.subject.encode(),
                      value=json.dumps(event.data).encode(), headers=headers)
    producer.flush()
    producer.close()


def test_milestones_from_kafka_phase_images_once(database_factory, tmp_path, kafka_bootstrap):
    settings = make_settings(database_factory(), tmp_path, kafka_bootstrap=kafka_bootstrap)
    headers = bearer(token_for(settings, "doctor", CLINIC))
    other = bearer(token_for(settings, "doctor", "clinic-elsewhere"))
    with TestClient(create_app(settings)) as client:
        patient = register_patient(client, headers)
        stranger = register_patient(client, other)
        photo = upload(client, headers, patient, jpeg_bytes(64, 48, seed=5),
                       fields={"capturedAt": "2026-03-10T09:00:00+00:00"})
        assert photo.status_code == 201, photo.text
        common = {"clinic_id": CLINIC, "patient_id": patient}
        _send(kafka_bootstrap, [
            _milestone("t-1", milestone_id="TP-9/1", kind="initial_records",
                       occurred_on="2026-03-01", **common),
            _milestone("t-1", milestone_id="TP-9/1", kind="initial_records",
                       occurred_on="2026-03-01", **common),  # redelivered
            _milestone("t-2", milestone_id="TP-9/1", kind="initial_records",
                       occurred_on="2026-03-01", **common),  # resent under a new id
            _milestone("t-3", milestone_id="TP-9/2", kind="braces-on",
                       occurred_on="2026-04-01", **common),  # unknown kind: skipped
            _milestone("t-4", milestone_id="TP-9/3", kind="debond", occurred_on="2026-05-01",
                       clinic_id=CLINIC, patient_id=stranger),  # another clinic's patient
            _milestone("t-5", milestone_id="TP-9/4", kind="debond",
                       occurred_on="not a date", **common),  # bad data: skipped
            _milestone("t-6", type_="treatment.plan.created.v1", milestone_id="TP-9/5",
                       kind="debond", occurred_on="2026-05-01", **common),  # other type
            _milestone("t-7", milestone_id="TP-9/6", kind="progress",
                       occurred_on="2026-06-01T14:30:00+02:00", label="Progress (wires)",
                       **common),
        ])

        def phases() -> list[dict] | None:
            timeline = graphql(client, headers, TIMELINE, {"id": patient})
            found = timeline["data"]["treatmentTimeline"]["phases"]
            # Both milestones, not just two phases: before TP-9/1 lands, "before the first
            # milestone" and TP-9/6 make two phases too (the records may come out of order).
            ids = [p["milestone"]["id"] for p in found if p["milestone"]]
            return found if ids == ["TP-9/1", "TP-9/6"] else None

        found = wait_until(phases, timeout=60)
        assert [p["milestone"] for p in found] == [
            {"id": "TP-9/1", "kind": "initial_records", "label": "Initial records",
             "occurredOn": "2026-03-01", "source": "treatment"},
            {"id": "TP-9/6", "kind": "progress", "label": "Progress (wires)",
             "occurredOn": "2026-06-01", "source": "treatment"},
        ]
        assert found[0]["images"] == [{"linkedBy": "date",
                                       "image": {"id": photo.json()["id"]}}]
        recorded = [e for e in stored_events(client, TreatmentPlan.MilestoneRecorded)
                    if str(e.patient_id) in (patient, stranger)]
        assert sorted(e.milestone_id for e in recorded) == ["TP-9/1", "TP-9/6"]
        # The stranger's clinic got nothing from an event naming the wrong clinic.
        theirs = graphql(client, other, TIMELINE, {"id": stranger})
        assert theirs["data"]["treatmentTimeline"]["phases"] == []
