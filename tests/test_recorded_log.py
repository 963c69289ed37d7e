"""Upgrades: the event log recorded by an earlier release (tests/data/recorded_log/) replays
through every projection, the audit verification and the Kafka relay's mapping with the
results recorded then. A change that breaks this needs an upcaster (a changed event class)
or a deliberate, reviewed regeneration of expected.json (a read model's schema change,
which reaches installations by rebuild: docs/architecture.md, Upgrades).
"""

from __future__ import annotations

import json

import pytest
from recorded_log import DATA, load, replay

from api.services import Services
from conftest import make_settings


@pytest.fixture(scope="module")
def replayed(database_factory, tmp_path_factory):
    database = database_factory()
    master_key = (DATA / "master.key").read_text().strip()
    services = Services.build(make_settings(database, tmp_path_factory.mktemp("recorded"),
                                            master_key=master_key, run_background=False))
    try:
        load(database)
        yield replay(services, database)
    finally:
        services.close()


@pytest.fixture(scope="module")
def expected():
    return json.loads((DATA / "expected.json").read_text())


def test_the_recorded_log_is_broad():
    topics = {event[3] for event in json.loads((DATA / "log.json").read_text())["events"]}
    for kind in ("Patient.Registered", "Patient.ConsentGranted", "Image.Captured",
                 "Image.DerivativesGenerated", "Image.Tagged", "Image.Destroyed",
                 "Annotation.Added", "Tracing.Started", "Album.ImageAdded", "Report.Rendered",
                 "AccessRecord.Recorded", "DestructionCertificate.Issued"):
        assert any(topic.endswith(kind) for topic in topics), kind


def test_every_read_model_replays_to_the_recorded_rows(replayed, expected):
    assert sorted(replayed["read_models"]) == sorted(expected["read_models"])
    for table, rows in expected["read_models"].items():
        assert replayed["read_models"][table] == rows, table


def test_the_audit_chain_verifies_to_the_recorded_head(replayed, expected):
    assert replayed["audit"] == expected["audit"]
    assert expected["audit"]["chain"][0] and expected["audit"]["against_log"][0]


def test_the_relay_maps_every_event_as_recorded(replayed, expected):
    assert len(replayed["relay"]) == len(expected["relay"])
    for position, (got, want) in enumerate(zip(replayed["relay"], expected["relay"],
                                               strict=True), start=1):
        assert got == want, position
