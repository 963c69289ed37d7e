"""Intraoral and model scans (STL, PLY, OBJ) into the patient's gallery.

The discipline of ``api/image_upload.py``: the whole file is parsed and validated
(``adapters/mesh_codec.load_mesh``: NaN corners, degenerate faces, index errors, cut files,
absurd counts) before a byte is kept; the sealed original is durable before its event
commits and removed again if the commit fails. The image is captured with category ``scan``
and its statistics (source ``mesh``) in the same transaction; the thumbnail, preview and
binary glTF come from ``workers/mesh_derivatives.py``.

The arch (upper/lower) comes from the form, else from the file name or the mesh's own name.
A scan is paired with the patient's latest scan of the other arch taken the same day, so a
viewer can show the two together; both scans name each other once the second arrives.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from adapters import mesh_codec
from adapters.mesh_codec import MEDIA_TYPES, MESH_MEDIA_TYPES, MeshInfo
from api.errors import database_unavailable
from api.image_upload import UploadFields, _captured_at, image_id_for
from api.multipart_stream import ReceivedFile, ReceivedForm
from api.services import Services
from domain.errors import Conflict, InvalidInput, Unprocessable
from domain.image import ImageCategory
from domain.imaging import NewImage
from domain.values import Actor

MESH_SOURCE = "mesh"
ARCHES = ("upper", "lower")
MAX_PAIR_CANDIDATES = 50


@dataclass(frozen=True)
class MeshUploadResult:
    image_id: UUID
    position: int
    replayed: bool
    duplicate_of: UUID | None
    stats: dict[str, Any]
    arch: str | None
    paired_with: UUID | None


def _arch(raw: str | None, filename: str, mesh: MeshInfo) -> str | None:
    if raw and raw.strip():
        arch = raw.strip().lower()
        if arch not in ARCHES:
            raise InvalidInput("invalid_arch", "arch must be upper or lower")
        return arch
    return mesh_codec.arch_from_name(filename, {"name": mesh.name} if mesh.name else None)


def mesh_metadata(mesh: MeshInfo, arch: str | None) -> dict[str, Any]:
    """JSON-safe statistics as ``Image.MetadataExtracted(source="mesh")`` records them."""
    stats = asdict(mesh.stats)
    for key, value in stats.items():
        if isinstance(value, tuple):
            stats[key] = list(value)
    return {"format": mesh.format.value, "arch": arch, **stats}


def _pair(services: Services, actor: Actor, patient_id: UUID, arch: str | None,
          captured_at: datetime) -> UUID | None:
    """The patient's latest other-arch scan captured the same day, if any."""
    if arch is None:
        return None
    page = services.gallery.images_of_patient(actor.clinic_id, patient_id,
                                              category=ImageCategory.SCAN.value,
                                              first=MAX_PAIR_CANDIDATES)
    for item in page.images:
        if item.media_type not in MESH_MEDIA_TYPES or \
                item.captured_at.date() != captured_at.date():
            continue
        other = services.app.get_image(item.id, actor).metadata.get(MESH_SOURCE, {})
        if other.get("arch") not in (None, arch):
            return item.id
    return None


def store_mesh_upload(services: Services, actor: Actor, patient_id: UUID, form: ReceivedForm,
                      idempotency_key: str | None) -> MeshUploadResult:
    files = [f for f in form.files if f.field_name == "file"]
    if len(files) != 1:
        raise InvalidInput("file_required", "send exactly one file in the multipart field 'file'")
    return store_mesh(services, actor, patient_id, files[0], form.fields, idempotency_key)


def store_mesh(services: Services, actor: Actor, patient_id: UUID, received: ReceivedFile,
               fields: dict[str, str], idempotency_key: str | None = None) -> MeshUploadResult:
    app = services.app
    upload = UploadFields.from_form({k: v for k, v in fields.items()
                                     if k in ("captured_at", "capturedAt", "tags")})
    app.check_capture(actor, patient_id, ImageCategory.SCAN)
    image_id = image_id_for(actor, patient_id, idempotency_key)
    if idempotency_key is not None and app.exists(image_id):
        return _replay(services, actor, image_id, received.sha256)
    if received.size == 0:
        raise Unprocessable(mesh_codec.EMPTY, "the uploaded file is empty")
    received.handle.seek(0)
    data = received.handle.read()
    mesh = mesh_codec.load_mesh(data, received.filename)  # every refusal happens here
    arch = _arch(fields.get("arch"), received.filename, mesh)
    metadata = mesh_metadata(mesh, arch)
    existing = services.gallery.same_file(actor.clinic_id, patient_id, received.sha256)
    if existing is not None:
        return MeshUploadResult(existing, 0, False, existing, metadata, arch, None)
    captured_at = _captured_at(upload.captured_at, None)
    paired = _pair(services, actor, patient_id, arch, captured_at)
    metadata["paired_with"] = str(paired) if paired else None

    original = services.blobs.put_bytes(image_id, f"original-{secrets.token_hex(4)}", data,
                                        MEDIA_TYPES[mesh.format], owner_id=patient_id)
    new = NewImage(
        image_id=image_id, patient_id=patient_id, original=original, width=0, height=0,
        category=ImageCategory.SCAN, view=None, captured_at=captured_at,
        tags=list(upload.tags), filename=received.filename[:255], category_source="user",
        metadata={MESH_SOURCE: metadata},
    )
    try:
        written = app.capture_image(actor, new)
    except IntegrityError:
        # The same Idempotency-Key won a race a moment ago: keep its scan, drop our copy.
        services.blobs.backend.delete_key(original.key)
        return _replay(services, actor, image_id, received.sha256)
    except BaseException as error:
        if not database_unavailable(error):  # else the commit may have happened: keep it
            services.blobs.backend.delete_key(original.key)
        raise
    if paired is not None:
        # The earlier scan learns its partner too (its metadata, recorded by us).
        partner = app.get_image(paired, actor).metadata.get(MESH_SOURCE, {})
        app.record_metadata(actor, paired, MESH_SOURCE, {**partner, "paired_with": str(image_id)})
    services.wait_for_read_models(written.position)
    return MeshUploadResult(image_id, written.position, False, None, metadata, arch, paired)


def _replay(services: Services, actor: Actor, image_id: UUID, sha256: str) -> MeshUploadResult:
    image = services.app.get_image(image_id, actor)
    if image.original.sha256 != sha256:
        raise Conflict("idempotency_key_reused",
                       "this Idempotency-Key was used for a different file")
    meta = image.metadata.get(MESH_SOURCE, {})
    paired = meta.get("paired_with")
    return MeshUploadResult(image_id, 0, True, None, meta, meta.get("arch"),
                            UUID(paired) if paired else None)
