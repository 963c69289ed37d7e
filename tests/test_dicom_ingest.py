"""DICOM ingest against real Postgres: filing, patient matching, reconciliation, refusals."""

from __future__ import annotations

import hashlib
import io
import uuid
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_support import DicomStack, dicom_bytes
from eventsourcing.utils import get_topic
from pydicom.data import get_testdata_files
from pydicom.encaps import encapsulate

from adapters.dicom_codec import read_dicom
from api.dicom_ingest import (
    IngestOutcome,
    file_reconciliation,
    ingest_dicom,
    reject_reconciliation,
)
from api.errors import STATUS
from conftest import wait_until
from domain.consent_rules import ConsentRefusal
from domain.errors import OrthovaultError
from domain.image import Image
from domain.reconciliation import DicomReconciliation, split_person_name

pytest_plugins = ("dicom_fixtures",)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _clinic() -> str:
    return f"clinic-{uuid.uuid4().hex[:8]}"


def _ingest(stack: DicomStack, clinic: str, data: bytes, patient_id: uuid.UUID | None = None,
            role: str = "clinic_admin"):
    return ingest_dicom(stack.services, stack.actor(clinic, role), patient_id, io.BytesIO(data),
                        hashlib.sha256(data).hexdigest())


def _stored_state(stack: DicomStack) -> tuple[int, int]:
    """(log head, blob files): both must stay put when an object is refused.

    A refused consent check is itself recorded (ConsentRefusal, by design: issue 7); that
    record is not counted.
    """
    refusals = stack.services.app.recorder.select_notifications(
        start=None, limit=1_000_000, topics=[get_topic(ConsentRefusal.Recorded)])
    head = (stack.services.app.recorder.max_notification_id() or 0) - len(refusals)
    blobs = sum(1 for p in stack.services.settings.blob_dir.rglob("*") if p.is_file())
    return head, blobs


def _refused(stack: DicomStack, clinic: str, data: bytes, patient: uuid.UUID | None,
             role: str = "clinic_admin") -> OrthovaultError:
    stack.wait_for_renders()
    before = _stored_state(stack)
    with pytest.raises(OrthovaultError) as caught:
        _ingest(stack, clinic, data, patient, role)
    assert 400 <= STATUS[caught.value.kind] < 500
    assert _stored_state(stack) == before, "a refused object left an event or a blob behind"
    return caught.value


# ---- the pydicom corpus -------------------------------------------------------------------

# Why each refused file is refused (pydicom 3.0.2 test data, pylibjpeg/pyjpegls installed).
EXPECTED_REFUSALS = {
    "JPEG-lossy.dcm": "dicom_invalid",  # corrupt JPEG codestream
    "JPEG2000-embedded-sequence-delimiter.dcm": "dicom_invalid",  # corrupt J2K codestream
    "MR_truncated.dcm": "dicom_truncated",
    # No SOP Instance / Study / Series UID: not addressable by DICOMweb or a resend.
    "JPEGLSNearLossless_08.dcm": "dicom_missing_uid",
    "JPEGLSNearLossless_16.dcm": "dicom_missing_uid",
    "SC_rgb_jls_lossy_sample.dcm": "dicom_missing_uid",
    "SC_rgb_jls_lossy_line.dcm": "dicom_missing_uid",
    "meta_missing_tsyntax.dcm": "dicom_missing_uid",
    "nested_priv_SQ.dcm": "dicom_missing_uid",
}


def _pixel_files() -> list[Path]:
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(get_testdata_files("*")):
            try:
                ds = pydicom.dcmread(name, force=True)
            except Exception:
                continue
            if any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                found.append(Path(name))
    return found


def _chart_for(data: bytes) -> dict[str, object]:
    """A patient whose chart agrees with what the file's header says (where it says it)."""
    try:
        info = read_dicom(data)
    except OrthovaultError:
        return {}
    family, given = split_person_name(info.patient_name or "")
    chart: dict[str, object] = {"given": given.split()[0] if given.split() else "Unknown",
                                "family": family or "Unknown"}
    if info.patient_id:
        chart["external_id"] = info.patient_id
    if info.patient_birth_date and info.patient_birth_date < date.today():
        chart["birth"] = info.patient_birth_date
    return chart


def test_every_pydicom_file_with_pixels_is_filed_or_refused_with_its_reason(
    dicom_stack: DicomStack,
) -> None:
    files = _pixel_files()
    assert len(files) >= 60
    filed: dict[str, uuid.UUID] = {}
    refused: dict[str, str] = {}
    for path in files:
        data = path.read_bytes()
        clinic = _clinic()  # several test files share UIDs; each gets a clinic of its own
        patient = dicom_stack.register(clinic, **_chart_for(data))
        try:
            result = _ingest(dicom_stack, clinic, data, patient)
        except OrthovaultError as error:
            refused[path.name] = error.code
            continue
        assert result.outcome is IngestOutcome.FILED, (path.name, result.reasons)
        filed[path.name] = result.image_id
    assert refused == {n: c for n, c in EXPECTED_REFUSALS.items() if n in refused}
    assert set(refused) == {n for n in EXPECTED_REFUSALS if any(p.name == n for p in files)}
    assert len(filed) == len(files) - len(refused)

    app = dicom_stack.services.app

    def rendered() -> bool:
        return all(app.repository.get(i).derivatives for i in filed.values())

    wait_until(rendered, timeout=120)
    for name, image_id in filed.items():
        image = app.repository.get(image_id)
        assert image.original.media_type == "application/dicom", name
        assert image.metadata["dicom"]["sop_instance_uid"], name
        thumb = dicom_stack.services.blobs.read(image.id, image.derivatives["thumbnail"])
        assert thumb[:3] == b"\xff\xd8\xff", name


# ---- filing and matching ------------------------------------------------------------------


def test_a_matching_object_is_filed_with_its_dicom_metadata(dicom_stack: DicomStack) -> None:
    clinic = _clinic()
    patient = dicom_stack.register(clinic, external_id="P-100", given="Ada", family="Lovelace")
    data = dicom_bytes(patient_id="P-100", patient_name="LOVELACE^ADA^M", modality="PX",
                       PixelSpacing=[0.1, 0.1])
    result = _ingest(dicom_stack, clinic, data, patient)
    assert result.outcome is IngestOutcome.FILED and not result.replayed
    image = dicom_stack.services.app.get_image(result.image_id, dicom_stack.actor(clinic))
    assert image.category == "radiograph" and image.patient_id == patient
    dicom = image.metadata["dicom"]
    assert dicom["modality"] == "PX"
    assert dicom["pixel_spacing"]["row_mm"] == pytest.approx(0.1)
    assert dicom["pixel_spacing"]["source"] == "pixel_spacing"
    assert (dicom["rows"], dicom["columns"], dicom["number_of_frames"]) == (64, 96, 1)
    assert dicom["patient"]["id"] == "P-100"

    # A modality resending after a lost acknowledgement gets the same image, nothing new.
    dicom_stack.wait_for_renders()  # the first one's preview is not the resend's write
    before = _stored_state(dicom_stack)
    again = _ingest(dicom_stack, clinic, data, patient)
    assert again.replayed and again.image_id == result.image_id
    assert _stored_state(dicom_stack) == before

    # The same SOP Instance UID with other bytes is refused.
    other = dicom_bytes(patient_id="P-100", patient_name="Lovelace^Ada",
                        sop_uid=read_dicom(data).sop_instance_uid,
                        pixels=np.zeros((8, 8), np.uint16))
    assert _refused(dicom_stack, clinic, other, patient).code == "dicom_instance_conflict"


def test_without_a_target_the_patient_id_finds_the_patient(dicom_stack: DicomStack) -> None:
    clinic = _clinic()
    patient = dicom_stack.register(clinic, external_id="X-7", given="Grace", family="Hopper")
    result = _ingest(dicom_stack, clinic,
                     dicom_bytes(patient_id="X-7", patient_name="Hopper^Grace"))
    assert result.outcome is IngestOutcome.FILED and result.patient_id == patient

    # Same PatientID in another clinic: not this clinic's patient.
    elsewhere = _ingest(dicom_stack, _clinic(),
                        dicom_bytes(patient_id="X-7", patient_name="Hopper^Grace"))
    assert elsewhere.outcome is IngestOutcome.RECONCILIATION
    assert elsewhere.reasons == ("unknown_patient_id",)

    # A colliding PatientID with another name is the wrong-patient case: held, not filed.
    collision = _ingest(dicom_stack, clinic,
                        dicom_bytes(patient_id="X-7", patient_name="Turing^Alan"))
    assert collision.outcome is IngestOutcome.RECONCILIATION
    assert collision.reasons == ("patient_name_mismatch",)


def test_mismatch_opens_an_item_that_can_be_resolved(dicom_stack: DicomStack) -> None:
    clinic = _clinic()
    stack = dicom_stack
    patient = stack.register(clinic, external_id="R-1", given="Ada", family="Lovelace")
    data = dicom_bytes(patient_id="R-2", patient_name="Byron^Ada", birth_date="20110101")
    result = _ingest(stack, clinic, data, patient)
    assert result.outcome is IngestOutcome.RECONCILIATION
    assert set(result.reasons) == {"patient_id_mismatch", "patient_name_mismatch",
                                   "birth_date_mismatch"}
    sop = read_dicom(data).sop_instance_uid
    images = stack.services.app.recorder.select_notifications(None, 1_000_000)
    captured = [n for n in images if n.topic.endswith("Image.Captured")]
    assert all(stack.services.app.mapper.to_domain_event(n).originator_id != result.image_id
               for n in captured)
    stack.wait_index(result.position)
    index = stack.services.dicom_index
    [item] = index.open_reconciliations(clinic)
    assert item.item_id == result.reconciliation_id and item.sop_uid == sop
    assert index.instance_by_sop(clinic, sop) is None
    assert index.open_reconciliations(_clinic()) == []  # tenancy

    held = stack.services.app.get_reconciliation(result.reconciliation_id, stack.actor(clinic))
    assert stack.services.blobs.exists(held.original)
    image_id = file_reconciliation(stack.services, stack.actor(clinic, "doctor"),
                                   result.reconciliation_id)
    image = stack.services.app.get_image(image_id, stack.actor(clinic))
    assert image.patient_id == patient and image.metadata["dicom"]["sop_instance_uid"] == sop
    assert stack.services.blobs.read(image.id, image.original) == data
    assert not stack.services.blobs.exists(held.original)
    stack.wait_all()
    assert index.open_reconciliations(clinic) == []
    assert index.instance_by_sop(clinic, sop).image_id == image_id
    # The gallery shows it like any other image.
    page = stack.services.gallery.images_of_patient(clinic, patient)
    assert [i.id for i in page.images] == [image_id]

    # Resending the object now answers with the filed image.
    again = _ingest(stack, clinic, data, patient)
    assert again.outcome is IngestOutcome.FILED and again.image_id == image_id and again.replayed
    with pytest.raises(OrthovaultError) as closed:
        file_reconciliation(stack.services, stack.actor(clinic), result.reconciliation_id)
    assert closed.value.code == "reconciliation_closed"


def test_an_item_can_be_reassigned_or_rejected(dicom_stack: DicomStack) -> None:
    clinic = _clinic()
    stack = dicom_stack
    other = stack.register(clinic, external_id="B-2", given="Mary", family="Shelley")
    unknown = _ingest(stack, clinic, dicom_bytes(patient_id="NOPE", patient_name="Doe^Jane"))
    assert unknown.reasons == ("unknown_patient_id",)
    with pytest.raises(OrthovaultError) as needs:
        file_reconciliation(stack.services, stack.actor(clinic), unknown.reconciliation_id)
    assert needs.value.code == "reconciliation_needs_patient"
    with pytest.raises(OrthovaultError) as denied:
        file_reconciliation(stack.services, stack.actor(clinic, "read_only"),
                            unknown.reconciliation_id, other)
    assert denied.value.code == "permission_denied"
    with pytest.raises(OrthovaultError) as foreign:
        file_reconciliation(stack.services, stack.actor(_clinic()), unknown.reconciliation_id,
                            other)
    assert foreign.value.code == "reconciliation_not_found"

    image_id = file_reconciliation(stack.services, stack.actor(clinic), unknown.reconciliation_id,
                                   other)
    item = stack.services.app.get_reconciliation(unknown.reconciliation_id, stack.actor(clinic))
    assert item.status == "reassigned" and item.filed_patient_id == other
    assert stack.services.app.get_image(image_id, stack.actor(clinic)).patient_id == other

    rejected = _ingest(stack, clinic, dicom_bytes(patient_id="NOPE2", patient_name="Roe^Rick"))
    held = stack.services.app.get_reconciliation(rejected.reconciliation_id, stack.actor(clinic))
    reject_reconciliation(stack.services, stack.actor(clinic), rejected.reconciliation_id,
                          "sent by the wrong practice")
    item = stack.services.app.get_reconciliation(rejected.reconciliation_id, stack.actor(clinic))
    assert item.status == "rejected"
    assert not stack.services.blobs.exists(held.original)
    stack.wait_all()
    assert stack.services.dicom_index.open_reconciliations(clinic) == []
    events = stack.services.app.repository.get(rejected.reconciliation_id)
    assert isinstance(events, DicomReconciliation)


def test_photographs_need_consent_and_the_front_desk_cannot_send_dicom(
    dicom_stack: DicomStack,
) -> None:
    clinic = _clinic()
    patient = dicom_stack.register(clinic, external_id="C-1", consent=False)
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[..., 0] = 200
    photo = dicom_bytes(rgb, modality="XC", patient_id="C-1",
                        sop_class="1.2.840.10008.5.1.4.1.1.77.1.4")
    assert _refused(dicom_stack, clinic, photo, patient).code == "consent_required"
    radiograph = dicom_bytes(patient_id="C-1")
    assert _refused(dicom_stack, clinic, radiograph, patient, "front_desk").code == \
        "capture_limited"
    assert _refused(dicom_stack, clinic, radiograph, patient, "billing").code == \
        "permission_denied"
    assert _refused(dicom_stack, _clinic(), radiograph, patient).code == "patient_not_found"

    from domain.patient import ConsentScope

    dicom_stack.services.app.grant_consent(dicom_stack.actor(clinic), patient,
                                           ConsentScope.CLINICAL_PHOTOGRAPHY)
    result = _ingest(dicom_stack, clinic, photo, patient)
    image = dicom_stack.services.app.get_image(result.image_id, dicom_stack.actor(clinic))
    assert image.category == "photo"


# ---- refusals -------------------------------------------------------------------------------


def _no_pixels() -> bytes:
    ds = parse_dataset(dicom_bytes())
    del ds.PixelData
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _unsupported_syntax() -> bytes:
    ds = parse_dataset(dicom_bytes())
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2: no decoder here
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def parse_dataset(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


@pytest.mark.parametrize(("case", "code"), [
    ("truncated", "dicom_truncated"),
    ("no_pixels", "dicom_no_pixel_data"),
    ("wrong_preamble", "dicom_not_dicom"),
    ("unsupported_syntax", "dicom_unsupported_transfer_syntax"),
    ("empty", "dicom_not_dicom"),
])
def test_bad_objects_are_refused_with_a_code_and_leave_nothing(
    dicom_stack: DicomStack, case: str, code: str,
) -> None:
    good = dicom_bytes(patient_id="Z-1", pixels=(np.arange(256 * 256) % 4000)
                       .astype(np.uint16).reshape(256, 256))
    data = {
        "truncated": good[: len(good) * 2 // 3],
        "no_pixels": _no_pixels(),
        "wrong_preamble": good[:128] + b"DICX" + good[132:],
        "unsupported_syntax": _unsupported_syntax(),
        "empty": b"",
    }[case]
    clinic = _clinic()
    patient = dicom_stack.register(clinic, external_id="Z-1")
    assert _refused(dicom_stack, clinic, data, patient).code == code
    # And the server keeps going: a good object right after is filed.
    assert _ingest(dicom_stack, clinic, good, patient).outcome is IngestOutcome.FILED


def test_the_captured_event_and_its_metadata_commit_together(dicom_stack: DicomStack) -> None:
    clinic = _clinic()
    patient = dicom_stack.register(clinic, external_id="T-1")
    result = _ingest(dicom_stack, clinic, dicom_bytes(patient_id="T-1"), patient)
    app = dicom_stack.services.app
    topics = [get_topic(Image.Captured), get_topic(Image.MetadataExtracted)]
    mine = [n for n in app.recorder.select_notifications(None, 10_000_000, topics=topics)
            if n.originator_id == result.image_id]
    # One transaction: consecutive log positions, the metadata event last.
    assert [n.topic for n in mine] == topics
    assert mine[1].id == mine[0].id + 1 == result.position


def test_an_exported_photo_comes_back_with_its_view(dicom_stack: DicomStack) -> None:
    from datetime import datetime

    from PIL import Image as PILImage
    from pydicom.uid import generate_uid

    from adapters.dicom_export import ExportPatient, ExportSeries, ExportStudy, photo_to_dicom

    clinic = _clinic()
    patient = dicom_stack.register(clinic, external_id="V-1", given="Ada", family="Lovelace")
    jpeg = io.BytesIO()
    PILImage.new("RGB", (64, 48), (180, 90, 60)).save(jpeg, "JPEG")
    data = photo_to_dicom(
        jpeg.getvalue(), patient=ExportPatient("V-1", "Lovelace", "Ada", date(2012, 4, 1)),
        study=ExportStudy(generate_uid(), date(2026, 1, 10)),
        series=ExportSeries(generate_uid()), view="IV07", captured_at=datetime(2026, 1, 10))
    result = _ingest(dicom_stack, clinic, data, patient)
    image = dicom_stack.services.app.get_image(result.image_id, dicom_stack.actor(clinic))
    assert (image.category, image.view) == ("intraoral", "IV07")


def test_the_worker_records_a_render_failure_and_keeps_going(dicom_stack: DicomStack) -> None:
    """An object that passed ingest but cannot be rendered later (a decoder regression, a
    damaged copy restored from backup) is recorded as ProcessingFailed with the codec's code."""
    from datetime import UTC, datetime

    from api.dicom_ingest import CATEGORY_SOURCE, instance_image_id
    from domain.image import ImageCategory
    from domain.imaging import NewImage

    clinic = _clinic()
    stack = dicom_stack
    patient = stack.register(clinic, external_id="W-9")
    good = dicom_bytes(patient_id="W-9", pixels=np.ones((300, 300), np.uint16))
    broken = good[: len(good) // 2]
    actor = stack.actor(clinic)
    image_id = instance_image_id(clinic, f"2.25.{uuid.uuid4().int}")
    original = stack.services.blobs.put_bytes(image_id, "original", broken, "application/dicom",
                                              owner_id=patient)
    stack.services.app.capture_dicom_image(actor, NewImage(
        image_id=image_id, patient_id=patient, original=original, width=300, height=300,
        category=ImageCategory.RADIOGRAPH, view=None, captured_at=datetime.now(UTC), tags=[],
        filename="broken.dcm", category_source=CATEGORY_SOURCE), {})
    after = _ingest(stack, clinic, good, patient)

    app = stack.services.app
    wait_until(lambda: app.repository.get(image_id).processing_failure, timeout=60)
    assert app.repository.get(image_id).processing_failure == "dicom_render:dicom_truncated"
    wait_until(lambda: app.repository.get(after.image_id).derivatives, timeout=60)


def test_reconciliation_over_rest(dicom_stack: DicomStack) -> None:
    stack = dicom_stack
    clinic = _clinic()
    target = stack.register(clinic, external_id="H-1", given="Ada", family="Lovelace")
    other = stack.register(clinic, external_id="H-2", given="Mary", family="Shelley")
    typo = _ingest(stack, clinic, dicom_bytes(patient_id="H-1", patient_name="Lovelase^Ada"),
                   target)
    stranger = _ingest(stack, clinic, dicom_bytes(patient_id="H-9", patient_name="Shelley^Mary"))
    spam = _ingest(stack, clinic, dicom_bytes(patient_id="H-8", patient_name="Nobody^Known"))
    stack.wait_all()
    client, headers = stack.client, stack.headers(clinic)
    url = "/api/v1/dicom/reconciliations"

    listed = client.get(url, headers=headers).json()
    assert {i["id"] for i in listed} == {str(typo.reconciliation_id),
                                         str(stranger.reconciliation_id),
                                         str(spam.reconciliation_id)}
    assert client.get(url, headers=stack.headers(clinic, "read_only")).status_code == 403
    assert client.get(url, headers=stack.headers(_clinic())).json() == []
    detail = client.get(f"{url}/{typo.reconciliation_id}", headers=headers).json()
    assert detail["reasons"] == ["patient_name_mismatch"]
    assert detail["header"]["patientName"] == "Lovelase^Ada"
    assert client.get(f"{url}/{typo.reconciliation_id}",
                      headers=stack.headers(_clinic())).status_code == 404

    resolved = client.post(f"{url}/{typo.reconciliation_id}/resolve", headers=headers)
    assert resolved.status_code == 201
    reassigned = client.post(f"{url}/{stranger.reconciliation_id}/reassign", headers=headers,
                             json={"patientId": str(other)})
    assert reassigned.status_code == 201
    assert client.post(f"{url}/{spam.reconciliation_id}/reject", headers=headers,
                       json={"reason": ""}).json()["code"] == "reason_required"
    assert client.post(f"{url}/{spam.reconciliation_id}/reject", headers=headers,
                       json={"reason": "not ours"}).status_code == 200
    again = client.post(f"{url}/{spam.reconciliation_id}/reject", headers=headers,
                        json={"reason": "twice"})
    assert again.status_code == 409 and again.json()["code"] == "reconciliation_closed"
    stack.wait_all()
    assert client.get(url, headers=headers).json() == []
    app = stack.services.app
    image = app.get_image(uuid.UUID(reassigned.json()["imageId"]), stack.actor(clinic))
    assert image.patient_id == other
    assert app.get_image(uuid.UUID(resolved.json()["imageId"]),
                         stack.actor(clinic)).patient_id == target
