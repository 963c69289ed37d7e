"""crm.patients from a real Kafka-protocol broker (Tansu): registrations and demographic
corrections upsert patients under the CRM's ids, once, without PHI in logs or on Kafka."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaProducer

from api.app import create_app
from conftest import bearer, graphql, make_settings, stored_events, token_for, wait_until
from domain.patient import Patient
from integration.test_kafka_relay import events_of, read_records

PATIENT = """query($id: ID!){ patient(id: $id){ id externalId givenName familyName birthDate
  sex } }"""
CLINIC = "clinic-crm"
MARKER = "Crmphimarker"


def _send(producer: KafkaProducer, ce_id: str, ce_type: str, data: dict[str, Any]) -> None:
    headers = [("content-type", b"application/json")] + [
        (f"ce_{name}", value.encode()) for name, value in (
            ("specversion", "1.0"), ("id", ce_id), ("source", "urn:suite:crm"),
            ("type", ce_type), ("subject", str(data.get("patient_id"))),
            ("time", datetime.now(UTC).isoformat()))]
    producer.send("crm.patients", key=str(data.get("patient_id")).encode(),
                  value=json.dumps(data).encode(), headers=headers)


def _record(patient_id: str, **changes: Any) -> dict[str, Any]:
    return {"patient_id": patient_id, "clinic_id": CLINIC, "external_id": "CHART-77",
            "given_name": f"{MARKER}Ada", "family_name": f"{MARKER}Lovelace",
            "birth_date": "2011-05-04", "sex": "female",
            "guardian": {"name": f"{MARKER}Guardian", "relationship": "mother"}, **changes}


def test_crm_records_upsert_patients_once_and_bad_ones_are_skipped(
        database_factory, tmp_path, kafka_bootstrap, capfd: pytest.CaptureFixture[str]):
    settings = make_settings(database_factory(), tmp_path, kafka_bootstrap=kafka_bootstrap)
    headers = bearer(token_for(settings, "doctor", CLINIC))
    elsewhere = bearer(token_for(settings, "doctor", "clinic-crm-other"))
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    with TestClient(create_app(settings)) as client:
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        _send(producer, "crm-1", "crm.patient.registered.v1", _record(first))
        _send(producer, "crm-1", "crm.patient.registered.v1", _record(first))  # redelivered
        # Bad records, each skipped without blocking the partition behind it:
        _send(producer, "crm-bad-1", "crm.patient.updated.v1",
              _record(first, birth_date="2999-01-01"))  # in the future
        _send(producer, "crm-bad-2", "crm.patient.updated.v1", _record(first, sex="x"))
        _send(producer, "crm-bad-3", "crm.patient.updated.v1", {"patient_id": first})
        _send(producer, "crm-bad-4", "crm.patient.updated.v1",  # another clinic's patient
              _record(first, clinic_id="clinic-crm-other", family_name="Moved"))
        _send(producer, "crm-other", "crm.invoice.sent.v1", {"patient_id": first})  # ignored
        # A correction, the same correction again under a new id, and an update for a
        # patient whose registration never arrived.
        _send(producer, "crm-2", "crm.patient.updated.v1",
              _record(first, family_name=f"{MARKER}Byron", external_id="CHART-78"))
        _send(producer, "crm-3", "crm.patient.updated.v1",
              _record(first, family_name=f"{MARKER}Byron", external_id="CHART-78"))
        _send(producer, "crm-4", "crm.patient.updated.v1", _record(second, sex="male"))
        producer.flush()
        producer.close()

        def patient(pid: str, as_headers: dict[str, str] = headers) -> Any:
            answer = graphql(client, as_headers, PATIENT, {"id": pid})
            return (answer.get("data") or {}).get("patient")

        wait_until(lambda: patient(second), timeout=60)
        updated = wait_until(lambda: (p := patient(first)) and p["externalId"] == "CHART-78"
                             and p, timeout=30)
        assert updated == {"id": first, "externalId": "CHART-78", "givenName": f"{MARKER}Ada",
                           "familyName": f"{MARKER}Byron", "birthDate": "2011-05-04",
                           "sex": "female"}
        assert patient(second)["sex"] == "male"
        # Another clinic neither sees the patient nor could move it.
        assert patient(first, elsewhere) is None

        registered = [e for e in stored_events(client, Patient.Registered)
                      if str(e.originator_id) in (first, second)]
        corrections = [e for e in stored_events(client, Patient.DemographicsUpdated)
                       if str(e.originator_id) == first]
        assert sorted(str(e.originator_id) for e in registered) == sorted([first, second])
        assert len(corrections) == 1  # the repeat and the redelivery wrote nothing
        assert all(e.actor.user_id == "system:crm" for e in registered + corrections)

        # The relay publishes these patient events thin: ids and types, never the names.
        records = read_records(kafka_bootstrap, 3, clinic=CLINIC)
        types = [e.type for e in events_of(records)]
        assert "orthovault.patient.demographics_updated.v1" in types
        assert all(MARKER.lower().encode() not in r.value.lower() for r in records)

    logged = capfd.readouterr()
    assert "crm_patient_skipped" in logged.err + logged.out
    assert MARKER.lower() not in (logged.err + logged.out).lower()
    assert "2999-01-01" not in logged.err + logged.out
