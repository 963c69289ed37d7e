"""Access records for every view, and crypto-shredding that really destroys."""

from __future__ import annotations

import os
import shutil
import subprocess

import psycopg
import pytest

from conftest import graphql, jpeg_bytes, register_patient, stored_events, upload, wait_until
from domain.access import AccessRecord
from domain.events import ShreddedEvent
from domain.image import Image

IMAGES = """query($id: ID!){ patient(id: $id){ images(first: 10){ edges { node {
    id thumbnailUrl tags } } } } }"""
IMAGE = """query($id: ID!){ image(id: $id){ id } }"""
DESTROY = """mutation($i: DestroyImageInput!){ destroyImage(input: $i){ id } }"""


def _accesses(client, image_id):
    return sorted(
        (r.kind, r.actor.user_id, r.actor.role)
        for r in stored_events(client, AccessRecord.Recorded) if str(r.image_id) == image_id
    )


def test_every_view_and_download_is_recorded(client, auth, clinic):
    admin = auth("clinic_admin")
    patient_id = register_patient(client, admin)
    image_id = upload(client, admin, patient_id, jpeg_bytes()).json()["id"]
    wait_until(lambda: graphql(client, admin, IMAGES, {"id": patient_id})["data"]["patient"]
               ["images"]["edges"][0]["node"]["thumbnailUrl"])
    before = len(_accesses(client, image_id))
    viewer = auth("read_only")
    graphql(client, viewer, IMAGE, {"id": image_id})
    for kind in ("thumbnail", "preview", "original"):
        assert client.get(f"/api/v1/images/{image_id}/{kind}", headers=viewer).status_code == 200
    got = _accesses(client, image_id)
    assert len(got) == before + 4
    assert {("metadata", "user-read_only", "read_only"), ("thumbnail", "user-read_only",
            "read_only"), ("preview", "user-read_only", "read_only"),
            ("original", "user-read_only", "read_only")} <= set(got)
    records = [r for r in stored_events(client, AccessRecord.Recorded)
               if str(r.image_id) == image_id]
    assert all(r.clinic_id == clinic and str(r.patient_id) == patient_id for r in records)
    assert all(r.timestamp is not None for r in records)
    # A refused view is not an access.
    assert client.get(f"/api/v1/images/{image_id}/original",
                      headers=auth("billing")).status_code == 403
    assert len(_accesses(client, image_id)) == before + 4


def _dump(database_url: str) -> str:
    """The database as pg_dump sees it (falls back to COPY of every table if the client
    and server versions differ)."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump:
        done = subprocess.run([pg_dump, "--data-only", database_url], capture_output=True,
                              text=True, check=False, errors="replace")
        if done.returncode == 0:
            return done.stdout
    chunks = []
    with psycopg.connect(database_url) as conn:
        tables = conn.execute("SELECT schemaname, tablename FROM pg_tables WHERE schemaname "
                              "NOT IN ('pg_catalog', 'information_schema')").fetchall()
        for schema, table in tables:
            with conn.cursor().copy(f'COPY "{schema}"."{table}" TO STDOUT') as copy:
                chunks.extend(bytes(block).decode("utf-8", "replace") for block in copy)
    return "".join(chunks)


def _blob_bytes(root) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_destroyed_image_cannot_be_recovered(client, auth, shared_settings):
    admin = auth("clinic_admin")
    marker = "phimarker" + os.urandom(4).hex()
    patient_id = register_patient(client, admin)
    pixels = jpeg_bytes(seed=11)
    image_id = upload(client, admin, patient_id, pixels, filename=f"{marker}.jpg",
                      fields={"tags": marker}).json()["id"]
    wait_until(lambda: graphql(client, admin, IMAGES, {"id": patient_id})["data"]["patient"]
               ["images"]["edges"][0]["node"]["thumbnailUrl"])
    services = client.app.state.services
    image_dir = services.settings.blob_dir / image_id[:2] / image_id
    assert len(list(image_dir.iterdir())) == 3  # original, preview, thumbnail
    # Before: the read model shows the tag; the event store holds it only encrypted.
    dump = _dump(shared_settings.database_url)
    assert marker in dump
    with psycopg.connect(shared_settings.database_url) as conn:
        states = conn.execute("SELECT state FROM imaging_events WHERE originator_id = %s",
                              (image_id,)).fetchall()
    assert states and all(marker.encode() not in bytes(s[0]) for s in states)
    assert pixels[200:264] not in _blob_bytes(services.settings.blob_dir)

    result = graphql(client, admin, DESTROY, {"i": {"imageId": image_id, "reason": "erasure"}})
    assert result["data"]["destroyImage"]["id"] == image_id

    dump = _dump(shared_settings.database_url)
    assert marker not in dump
    assert not image_dir.exists()
    with psycopg.connect(shared_settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM subject_keys WHERE subject_id = %s",
                            (image_id,)).fetchone()[0] == 0
        rows = conn.execute("SELECT count(*) FROM gallery_v1_images WHERE image_id = %s",
                            (image_id,)).fetchone()[0]
    assert rows == 0
    # The log still holds the image's events, but only their envelopes can be read.
    events = list(services.app.events.get(image_id))
    assert isinstance(events[0], ShreddedEvent)
    assert events[0].header["actor"]["role"] == "clinic_admin"  # who/when survive
    assert isinstance(events[-1], Image.Destroyed) and events[-1].reason == "erasure"
    # Even holding the master key, nothing opens: the data key is gone.
    with pytest.raises(Exception, match="destroyed"):
        services.app.key_store.existing_key(services.app.repository.get(image_id).id)
    # The image is gone for every caller; access records (no PHI) remain for the audit.
    assert graphql(client, admin, IMAGE, {"id": image_id})["errors"][0]["extensions"][
        "code"] == "image_not_found"
    assert client.get(f"/api/v1/images/{image_id}/original", headers=admin).status_code == 404
    assert stored_events(client, AccessRecord.Recorded)
    # Projections kept going past the shredded events: the next upload still shows up.
    newer = upload(client, admin, patient_id, jpeg_bytes(seed=12)).json()["id"]
    ids = [e["node"]["id"] for e in graphql(client, admin, IMAGES, {"id": patient_id})
           ["data"]["patient"]["images"]["edges"]]
    assert ids == [newer]
    # Destroying again is harmless and still answers only to the owning clinic.
    again = graphql(client, admin, DESTROY, {"i": {"imageId": image_id, "reason": "again"}})
    assert again["data"]["destroyImage"]["id"] == image_id
    outsider = auth("clinic_admin", clinic_id="elsewhere")
    assert graphql(client, outsider, DESTROY, {"i": {"imageId": image_id, "reason": "x"}})[
        "errors"][0]["extensions"]["code"] == "image_not_found"


def test_destroy_requires_a_reason(client, auth):
    admin = auth("clinic_admin")
    patient_id = register_patient(client, admin)
    image_id = upload(client, admin, patient_id, jpeg_bytes()).json()["id"]
    result = graphql(client, admin, DESTROY, {"i": {"imageId": image_id, "reason": "  "}})
    assert result["errors"][0]["extensions"]["code"] == "reason_required"
