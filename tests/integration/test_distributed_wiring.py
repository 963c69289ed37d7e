"""The product configured for distributed mode: blobs on S3, every event on Kafka."""

from __future__ import annotations

import boto3
from fastapi.testclient import TestClient

from api.app import create_app
from conftest import (
    bearer,
    jpeg_bytes,
    make_settings,
    register_patient,
    token_for,
    upload,
    wait_until,
)
from integration.test_kafka_relay import read_records


def test_upload_lands_in_s3_and_on_kafka_without_phi(database_factory, tmp_path,
                                                     kafka_bootstrap, s3_server):
    s3 = boto3.client("s3", endpoint_url=f"http://{s3_server.endpoint}",
                      aws_access_key_id="test", aws_secret_access_key="test",
                      region_name="us-east-1")
    s3.create_bucket(Bucket="ov-wiring")
    settings = make_settings(
        database_factory(), tmp_path, kafka_bootstrap=kafka_bootstrap,
        s3_endpoint=s3_server.endpoint, s3_access_key="test", s3_secret_key="test",
        s3_bucket="ov-wiring", s3_secure=False, s3_region="us-east-1",
    )
    marker = "Phimarkerwiring"
    headers = bearer(token_for(settings, "doctor", "clinic-wiring"))
    with TestClient(create_app(settings)) as client:
        patient_id = register_patient(client, headers, given_name=marker, family_name=marker)
        image_id = upload(client, headers, patient_id, jpeg_bytes(), filename=f"{marker}.jpg",
                          fields={"tags": marker}).json()["id"]
        keys = wait_until(lambda: [o["Key"] for o in s3.list_objects_v2(
            Bucket="ov-wiring").get("Contents", []) if o["Key"].startswith(image_id)]
            if len(s3.list_objects_v2(Bucket="ov-wiring").get("Contents", [])) >= 3 else None)
        assert {k.split("/")[1].split("-")[0] for k in keys} >= {"original", "preview.jpg",
                                                                  "thumbnail.jpg"}
        assert not (tmp_path / "blobs").exists() or not any((tmp_path / "blobs").rglob("*.jpg"))
        got = client.get(f"/api/v1/images/{image_id}/original", headers=headers)
        assert got.content == jpeg_bytes()
        records = read_records(kafka_bootstrap, 4, clinic="clinic-wiring")
    types = {dict(r.headers)["ce_type"].decode() for r in records}
    assert any("image.captured" in t for t in types)
    assert any("patient.registered" in t for t in types)
    assert all(marker.encode() not in r.value for r in records)
    assert all(marker.lower().encode() not in r.value.lower() for r in records)
