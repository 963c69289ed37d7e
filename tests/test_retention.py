"""Retention: policy per clinic, recovery window, legal hold, and ``orthovault retention
run`` destroying each expired image exactly once, even when killed halfway and rerun (on
several machines at once)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from click.testing import CliRunner
from test_access_and_shredding import _blob_bytes, _dump

from api.cli import main as cli
from api.retention_job import RetentionJob
from conftest import graphql, jpeg_bytes, stored_events, upload, wait_until
from domain.destruction_certificate import DestructionCertificate
from domain.image import Image
from projections.audit import verify_chain

REGISTER = """mutation($i: RegisterPatientInput!){ registerPatient(input: $i){ id } }"""
GRANT = """mutation($i: GrantConsentInput!){ grantConsent(input: $i){ id } }"""
HOLD = """mutation($i: LegalHoldInput!){ placeLegalHold(input: $i){ subjectId active } }"""
RELEASE = """mutation($i: LegalHoldInput!){ releaseLegalHold(input: $i){ active } }"""
HELD = """query($id: ID!){ legalHold(subjectId: $id){ active } }"""
DESTROY = """mutation($i: DestroyImageInput!){ destroyImage(input: $i){ id } }"""
DELETE = """mutation($i: DeleteImageInput!){ deleteImage(input: $i){ status } }"""
RESTORE = """mutation($i: RestoreImageInput!){ restoreImage(input: $i){ status } }"""
POLICY = """mutation($i: RetentionPolicyInput!){ setRetentionPolicy(input: $i){
    yearsByCategory { category years } ageOfMajority yearsAfterMajority recoveryDays } }"""
READ_POLICY = """{ retentionPolicy { recoveryDays yearsByCategory { category years } } }"""
OLD = "2005-01-10T10:00:00+00:00"


def _code(result: dict) -> str:
    return result["errors"][0]["extensions"]["code"]


def _patient(client, headers, birth: str = "1970-02-03") -> str:
    created = graphql(client, headers, REGISTER, {"i": {
        "externalId": f"R-{uuid.uuid4().hex[:6]}", "givenName": "Ada", "familyName": "King",
        "birthDate": birth, "sex": "female"}})
    patient_id = created["data"]["registerPatient"]["id"]
    graphql(client, headers, GRANT, {"i": {"patientId": patient_id,
                                           "scope": "CLINICAL_PHOTOGRAPHY"}})
    return patient_id


def _image(client, headers, patient_id: str, seed: int, captured_at: str | None = OLD,
           tag: str | None = None) -> str:
    fields = {"captured_at": captured_at} if captured_at else {}
    if tag:
        fields["tags"] = tag
    response = upload(client, headers, patient_id, jpeg_bytes(seed=seed), fields=fields,
                      filename=f"{tag or 'photo'}.jpg")
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _ready(services, clinic: str, *image_ids: str) -> None:
    wait_until(lambda: all((i := services.gallery.image(clinic, UUID(x))) and i.has_derivatives
                           for x in image_ids))


def _fully_destroyed(services, image_id: str) -> bool:
    key_store = services.app.key_store
    gone_from_folder = not (services.settings.blob_dir / image_id[:2] / image_id).exists()
    with psycopg.connect(services.settings.database_url) as conn:
        keys = conn.execute("SELECT count(*) FROM subject_keys WHERE subject_id = %s",
                            (image_id,)).fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM gallery_v1_images WHERE image_id = %s",
                            (image_id,)).fetchone()[0]
    return key_store.is_destroyed(UUID(image_id)) and keys == 0 and gone_from_folder \
        and rows == 0


# Tables that keep a destroyed image's id on purpose: the audit (who/when/what, no PHI)
# and the retention job's ledger.
KEEPS_IDS = {"audit_v1_entries", "retention_destructions"}


def _rows_naming(services, image_id: str) -> dict[str, int]:
    """Rows in any read model (any table with an image_id column) still naming the image."""
    found: dict[str, int] = {}
    with psycopg.connect(services.settings.database_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'image_id'"
            " AND table_schema = 'public'").fetchall()]
        for table in sorted(set(tables) - KEEPS_IDS):
            count = conn.execute(f'SELECT count(*) FROM "{table}" WHERE image_id::text = %s',
                                 (image_id,)).fetchone()[0]
            if count:
                found[table] = count
    return found


def _untouched(services, image_id: str) -> bool:
    return (not services.app.key_store.is_destroyed(UUID(image_id))
            and (services.settings.blob_dir / image_id[:2] / image_id).exists())


def _tombstones(client, image_id: str) -> int:
    return sum(1 for e in stored_events(client, Image.Destroyed) if str(e.originator_id) ==
               image_id)


def _certificates(client, image_id: str) -> list[DestructionCertificate.Issued]:
    return [c for c in stored_events(client, DestructionCertificate.Issued)
            if str(c.subject_id) == image_id]


@pytest.fixture
def cli_env(shared_settings, monkeypatch) -> dict[str, str]:
    env = {
        "ORTHOVAULT_DATABASE_URL": shared_settings.database_url,
        "ORTHOVAULT_DATA_DIR": str(shared_settings.data_dir),
        "ORTHOVAULT_MASTER_KEY": shared_settings.master_key.get_secret_value(),
        "ORTHOVAULT_TOKEN_SECRET": shared_settings.token_secret.get_secret_value(),
        "ORTHOVAULT_RUN_BACKGROUND": "false",
        "ORTHOVAULT_LOG_LEVEL": "WARNING",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_retention_run_destroys_only_what_is_due(client, auth, clinic, cli_env):
    services = client.app.state.services
    admin = auth("clinic_admin")
    marker = "phimarker" + os.urandom(4).hex()
    lapsed = _patient(client, admin)  # one visit in 2005: kept until 2016
    expired = _image(client, admin, lapsed, 31, tag=marker)
    returning = _patient(client, admin)  # the 2005 image is kept: the last visit is recent
    kept_old = _image(client, admin, returning, 32)
    kept_new = _image(client, admin, returning, 33, captured_at=None)
    child = _patient(client, admin, birth="2011-03-04")  # kept until the 25th birthday
    kept_child = _image(client, admin, child, 34, captured_at="2013-05-06T09:00:00+00:00")
    held_patient = _patient(client, admin)
    held = _image(client, admin, held_patient, 35)
    _ready(services, clinic, expired, kept_old, kept_new, kept_child, held)
    assert graphql(client, admin, HOLD, {"i": {"subjectId": held_patient,
                                               "reason": "litigation"}})["data"][
        "placeLegalHold"]["active"] is True
    assert _code(graphql(client, admin, HOLD, {"i": {"subjectId": held_patient,
                                                     "reason": "again"}})) == \
        "legal_hold_active"
    assert marker in _dump(services.settings.database_url)

    dry = CliRunner().invoke(cli, ["retention", "run", "--dry-run", "--clinic", clinic])
    assert dry.exit_code == 0, dry.output
    assert f"due {expired} clinic={clinic} basis=retention_period_ended" in dry.output
    assert f"held {held} (legal hold)" in dry.output
    for kept in (kept_old, kept_new, kept_child):
        assert kept not in dry.output
    assert "dry run: 1 due, 1 on legal hold" in dry.output
    assert _untouched(services, expired)

    done = CliRunner().invoke(cli, ["retention", "run", "--clinic", clinic])
    assert done.exit_code == 0, done.output
    assert f"destroyed {expired}" in done.output
    assert "destroyed 1, finished 0, held 1" in done.output
    assert _fully_destroyed(services, expired)
    # Every read model dropped it (they follow the log, so allow them to catch up).
    try:
        wait_until(lambda: _rows_naming(services, expired) == {}, timeout=30)
    except AssertionError:
        assert _rows_naming(services, expired) == {}  # names the tables that kept rows
    assert _rows_naming(services, kept_old)  # the check would see a row that is there
    for kept in (kept_old, kept_new, kept_child, held):
        assert _untouched(services, kept)
    # Destruction proof: the PHI marker is nowhere in the database dump or the blob folder.
    assert marker not in _dump(services.settings.database_url)
    assert marker.encode() not in _blob_bytes(services.settings.blob_dir)
    # The certificate: what, why, when, by which policy.
    (certificate,) = _certificates(client, expired)
    assert certificate.basis == "retention_period_ended" and certificate.due == "2016-01-10"
    assert certificate.policy["years_by_category"]["photo"] == 11
    assert certificate.actor.user_id == "system:retention"
    assert certificate.blob_count == 3 and certificate.timestamp is not None
    audit = services.audit
    wait_until(lambda: {e.action for e in audit.search(clinic, patient_id=UUID(lapsed)).entries}
               >= {"image.destroyed", "destruction_certificate.issued"})
    destroyed = audit.search(clinic, image_id=UUID(expired), action="image.destroyed").entries
    assert [e.reason_category for e in destroyed] == ["retention_expired"]
    assert verify_chain(audit).ok

    # Idempotent: a second run finds nothing more.
    again = RetentionJob(services)
    try:
        assert again.run(clinic_id=clinic).destroyed == []
    finally:
        again.close()
    assert _tombstones(client, expired) == 1

    # The hold blocks a person too, until released; then retention takes it.
    assert _code(graphql(client, admin, DESTROY, {"i": {"imageId": held,
                                                        "reason": "erasure"}})) == "legal_hold"
    assert _untouched(services, held)
    assert graphql(client, admin, RELEASE, {"i": {"subjectId": held_patient}})["data"][
        "releaseLegalHold"]["active"] is False
    assert graphql(client, admin, HELD, {"id": held_patient})["data"]["legalHold"][
        "active"] is False
    with RetentionJob(services) as job:
        assert job.run(clinic_id=clinic).destroyed == [UUID(held)]
    assert _fully_destroyed(services, held)


def test_hold_on_one_image_and_who_may_hold(client, auth, clinic):
    services = client.app.state.services
    admin = auth("clinic_admin")
    patient = _patient(client, admin)
    image = _image(client, admin, patient, 41)
    _ready(services, clinic, image)
    for role in ("doctor", "clinical_staff", "read_only"):
        assert _code(graphql(client, auth(role), HOLD, {"i": {"subjectId": image,
                                                              "reason": "x"}})) == \
            "permission_denied"
    outsider = auth("clinic_admin", clinic_id=f"{clinic}-x")
    assert _code(graphql(client, outsider, HOLD, {"i": {"subjectId": image,
                                                         "reason": "x"}})) == "subject_not_found"
    assert _code(graphql(client, admin, HOLD, {"i": {"subjectId": image, "reason": " "}})) == \
        "reason_required"
    assert _code(graphql(client, admin, RELEASE, {"i": {"subjectId": image}})) == \
        "no_legal_hold"
    graphql(client, admin, HOLD, {"i": {"subjectId": image, "reason": "subpoena"}})
    assert graphql(client, admin, HELD, {"id": image})["data"]["legalHold"]["active"] is True
    with RetentionJob(services) as job:
        report = job.run(clinic_id=clinic)
    assert report.destroyed == [] and report.held == [UUID(image)]
    assert _code(graphql(client, admin, DESTROY, {"i": {"imageId": image,
                                                        "reason": "erasure"}})) == "legal_hold"
    assert _untouched(services, image)


def test_policy_per_clinic_and_the_recovery_window(client, auth, clinic):
    services = client.app.state.services
    admin = auth("clinic_admin")
    assert graphql(client, admin, READ_POLICY)["data"]["retentionPolicy"]["recoveryDays"] == 30
    assert _code(graphql(client, auth("doctor"), POLICY, {"i": {"recoveryDays": 0}})) == \
        "permission_denied"
    assert _code(graphql(client, admin, POLICY, {"i": {"recoveryDays": -3}})) == \
        "invalid_policy"
    assert _code(graphql(client, admin, POLICY, {"i": {"yearsByCategory": [
        {"category": "selfie", "years": 3}]}})) == "invalid_policy"
    # This clinic keeps photographs 40 years and allows no recovery after a soft delete.
    policy = graphql(client, admin, POLICY, {"i": {"recoveryDays": 0, "yearsByCategory": [
        {"category": "photo", "years": 40}]}})["data"]["setRetentionPolicy"]
    assert {"category": "photo", "years": 40} in policy["yearsByCategory"]
    assert {"category": "document", "years": 8} in policy["yearsByCategory"]
    patient = _patient(client, admin)
    old_photo = _image(client, admin, patient, 51)
    deleted = _image(client, admin, patient, 52, captured_at=None)
    _ready(services, clinic, old_photo, deleted)
    graphql(client, admin, DELETE, {"i": {"imageId": deleted, "reason": "blurred"}})
    restore = graphql(client, admin, RESTORE, {"i": {"imageId": deleted}})
    assert _code(restore) == "recovery_window_passed"
    assert restore["errors"][0]["extensions"]["status"] == 409
    with RetentionJob(services) as job:
        report = job.run(clinic_id=clinic)
    assert report.destroyed == [UUID(deleted)]  # the 2005 photo is inside its 40 years
    (certificate,) = _certificates(client, deleted)
    assert certificate.basis == "recovery_window_ended"
    assert _fully_destroyed(services, deleted) and _untouched(services, old_photo)
    # Other clinics still use the defaults.
    other = auth("clinic_admin", clinic_id=f"{clinic}-y")
    assert graphql(client, other, READ_POLICY)["data"]["retentionPolicy"]["recoveryDays"] == 30


CRASHING_RUN = textwrap.dedent("""
    import os, signal, sys
    from uuid import UUID
    from api.cli import _settings
    from api.retention_job import RetentionJob
    from api.services import Services

    clinic, victim = sys.argv[1], UUID(sys.argv[2])

    def on_step(step, image_id):
        print(step, image_id, flush=True)
        if step == sys.argv[3] and image_id == victim:
            os.kill(os.getpid(), signal.SIGKILL)

    services = Services.build(_settings(None, run_background=False))
    RetentionJob(services).run(clinic_id=clinic, on_step=on_step)
""")


# Killed after the tombstone (read models emptied, key and blobs still there) or after the
# key (blobs still there): either way half-destroyed until the rerun finishes it.
@pytest.mark.parametrize("kill_after", ["tombstoned", "key_destroyed"])
def test_killed_halfway_and_rerun_on_two_machines_destroys_each_once(client, auth, clinic,
                                                                     cli_env, kill_after):
    services = client.app.state.services
    admin = auth("clinic_admin")
    patient = _patient(client, admin)
    images = [_image(client, admin, patient, 60 + n) for n in range(5)]
    _ready(services, clinic, *images)
    with RetentionJob(services) as job:
        order = [str(c.image_id) for c in job.plan(datetime.now(UTC), clinic)]
    assert sorted(order) == sorted(images)
    victim = order[1]
    env = {**os.environ, **cli_env}
    root = str(Path(__file__).resolve().parents[1])
    killed = subprocess.run([sys.executable, "-c", CRASHING_RUN, clinic, victim, kill_after],
                            cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert f"{kill_after} {victim}" in killed.stdout
    # Killed mid-run: the first image is done, the victim half-destroyed, the rest untouched.
    assert _fully_destroyed(services, order[0])
    assert _tombstones(client, victim) == 1
    assert services.app.key_store.is_destroyed(UUID(victim)) == (kill_after == "key_destroyed")
    assert (services.settings.blob_dir / victim[:2] / victim).exists()
    assert not _fully_destroyed(services, victim)
    for rest in order[2:]:
        assert _untouched(services, rest)

    # Rerun from cron on two machines at once (the real CLI).
    command = [sys.executable, "-m", "api.cli", "retention", "run", "--clinic", clinic]
    runs = [subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [o[1][-2000:] for o in outputs]
    finished_lines = [line for out, _err in outputs for line in out.splitlines()
                      if line.startswith("destroyed ") and "," not in line]
    # Every remaining image was finished by exactly one of the two runs.
    assert sorted(line.split()[1] for line in finished_lines) == sorted(order[1:])

    for image_id in images:
        assert _fully_destroyed(services, image_id), image_id
        assert _tombstones(client, image_id) == 1
        assert len(_certificates(client, image_id)) == 1
    with psycopg.connect(services.settings.database_url) as conn:
        unfinished = conn.execute(
            "SELECT count(*) FROM retention_destructions WHERE clinic_id = %s"
            " AND finished_at IS NULL", (clinic,)).fetchone()[0]
    assert unfinished == 0
    wait_until(lambda: len(services.audit.search(
        clinic, patient_id=UUID(patient), action="image.destroyed").entries) == 5)
    assert verify_chain(services.audit).ok
