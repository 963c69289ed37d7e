"""Nothing lost, nothing applied twice: clean restarts and SIGKILLed runners."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from conftest import (
    GALLERY,
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
from domain.image import Image
from domain.patient import Patient
from domain.values import Actor, BlobRef

pytestmark = pytest.mark.slow


def _tracking(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as conn:
        try:
            row = conn.execute(f"SELECT max(notification_id) FROM {table} "
                               "WHERE application_name = 'imaging'").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return row[0] or 0


def _head(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT coalesce(max(notification_id), 0) FROM imaging_events"
                            ).fetchone()[0]


def _spawn(settings, command: str) -> subprocess.Popen:
    env = {**os.environ, "ORTHOVAULT_DATABASE_URL": settings.database_url,
           "ORTHOVAULT_MASTER_KEY": settings.master_key.get_secret_value(),
           "ORTHOVAULT_DATA_DIR": str(settings.data_dir)}
    return subprocess.Popen([sys.executable, "-m", "api.cli", command], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_server_restart_loses_nothing(database_factory, tmp_path):
    settings = make_settings(database_factory(), tmp_path)
    headers = bearer(token_for(settings, "clinic_admin", "c1"))
    with TestClient(create_app(settings)) as first:
        patient_id = register_patient(first, headers)
        ids = [upload(first, headers, patient_id, jpeg_bytes(seed=i)).json()["id"]
               for i in range(3)]
        graphql(first, headers, """mutation($i: TagImageInput!){ tagImage(input: $i){ id } }""",
                {"i": {"imageId": ids[0], "tag": "before-restart"}})
    with TestClient(create_app(settings)) as second:
        page = graphql(second, headers, GALLERY, {"id": patient_id, "first": 10})
        nodes = {e["node"]["id"]: e["node"] for e in page["data"]["patient"]["images"]["edges"]}
        assert set(nodes) == set(ids)
        assert nodes[ids[0]]["tags"] == ["before-restart"]
        wait_until(lambda: all(
            e["node"]["thumbnailUrl"] for e in graphql(second, headers, GALLERY, {
                "id": patient_id, "first": 10})["data"]["patient"]["images"]["edges"]))
        assert second.get(f"/api/v1/images/{ids[1]}/original",
                          headers=headers).content == jpeg_bytes(seed=1)
        upload(second, headers, patient_id, jpeg_bytes(seed=9))
        gallery = second.app.state.services.gallery
        assert gallery.patient("c1", uuid.UUID(patient_id)).image_count == 4
        derived = [e for e in stored_events(second, Image.DerivativesGenerated)]
        assert len(derived) == len({e.originator_id for e in derived}) == 4


def _seed_events(settings, images: int, tags_each: int) -> dict[str, list[str]]:
    """Writes many events straight through the application (one transaction)."""
    from api.services import Services

    services = Services.build(settings.model_copy(update={"run_background": False}))
    actor = Actor("seed", "clinic_admin", "c1")
    patient = Patient(clinic_id="c1", external_id="X", given_name="G", family_name="F",
                      birth_date=date(2010, 1, 1), sex="male", guardian=None, actor=actor)
    expected: dict[str, list[str]] = {}
    aggregates = [patient]
    for i in range(images):
        image = Image(image_id=uuid.uuid4(), clinic_id="c1", patient_id=patient.id,
                      original=BlobRef(f"x/{i}", "0" * 64, 1, "image/x-seed"), width=1, height=1,
                      category="other", view=None, captured_at=datetime.now(UTC), tags=[],
                      filename="", actor=actor, category_source="user")
        for t in range(tags_each):
            image.tag(tag=f"t{t}", actor=actor)
        expected[str(image.id)] = [f"t{t}" for t in range(tags_each)]
        aggregates.append(image)
    services.app.save(*aggregates)
    services.close()
    return expected


def test_projection_killed_midway_resumes_exactly_once(database_factory, tmp_path):
    settings = make_settings(database_factory(), tmp_path)
    expected = _seed_events(settings, images=80, tags_each=100)
    head = _head(settings.database_url)
    process = _spawn(settings, "projections")
    try:
        deadline = time.monotonic() + 60
        while _tracking(settings.database_url, "gallery_v1_tracking") == 0:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at = _tracking(settings.database_url, "gallery_v1_tracking")
        assert 0 < killed_at < head, "the kill should land mid-way"
        process = _spawn(settings, "projections")
        wait_until(lambda: _tracking(settings.database_url, "gallery_v1_tracking") == head,
                   timeout=120)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    with psycopg.connect(settings.database_url) as conn:
        rows = dict(conn.execute("SELECT image_id::text, tags FROM gallery_v1_images").fetchall())
        count = conn.execute("SELECT image_count FROM gallery_v1_patients").fetchone()[0]
    assert rows == expected  # a twice-applied Tagged event would duplicate a tag
    assert count == len(expected)


def test_worker_killed_mid_job_records_each_result_once(database_factory, tmp_path):
    settings = make_settings(database_factory(), tmp_path, in_process_jobs="gallery_v1")
    headers = bearer(token_for(settings, "clinic_admin", "c1"))
    with TestClient(create_app(settings)) as api:
        patient_id = register_patient(api, headers)
        ids = [upload(api, headers, patient_id, jpeg_bytes(2400, 1800, seed=i)).json()["id"]
               for i in range(10)]

        def derived():
            return [e for e in stored_events(api, Image.DerivativesGenerated)]

        process = _spawn(settings, "worker")
        try:
            wait_until(lambda: derived() or process.poll() is not None, timeout=60,
                       interval=0.005)
            process.send_signal(signal.SIGKILL)
            process.wait()
            assert len(derived()) < len(ids), "the kill should land mid-way"
            process = _spawn(settings, "worker")
            wait_until(lambda: len(derived()) >= len(ids), timeout=120)
            time.sleep(1.0)  # let a duplicate, if any, arrive
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        events = derived()
        assert sorted(str(e.originator_id) for e in events) == sorted(ids)
