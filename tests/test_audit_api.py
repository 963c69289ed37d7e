"""The audit as the product serves it: GraphQL queries and `orthovault audit verify`."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
from fastapi.testclient import TestClient

from api.app import create_app
from conftest import (
    bearer,
    graphql,
    jpeg_bytes,
    make_settings,
    register_patient,
    token_for,
    upload,
    wait_until,
)

ENTRIES = """query($p: ID){ auditEntries(patientId: $p, first: 50){
    entries { action actorUser actorRole patientId imageId entryHash } hasNextPage } }"""
WHO = """query($p: ID!, $s: DateTime!, $u: DateTime!){ whoViewed(patientId: $p, since: $s,
    until: $u){ userId role kind imageId } }"""


def test_audit_queries_for_admins_only(client, auth):
    admin = auth("clinic_admin")
    patient_id = register_patient(client, admin)
    image_id = upload(client, admin, patient_id, jpeg_bytes()).json()["id"]
    graphql(client, auth("read_only"), """query($id: ID!){ image(id: $id){ id } }""",
            {"id": image_id})

    def entries():
        result = graphql(client, admin, ENTRIES, {"p": patient_id})
        return result["data"]["auditEntries"]["entries"]

    # Derivative entries arrive too, in any order: wait for the view itself.
    got = wait_until(lambda: (current := entries()) and "image.viewed.metadata" in
                     [e["action"] for e in current] and current)
    actions = [e["action"] for e in got]
    assert actions[:4] == ["patient.registered", "external_id_claim.claimed",
                           "patient.consent_granted", "image.captured"]
    assert "image.viewed.metadata" in actions
    assert all(len(e["entryHash"]) == 64 for e in got)
    views = graphql(client, admin, WHO, {"p": patient_id, "s": "2000-01-01T00:00:00Z",
                                         "u": "2999-01-01T00:00:00Z"})["data"]["whoViewed"]
    assert {"userId": "user-read_only", "role": "read_only", "kind": "metadata",
            "imageId": image_id} in views
    refused = graphql(client, auth("doctor"), ENTRIES, {"p": patient_id})
    assert refused["errors"][0]["extensions"]["code"] == "permission_denied"
    other = graphql(client, auth("clinic_admin", clinic_id="other"), ENTRIES, {"p": patient_id})
    assert other["data"]["auditEntries"]["entries"] == []


def test_cli_verify_passes_then_names_the_tampered_entry(database_factory, tmp_path):
    settings = make_settings(database_factory(), tmp_path)
    headers = bearer(token_for(settings, "clinic_admin", "c1"))
    with TestClient(create_app(settings)) as app_client:
        patient_id = register_patient(app_client, headers)
        upload(app_client, headers, patient_id, jpeg_bytes())
        audit = app_client.app.state.services.audit
        head = app_client.app.state.services.app.recorder.max_notification_id()
        wait_until(lambda: (audit.max_tracking_id("imaging") or 0) >= head)
    env = {**os.environ, "ORTHOVAULT_DATABASE_URL": settings.database_url,
           "ORTHOVAULT_MASTER_KEY": settings.master_key.get_secret_value(),
           "ORTHOVAULT_DATA_DIR": str(tmp_path)}

    def verify():
        return subprocess.run([sys.executable, "-m", "api.cli", "audit", "verify",
                               "--against-log"], env=env, capture_output=True, text=True,
                              check=False)

    ok = verify()
    assert ok.returncode == 0, ok.stderr
    assert "audit chain intact" in ok.stdout
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        position = conn.execute("SELECT position FROM audit_v1_entries ORDER BY position "
                                "OFFSET 2 LIMIT 1").fetchone()[0]
        conn.execute("UPDATE audit_v1_entries SET actor_user = 'mallory' WHERE position = %s",
                     (position,))
    broken = verify()
    assert broken.returncode == 1
    assert f"BROKEN at position {position}" in broken.stderr
