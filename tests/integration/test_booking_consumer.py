"""booking.appointments from a real Kafka-protocol broker opens capture sessions once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from kafka import KafkaProducer

from adapters.cloudevents import CloudEvent
from api.app import create_app
from conftest import bearer, graphql, make_settings, register_patient, token_for, wait_until

DAY = """query($day: Date!){ captureSessions(day: $day){ appointmentId chair milestone } }"""


def _booking(event_id: str, **data: object) -> CloudEvent:
    return CloudEvent(id=event_id, type="booking.appointment.scheduled.v1",
                      subject=str(data["appointment_id"]), time=datetime.now(UTC).isoformat(),
                      data=data, source="urn:suite:booking")


def test_imaging_appointments_open_one_session_each(database_factory, tmp_path,
                                                    kafka_bootstrap):
    settings = make_settings(database_factory(), tmp_path, kafka_bootstrap=kafka_bootstrap)
    headers = bearer(token_for(settings, "clinical_staff", "clinic-booking"))
    with TestClient(create_app(settings)) as client:
        patient_id = register_patient(client, headers)
        now = datetime.now(UTC).isoformat()
        common = {"clinic_id": "clinic-booking", "patient_id": patient_id, "scheduled_at": now}
        events = [
            _booking("b-1", appointment_id="APT-7", chair="3", imaging=True,
                     milestone="debond", **common),
            _booking("b-1", appointment_id="APT-7", chair="3", imaging=True,
                     milestone="debond", **common),  # redelivered
            _booking("b-2", appointment_id="APT-7", chair="3", imaging=True,
                     milestone="debond", **common),  # same appointment, new event
            _booking("b-3", appointment_id="APT-8", imaging=False, **common),  # not imaging
            _booking("b-4", appointment_id="APT-9", imaging=True, clinic_id="clinic-booking",
                     patient_id="00000000-0000-4000-8000-000000000000", scheduled_at=now),
        ]
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        for event in events:
            ce_headers = [("content-type", b"application/json")] + [
                (f"ce_{name}", value.encode()) for name, value in (
                    ("specversion", "1.0"), ("id", event.id), ("source", event.source),
                    ("type", event.type), ("subject", event.subject), ("time", event.time))]
            producer.send("booking.appointments", key=event.subject.encode(),
                          value=json.dumps(event.data).encode(), headers=ce_headers)
        producer.flush()
        producer.close()
        day = datetime.now(UTC).astimezone().date().isoformat()
        sessions = wait_until(lambda: graphql(client, headers, DAY, {"day": day})["data"][
            "captureSessions"], timeout=60)
        assert sessions == [{"appointmentId": "APT-7", "chair": "3", "milestone": "debond"}]
        # The bad appointment (unknown patient) was skipped, not retried forever.
        assert json.dumps(sessions).count("APT-9") == 0
