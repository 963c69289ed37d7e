"""Turning a received upload into a stored original and an ImageCaptured event.

Order matters for "nothing half-stored": every check runs before any byte is kept; the
encrypted blob is durable before the event commits; if the event does not commit, the
blob is removed again. An acknowledged upload therefore always has its blob, and a
refused one leaves neither event nor blob.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from adapters import file_types, image_codec
from api.errors import database_unavailable
from api.multipart_stream import ReceivedFile, ReceivedForm
from api.services import Services
from domain.errors import Conflict, InvalidInput, Unprocessable, UnsupportedMedia
from domain.image import ImageCategory
from domain.imaging import Imaging, NewImage, Written
from domain.values import Actor
from domain.views import VIEWS, parse_view

_CLOCK_SKEW = timedelta(minutes=5)
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f0e8c1a-3a53-4c55-9d7e-0c1b5d1f6a01")
MAX_IDEMPOTENCY_KEY = 200


@dataclass(frozen=True)
class UploadResult:
    image_id: UUID
    position: int
    replayed: bool
    visible: bool
    duplicate_of: UUID | None = None
    near_duplicates: tuple[UUID, ...] = ()
    reconciliation_id: UUID | None = None  # a DICOM object held: its patient did not match
    reasons: tuple[str, ...] = ()


def image_id_for(actor: Actor, patient_id: UUID, idempotency_key: str | None) -> UUID:
    """A deterministic id for a keyed upload: the event store's uniqueness dedupes races."""
    if idempotency_key is None:
        return uuid.uuid4()
    key = idempotency_key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise InvalidInput("invalid_idempotency_key",
                           f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters")
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{actor.clinic_id}\x1f{patient_id}\x1f{key}")


def _category(raw: str | None, view: str | None) -> tuple[ImageCategory, str]:
    """The category and who chose it: "user", or "default" (categorisation may refine)."""
    if raw:
        try:
            return ImageCategory(raw.strip().lower()), "user"
        except ValueError:
            allowed = ", ".join(c.value for c in ImageCategory)
            raise InvalidInput("invalid_category", f"category must be one of {allowed}") from None
    if view is not None:
        intraoral = VIEWS[view].intraoral
        return (ImageCategory.INTRAORAL if intraoral else ImageCategory.EXTRAORAL), "user"
    return ImageCategory.PHOTO, "default"


def _captured_at(raw: str | None, exif_time: datetime | None) -> datetime:
    if not raw:
        return exif_time or datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise InvalidInput("invalid_captured_at", "capturedAt must be ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment > datetime.now(UTC).replace(microsecond=0) + _CLOCK_SKEW:
        raise InvalidInput("invalid_captured_at", "capturedAt lies in the future")
    return moment


def _optional_uuid(raw: str | None) -> UUID | None:
    if not raw or not raw.strip():
        return None
    try:
        return UUID(raw.strip())
    except ValueError:
        raise InvalidInput("invalid_id", "session_id is not a valid id") from None


def _tags(raw: str | None) -> list[str]:
    return [t for t in (raw or "").split(",") if t.strip()]


@dataclass(frozen=True)
class UploadFields:
    """The per-upload choices a client may send beside the bytes."""

    view: str | None = None
    session_id: UUID | None = None
    category: str | None = None
    captured_at: str | None = None
    tags: tuple[str, ...] = ()

    @classmethod
    def from_form(cls, fields: dict[str, str]) -> UploadFields:
        return cls(
            view=parse_view(fields.get("view") or fields.get("slot")),
            session_id=_optional_uuid(fields.get("session_id") or fields.get("sessionId")),
            category=fields.get("category"),
            captured_at=fields.get("captured_at") or fields.get("capturedAt"),
            tags=tuple(_tags(fields.get("tags"))),
        )


def store_upload(
    services: Services, actor: Actor, patient_id: UUID, form: ReceivedForm,
    idempotency_key: str | None,
) -> UploadResult:
    files = [f for f in form.files if f.field_name == "file"]
    if len(files) != 1:
        raise InvalidInput("file_required", "send exactly one file in the multipart field 'file'")
    received = files[0]
    if received.size and file_types.sniff(received.head(file_types.SNIFF_BYTES)) == (
            "application/dicom"):
        return _store_dicom(services, actor, patient_id, received)
    return store_file(services, actor, patient_id, received,
                      UploadFields.from_form(form.fields), idempotency_key)


def _store_dicom(services: Services, actor: Actor, patient_id: UUID,
                 received: ReceivedFile) -> UploadResult:
    """DICOM carries its own category (modality) and identity (SOP Instance UID), and a
    patient mismatch is held for reconciliation instead of being filed."""
    from api.dicom_ingest import IngestOutcome, store_dicom_upload

    result = store_dicom_upload(services, actor, patient_id, received.handle, received.sha256,
                                received.filename)
    if result.outcome is IngestOutcome.RECONCILIATION:
        return UploadResult(patient_id, result.position, replayed=result.replayed,
                            visible=True, reconciliation_id=result.reconciliation_id,
                            reasons=result.reasons)
    assert result.image_id is not None
    return UploadResult(result.image_id, result.position, replayed=result.replayed,
                        visible=True)


def store_file(
    services: Services, actor: Actor, patient_id: UUID, received: ReceivedFile,
    fields: UploadFields, idempotency_key: str | None = None, *, wait: bool = True,
) -> UploadResult:
    """Check, store and record one file; the single path for every way images arrive."""
    category, category_source = _category(fields.category, fields.view)
    app = services.app

    app.check_capture(actor, patient_id, category, fields.session_id, fields.view)
    image_id = image_id_for(actor, patient_id, idempotency_key)
    if idempotency_key is not None and app.exists(image_id):
        return _replay(services, actor, image_id, received.sha256)

    if received.size == 0:
        raise Unprocessable("empty_file", "the uploaded file is empty")
    media_type = file_types.check_claims(
        file_types.sniff(received.head(file_types.SNIFF_BYTES)),
        received.filename, received.content_type,
    )
    if media_type not in image_codec.RASTER_TYPES:
        raise UnsupportedMedia("unsupported_media_type",
                               f"{media_type} uploads are not accepted on this endpoint")
    probe = image_codec.probe(received.handle, max_pixels=services.settings.max_image_pixels)
    camera = image_codec.camera_metadata(received.handle)
    captured_at = _captured_at(fields.captured_at, image_codec.exif_capture_time(camera))
    existing = services.gallery.same_file(actor.clinic_id, patient_id, received.sha256)
    if existing is not None and fields.session_id is None:
        # Exactly these bytes are already the patient's: report, do not store twice.
        return UploadResult(existing, 0, replayed=False, visible=True, duplicate_of=existing)
    similar = services.gallery.near_duplicates(actor.clinic_id, patient_id, probe.dhash)

    blob_name = f"original-{secrets.token_hex(4)}"
    original = services.blobs.put(image_id, blob_name, received.handle, media_type,
                                  owner_id=patient_id)
    metadata: dict[str, dict[str, object]] = {"fingerprint": {"dhash": probe.dhash}}
    if camera:
        metadata["exif"] = camera
    new = NewImage(
        image_id=image_id, patient_id=patient_id, original=original, width=probe.width,
        height=probe.height, category=category, view=fields.view, captured_at=captured_at,
        tags=list(fields.tags), filename=received.filename[:255],
        category_source=category_source, metadata=metadata, session_id=fields.session_id,
    )
    try:
        written = _capture(app, actor, new)
    except _SameKeyWon:
        # The same Idempotency-Key won a race a moment ago: keep its image, drop our copy.
        services.blobs.backend.delete_key(original.key)
        return _replay(services, actor, image_id, received.sha256)
    except BaseException as error:
        # Without its connection the commit's outcome is unknown and the event may be
        # stored: keep the blob (if it is unreferenced, `orthovault gc` removes it).
        if not database_unavailable(error):
            services.blobs.backend.delete_key(original.key)
        raise
    visible = True
    if wait:
        views = (services.gallery, services.sessions) if fields.session_id else (
            services.gallery,)
        visible = services.wait_for_read_models(written.position, *views)
    return UploadResult(image_id, written.position, replayed=False, visible=visible,
                        near_duplicates=tuple(similar))


class _SameKeyWon(Exception):
    pass


def _capture(app: Imaging, actor: Actor, new: NewImage) -> Written:
    """Commit the capture; a lost race on the session's version is simply retried."""
    for _attempt in range(5):
        try:
            return app.capture_image(actor, new)
        except IntegrityError:
            if app.exists(new.image_id):
                raise _SameKeyWon from None
    raise Conflict("concurrent_update", "the capture session kept changing; retry")


def _replay(services: Services, actor: Actor, image_id: UUID, sha256: str) -> UploadResult:
    image = services.app.get_image(image_id, actor)
    if image.original.sha256 != sha256:
        raise Conflict("idempotency_key_reused",
                       "this Idempotency-Key was used for a different file")
    return UploadResult(image_id, 0, replayed=True, visible=True)
