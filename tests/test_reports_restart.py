"""The report worker SIGKILLed mid-way resumes: every report rendered, each version once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from fastapi.testclient import TestClient

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
from domain import collage as c
from domain.report import Report

pytestmark = pytest.mark.slow

SERIES = [v for row in c.FULL_SERIES_ROWS for v in row]
REQUEST = """mutation($input: RequestReportInput!) { requestReport(input: $input) { id } }"""


def _spawn(settings, command: str) -> subprocess.Popen:
    env = {**os.environ, "ORTHOVAULT_DATABASE_URL": settings.database_url,
           "ORTHOVAULT_MASTER_KEY": settings.master_key.get_secret_value(),
           "ORTHOVAULT_DATA_DIR": str(settings.data_dir)}
    return subprocess.Popen([sys.executable, "-m", "api.cli", command], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_report_worker_killed_mid_way_renders_each_version_once(database_factory, tmp_path):
    # The API process runs the read models and the photo worker; the report worker runs
    # only in the separate `orthovault worker` process that is killed.
    settings = make_settings(database_factory(), tmp_path, in_process_jobs=(
        "gallery_v1,capture_sessions_v1,reports_v1,derivatives_v1"))
    headers = bearer(token_for(settings, "doctor", "c1"))
    with TestClient(create_app(settings)) as api:
        patient_id = register_patient(api, headers)
        ids = []
        for n, view in enumerate(SERIES):
            response = upload(api, headers, patient_id, jpeg_bytes(3000, 2000, seed=n),
                              fields={"view": view, "category": "intraoral"
                                      if view.startswith("IV") else "extraoral"})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        gallery = api.app.state.services.gallery
        wait_until(lambda: all(gallery.image("c1", uuid.UUID(i)).has_derivatives
                               for i in ids), timeout=120)
        reports = []
        for _ in range(6):
            result = graphql(api, headers, REQUEST, {"input": {
                "patientId": patient_id, "layout": "full_series_12"}})
            assert "errors" not in result, result
            reports.append(result["data"]["requestReport"]["id"])

        def rendered() -> list[Report.Rendered]:
            return [e for e in stored_events(api, Report.Rendered)
                    if str(e.originator_id) in reports]

        process = _spawn(settings, "worker")
        try:
            wait_until(lambda: rendered() or process.poll() is not None, timeout=120,
                       interval=0.005)
            process.send_signal(signal.SIGKILL)
            process.wait()
            assert len(rendered()) < len(reports), "the kill should land mid-way"
            process = _spawn(settings, "worker")
            wait_until(lambda: len(rendered()) >= len(reports), timeout=180)
            time.sleep(1.0)  # let a duplicate, if any, arrive
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        events = rendered()
        assert sorted(str(e.originator_id) for e in events) == sorted(reports)
        assert {e.version for e in events} == {1}
        app = api.app.state.services.app
        for report_id in reports:
            report = app.repository.get(uuid.UUID(report_id))
            assert report.status == "rendered" and len(report.renditions) == 1
            assert api.get(f"/api/v1/reports/{report_id}/download",
                           headers=headers).content[:5] == b"%PDF-"
