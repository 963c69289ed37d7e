"""Live capture guidance on preview frames."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
from PIL import Image, ImageFilter
from unit.test_photo_quality import synthetic_face

from conftest import graphql, register_patient

OPEN = """mutation($i: OpenCaptureSessionInput!){ openCaptureSession(input: $i){ id } }"""


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _guide(client, headers, session_id, data, slot="EV15"):
    return client.post(f"/api/v1/capture-sessions/{session_id}/guidance",
                       files={"frame": ("frame.jpg", data, "image/jpeg")},
                       data={"slot": slot}, headers=headers)


def test_guidance_hints_for_dark_blurred_and_good_frames(client, auth):
    headers = auth("clinical_staff")
    patient_id = register_patient(client, headers)
    session_id = graphql(client, headers, OPEN, {"i": {
        "patientId": patient_id, "scheduledAt": datetime.now(UTC).isoformat()}})["data"][
        "openCaptureSession"]["id"]
    face = synthetic_face(seed=5)  # 512x640, a sharp, well-lit frontal portrait
    good = _guide(client, headers, session_id, _jpeg(face)).json()
    assert good["status"] == "pass", good
    assert good["hints"] == []
    dark = _guide(client, headers, session_id,
                  _jpeg(Image.fromarray((np.asarray(face) * 0.3).astype("uint8")))).json()
    assert dark["status"] != "pass" and "too dark" in dark["hints"]
    blurred = _guide(client, headers, session_id,
                     _jpeg(face.filter(ImageFilter.GaussianBlur(5)))).json()
    assert "blurred" in blurred["hints"]
    tilted = _guide(client, headers, session_id, _jpeg(Image.fromarray(
        np.tile(np.repeat(np.array([30, 220], dtype="uint8"), 20), (480, 16))).rotate(
        4, resample=Image.Resampling.BICUBIC, fillcolor=128).convert("RGB"))).json()
    assert any("tilted" in hint for hint in tilted["hints"]) or tilted["status"] != "pass"


def test_guidance_refuses_bad_frames(client, auth):
    headers = auth("clinical_staff")
    patient_id = register_patient(client, headers)
    session_id = graphql(client, headers, OPEN, {"i": {"patientId": patient_id}})["data"][
        "openCaptureSession"]["id"]
    big = _jpeg(Image.new("RGB", (1600, 1200), "white"))
    cases = [(big, "EV15", 413, "frame_too_large"), (b"nope", "EV15", 422, "corrupt_image"),
             (_jpeg(Image.new("RGB", (64, 64))), "IV27", 400, "unknown_slot")]
    for data, slot, status, code in cases:
        r = _guide(client, headers, session_id, data, slot)
        assert (r.status_code, r.json()["code"]) == (status, code)
    outsider = auth("clinical_staff", clinic_id="other")
    assert _guide(client, outsider, session_id, big).status_code == 404
