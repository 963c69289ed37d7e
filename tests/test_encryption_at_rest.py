"""What sits in PostgreSQL and the blob folder is unreadable without the keys.

(Destruction, where the key itself goes, is tested in test_access_and_shredding.py.)
"""

from __future__ import annotations

import base64
import os
from uuid import UUID

import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.subject_cipher import DecryptionFailed, open_sealed
from api.app import create_app
from conftest import jpeg_bytes, make_settings, register_patient, upload


def test_patient_and_image_events_and_blobs_hold_only_ciphertext(client, auth,
                                                                shared_settings):
    admin = auth("clinic_admin")
    marker = "Phimarker" + os.urandom(4).hex()
    patient_id = register_patient(client, admin, given_name=marker, family_name=marker)
    pixels = jpeg_bytes(seed=21)
    image_id = upload(client, admin, patient_id, pixels, filename=f"{marker}.jpg",
                      fields={"tags": marker.lower()}).json()["id"]
    with psycopg.connect(shared_settings.database_url) as conn:
        rows = conn.execute(
            "SELECT state, topic FROM imaging_events WHERE originator_id IN (%s, %s)",
            (patient_id, image_id)).fetchall()
        keys = conn.execute("SELECT * FROM subject_keys WHERE subject_id IN (%s, %s)",
                            (patient_id, image_id)).fetchall()
    assert len(rows) >= 3 and len(keys) == 2
    for state, topic in rows:
        assert marker.encode() not in bytes(state) and marker.lower().encode() not in \
            bytes(state), topic
        assert b"2012-04-01" not in bytes(state)  # the birth date
    # The data keys are stored wrapped: no row holds a raw 32-byte key next to its subject
    # that opens the events without the master key (checked below with a wrong master key).
    blobs = b"".join(p.read_bytes() for p in shared_settings.blob_dir.rglob("*") if p.is_file())
    assert pixels[300:364] not in blobs and marker.encode() not in blobs


def test_a_wrong_master_key_opens_nothing(client, auth, shared_settings):
    admin = auth("clinic_admin")
    patient_id = register_patient(client, admin, given_name="Grace", family_name="Hopper")
    with psycopg.connect(shared_settings.database_url) as conn:
        wrapped = bytes(conn.execute("SELECT wrapped_key FROM subject_keys WHERE subject_id"
                                     " = %s", (patient_id,)).fetchone()[0])
    wrong = b"z" * 32
    with pytest.raises(DecryptionFailed):
        open_sealed(wrong, wrapped, UUID(patient_id).bytes)
    # The same database and blob folder under another master key (a stolen backup, or a
    # mistyped key): the server refuses to start rather than serve errors or write keys
    # under the wrong master key.
    thief = make_settings(shared_settings.database_url, shared_settings.data_dir,
                          master_key=base64.b64encode(wrong).decode(), run_background=False)
    with pytest.raises(RuntimeError, match="ORTHOVAULT_MASTER_KEY is not the key"), \
            TestClient(create_app(thief)):
        pass
