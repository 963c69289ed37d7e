"""DICOMweb (PS3.18) under /dicomweb: STOW-RS, QIDO-RS and WADO-RS for viewers such as OHIF.

Same rules as the REST routes: bearer auth, every lookup filtered by the caller's clinic (a
UID of another clinic answers 404), the permission table (QIDO and /metadata are metadata;
thumbnails follow the thumbnail grade; pixels and files need the full view grant), and an
access record for every instance whose metadata, thumbnail, rendering or bytes are served.

What viewers (OHIF, dicomweb-client) rely on: QIDO at root, study and series level answers
the PS3.18 default attributes plus ``includefield`` and refuses (400) a matching key it
cannot apply rather than ignore it; /metadata names Pixel Data and large binary values by
BulkDataURI (``api/dicomweb_bulkdata.py``); rendered resources take ``viewport`` and
``window`` (``api/rendered_options.py``).

Decisions: retrieval serves each instance as stored (no transcoding; a requested
transfer-syntax other than the stored one is not honoured). QIDO and /metadata report the
chart's patient identity (the one the image is filed under), which after reconciliation may
differ from the header inside the stored file.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Sequence
from datetime import date
from typing import Annotated, Any

import numpy as np
import pydicom
import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from PIL import Image as PILImage
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.encaps import generate_frames

from adapters import dicom_codec, dicom_status
from adapters.image_codec import JPEG_QUALITY, THUMBNAIL_PX
from adapters.isolated_decoding import pixel_array_isolated, render_dicom_isolated
from api import dicomweb_bulkdata as bulkdata
from api.dicom_ingest import (
    DicomIngestResult,
    IngestOutcome,
    ingest_dicom,
)
from api.errors import problem
from api.multipart_related import (
    close_parts,
    encode_related,
    new_boundary,
    parse_related_type,
    receive_related,
    related_content_type,
)
from api.rendered_options import RenderOptions, apply_viewport, render_options
from api.rest_images import current_actor, services_of
from api.services import Services
from domain.access import AccessKind
from domain.errors import InvalidInput, NotFound, OrthovaultError, UnsupportedMedia
from domain.image import Image
from domain.permissions import Grant, Permission, require
from domain.values import Actor
from projections.dicom_index import (
    IndexedInstance,
    IndexedSeries,
    IndexedStudy,
    StudyQuery,
)

log = structlog.get_logger("orthovault.dicomweb")
router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])
ActorDep = Annotated[Actor, Depends(current_actor)]

DICOM_JSON = "application/dicom+json"
DICOM = "application/dicom"
MAX_LIMIT = 1000

# PS3.18 Table I.2-1 / 10.5.3-1 status codes carried in FailureReason: adapters/dicom_status.
FAILURE_CANNOT_UNDERSTAND = dicom_status.CANNOT_UNDERSTAND



# Encapsulated transfer syntaxes and the media type of one of their frames.
_FRAME_TYPES = {
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
}
_NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"}
_PRIVATE_CREATOR = "ORTHOVAULT"


# ---- DICOM JSON model ------------------------------------------------------------------


def _element(vr: str, *values: Any) -> dict[str, Any]:
    present = [v for v in values if v is not None and v != ""]
    return {"vr": vr, "Value": present} if present else {"vr": vr}


def _person_name(family: str | None, given: str | None) -> dict[str, Any]:
    if not family and not given:
        return {"vr": "PN"}
    return {"vr": "PN", "Value": [{"Alphabetic": f"{family or ''}^{given or ''}"}]}


def _da(value: date | None) -> str | None:
    return value.strftime("%Y%m%d") if value else None


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + router.prefix


def _study_url(request: Request, study: str) -> str:
    return f"{_base(request)}/studies/{study}"


def _series_url(request: Request, study: str, series: str) -> str:
    return f"{_study_url(request, study)}/series/{series}"


def _instance_url(request: Request, study: str, series: str, sop: str) -> str:
    return f"{_series_url(request, study, series)}/instances/{sop}"


# PS3.18 Table 10.6.3-3, -4 and -5: what every QIDO answer of a level carries, whatever
# includefield says (an attribute we do not know is returned without a value).
STUDY_DEFAULTS = ("00080020", "00080030", "00080050", "00080056", "00080061", "00080090",
                  "00081190", "00100010", "00100020", "00100030", "00100040", "0020000D",
                  "00200010", "00201206", "00201208")
SERIES_DEFAULTS = ("00080060", "0008103E", "00081190", "0020000D", "0020000E", "00200011",
                   "00201209", "00400244", "00400245")
INSTANCE_DEFAULTS = ("00080016", "00080018", "00080056", "00081190", "0020000D", "0020000E",
                     "00200013", "00280008", "00280010", "00280011", "00280100")


def _study_attributes(request: Request, study: IndexedStudy) -> dict[str, Any]:
    return {
        "00080020": _element("DA", _da(study.study_date)),
        "00080030": _element("TM", study.study_time),
        "00080050": _element("SH", study.accession_number),
        "00080056": _element("CS", "ONLINE"),
        "00080061": _element("CS", *study.modalities),
        "00081030": _element("LO", study.study_description),
        "00081190": _element("UR", _study_url(request, study.study_uid)),
        "00100010": _person_name(study.family_name, study.given_name),
        "00100020": _element("LO", study.external_id),
        "00100030": _element("DA", _da(study.birth_date)),
        "00100040": _element("CS", study.sex),
        "0020000D": _element("UI", study.study_uid),
        "00201206": _element("IS", study.series_count),
        "00201208": _element("IS", study.instance_count),
    }


def _series_attributes(request: Request, series: IndexedSeries) -> dict[str, Any]:
    return {
        "00080056": _element("CS", "ONLINE"),
        "00080060": _element("CS", series.modality),
        "0008103E": _element("LO", series.series_description),
        "00081190": _element("UR", _series_url(request, series.study_uid, series.series_uid)),
        "0020000D": _element("UI", series.study_uid),
        "0020000E": _element("UI", series.series_uid),
        "00200011": _element("IS", series.series_number),
        "00201209": _element("IS", series.instance_count),
    }


def _instance_attributes(request: Request, instance: IndexedInstance) -> dict[str, Any]:
    return {
        "00080016": _element("UI", instance.sop_class_uid),
        "00080018": _element("UI", instance.sop_uid),
        "00080020": _element("DA", _da(instance.study_date)),
        "00080030": _element("TM", instance.study_time),
        "00080050": _element("SH", instance.accession_number),
        "00080056": _element("CS", "ONLINE"),
        "00080060": _element("CS", instance.modality),
        "00081030": _element("LO", instance.study_description),
        "0008103E": _element("LO", instance.series_description),
        "00081190": _element("UR", _instance_url(
            request, instance.study_uid, instance.series_uid, instance.sop_uid)),
        "00100010": _person_name(instance.family_name, instance.given_name),
        "00100020": _element("LO", instance.external_id),
        "00100030": _element("DA", _da(instance.birth_date)),
        "00100040": _element("CS", instance.sex),
        "0020000D": _element("UI", instance.study_uid),
        "0020000E": _element("UI", instance.series_uid),
        "00200011": _element("IS", instance.series_number),
        "00200013": _element("IS", instance.instance_number),
        "00280008": _element("IS", instance.frames),
        "00280010": _element("US", instance.rows),
        "00280011": _element("US", instance.columns),
    }


def _vr_of(tag: str) -> str:
    try:
        return dictionary_VR(int(tag, 16)).split(" ")[0]
    except KeyError:
        return "UN"


def select_attributes(known: dict[str, Any], defaults: tuple[str, ...],
                      include: list[str]) -> dict[str, Any]:
    """The level's default set plus what includefield asked for (``all``: all we know).

    An attribute asked for but unknown here is returned without a value (PS3.18 10.6.3.3)."""
    wanted = set(defaults) | set(include)
    if "all" in include:
        wanted |= set(known)
    wanted.discard("all")
    return {tag: known.get(tag) or {"vr": _vr_of(tag)} for tag in sorted(wanted)}


def _study_json(request: Request, study: IndexedStudy,
                include: Sequence[str] = ()) -> dict[str, Any]:
    return select_attributes(_study_attributes(request, study), STUDY_DEFAULTS, list(include))


def _series_json(request: Request, series: IndexedSeries,
                 include: Sequence[str] = ()) -> dict[str, Any]:
    return select_attributes(_series_attributes(request, series), SERIES_DEFAULTS,
                             list(include))


def _instance_json(request: Request, instance: IndexedInstance,
                   include: Sequence[str] = ()) -> dict[str, Any]:
    return select_attributes(_instance_attributes(request, instance), INSTANCE_DEFAULTS,
                             list(include))


def _dicom_json(body: Any, status_code: int = 200,
                headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status_code, media_type=DICOM_JSON, headers=headers)


# ---- permissions ---------------------------------------------------------------------


def _metadata_grant(actor: Actor) -> Grant:
    """QIDO and /metadata: any view grade; the thumbnail grade never sees radiographs."""
    return require(actor, Permission.VIEW, Grant.THUMBNAILS, Grant.METADATA)


def _hide_radiographs(held: Grant) -> bool:
    return held is Grant.THUMBNAILS


# ---- QIDO-RS ---------------------------------------------------------------------------

_DATE_RANGE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")


def _plausible_uid(uid: str) -> bool:
    """Lenient (devices send odd UIDs) but never a NUL or control character into SQL."""
    return 0 < len(uid) <= 64 and uid.isprintable()


# Matching keys each level supports; anything else is refused (never silently widening).
_STUDY_KEYS = frozenset({"StudyInstanceUID", "PatientID", "PatientName", "StudyDate",
                         "ModalitiesInStudy", "AccessionNumber", "StudyDescription"})
# Study keys that also narrow series and instances (ModalitiesInStudy is a per-study count).
_STUDY_KEYS_BELOW = _STUDY_KEYS - {"ModalitiesInStudy"}
_SERIES_KEYS = frozenset({"SeriesInstanceUID", "Modality"})
_INSTANCE_KEYS = frozenset({"SOPInstanceUID"})
_CONTROL_KEYS = frozenset({"limit", "offset", "includefield", "fuzzymatching"})

def _parse_date(text: str) -> date:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        raise InvalidInput("dicomweb_invalid_date", f"{text!r} is not a date") from None


def parse_date_range(value: str) -> tuple[date | None, date | None]:
    """``YYYYMMDD``, ``YYYYMMDD-``, ``-YYYYMMDD`` or ``YYYYMMDD-YYYYMMDD``."""
    match = _DATE_RANGE.match(value.replace(".", "").strip())
    if not match or not (match[1] or match[3]):
        raise InvalidInput("dicomweb_invalid_date",
                           "StudyDate is YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    start = _parse_date(match[1]) if match[1] else None
    end = _parse_date(match[3]) if match[3] else None
    if match[2] is None:
        end = start
    return start, end


def _keyword(key: str) -> str:
    if _TAG.match(key):
        return keyword_for_tag(int(key, 16)) or key.upper()
    return key


def _include_tag(field: str) -> str:
    if field == "all":
        return field
    if _TAG.match(field):
        return field.upper()
    tag = tag_for_keyword(field)
    if tag is None:
        raise InvalidInput("dicomweb_invalid_includefield",
                           f"{_printable(field)!r} is not a DICOM keyword or tag")
    return f"{tag:08X}"


def _printable(text: str) -> str:
    """Only printable ASCII of what a client sent goes back into a message."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text[:200])


def _query_values(request: Request, supported: frozenset[str]) -> dict[str, list[str]]:
    """Matching keys by keyword (tags accepted too); includefield as tags.

    A key this level does not match on (unsupported or misspelt, say ``PatientId``) is a
    400: answering as if it were absent would return more than was asked for."""
    values: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        if not (key + value).isprintable():  # a NUL would reach Postgres, a CR/LF a header
            raise InvalidInput("dicomweb_invalid_query",
                               "query keys and values must be printable characters")
        keyword = key if key in _CONTROL_KEYS else _keyword(key)
        values.setdefault(keyword, []).extend(v for v in value.split(",") if v != "")
    values["includefield"] = [_include_tag(f) for f in values.get("includefield", [])]
    unsupported = sorted(k for k in values if k not in supported | _CONTROL_KEYS)
    if unsupported:
        raise InvalidInput("dicomweb_unsupported_filter",
                           f"matching on {_printable(', '.join(unsupported))} is not supported "
                           f"here; supported: {', '.join(sorted(supported))}")
    return values


def _int_param(values: dict[str, list[str]], name: str, default: int, high: int) -> int:
    raw = values.get(name)
    if not raw:
        return default
    try:
        number = int(raw[-1])
    except ValueError:
        number = -1
    if not 0 <= number <= high:
        raise InvalidInput(f"dicomweb_invalid_{name}", f"{name} must be 0-{high}")
    return number


def _single(values: dict[str, list[str]], name: str) -> str | None:
    found = values.get(name)
    return found[-1] if found else None


def study_query(values: dict[str, list[str]], hide_radiographs: bool,
                default_limit: int = 100) -> StudyQuery:
    date_from = date_to = None
    if (raw := _single(values, "StudyDate")) is not None:
        date_from, date_to = parse_date_range(raw)
    modalities = [m.strip().upper() for m in values.get("ModalitiesInStudy", []) if m.strip()]
    return StudyQuery(
        study_uids=values.get("StudyInstanceUID") or None,
        patient_id=_single(values, "PatientID"),
        patient_name=_single(values, "PatientName"),
        date_from=date_from, date_to=date_to, modalities=modalities or None,
        accession_number=_single(values, "AccessionNumber"),
        study_description=_single(values, "StudyDescription"),
        hide_radiographs=hide_radiographs,
        limit=_int_param(values, "limit", default_limit, MAX_LIMIT),
        offset=_int_param(values, "offset", 0, 10_000_000),
    )


@router.get("/studies")
def search_studies(request: Request, actor: ActorDep) -> JSONResponse:
    services = services_of(request)
    held = _metadata_grant(actor)
    values = _query_values(request, _STUDY_KEYS)
    query = study_query(values, _hide_radiographs(held))
    studies = services.dicom_index.studies(actor.clinic_id, query)
    include = values["includefield"]
    return _dicom_json([_study_json(request, s, include) for s in studies])


def _search_series(request: Request, actor: Actor, study: str | None) -> JSONResponse:
    services = services_of(request)
    held = _metadata_grant(actor)
    values = _query_values(request, _SERIES_KEYS | (_STUDY_KEYS_BELOW if study is None
                                                    else frozenset()))
    query = study_query(values, _hide_radiographs(held), MAX_LIMIT)
    series = services.dicom_index.series(
        actor.clinic_id, study, hide_radiographs=query.hide_radiographs,
        modality=_single(values, "Modality"), limit=query.limit, offset=query.offset,
        query=query, series_uids=values.get("SeriesInstanceUID"))
    include = values["includefield"]
    return _dicom_json([_series_json(request, s, include) for s in series])


@router.get("/series")
def search_all_series(request: Request, actor: ActorDep) -> JSONResponse:
    return _search_series(request, actor, None)


@router.get("/studies/{study}/series")
def search_series(study: str, request: Request, actor: ActorDep) -> JSONResponse:
    return _search_series(request, actor, study)


def _search_instances(request: Request, actor: Actor, study: str | None,
                      series: str | None) -> JSONResponse:
    services = services_of(request)
    held = _metadata_grant(actor)
    supported = _INSTANCE_KEYS
    if series is None:
        supported |= _SERIES_KEYS
    if study is None:
        supported |= _STUDY_KEYS_BELOW
    values = _query_values(request, supported)
    query = study_query(values, _hide_radiographs(held), MAX_LIMIT)
    series_uids = [series] if series is not None else values.get("SeriesInstanceUID")
    found = services.dicom_index.instances(
        actor.clinic_id, study, hide_radiographs=query.hide_radiographs,
        limit=query.limit, offset=query.offset, query=query,
        modality=_single(values, "Modality"), series_uids=series_uids,
        sop_uids=values.get("SOPInstanceUID"))
    # Listing instances shows them: one metadata access record each, as the gallery does.
    services.app.record_access(actor, [(i.image_id, i.patient_id) for i in found],
                               AccessKind.METADATA)
    include = values["includefield"]
    return _dicom_json([_instance_json(request, i, include) for i in found])


@router.get("/instances")
def search_all_instances(request: Request, actor: ActorDep) -> JSONResponse:
    return _search_instances(request, actor, None, None)


@router.get("/studies/{study}/series/{series}/instances")
def search_series_instances(study: str, series: str, request: Request,
                            actor: ActorDep) -> JSONResponse:
    return _search_instances(request, actor, study, series)


@router.get("/studies/{study}/instances")
def search_study_instances(study: str, request: Request, actor: ActorDep) -> JSONResponse:
    return _search_instances(request, actor, study, None)


# ---- STOW-RS ---------------------------------------------------------------------------


def _failure_reason(error: OrthovaultError) -> int:
    return dicom_status.failure_status(error.code)  # as C-STORE answers


def _identity(data: bytes) -> tuple[str | None, str | None]:
    """SOP Class and Instance UID of a refused object, when it is readable at all."""
    try:
        info = dicom_codec.read_dicom(data)
    except OrthovaultError:
        return None, None
    return info.sop_class_uid, info.sop_instance_uid


def _referenced(request: Request, result: DicomIngestResult) -> dict[str, Any]:
    info = result.instance
    item: dict[str, Any] = {
        "00081150": _element("UI", info.sop_class_uid),
        "00081155": _element("UI", info.sop_instance_uid),
    }
    if result.outcome is IngestOutcome.FILED:
        item["00081190"] = _element("UR", _instance_url(
            request, str(info.study_instance_uid), str(info.series_instance_uid),
            str(info.sop_instance_uid)))
    else:  # held for reconciliation: stored (Success, as over C-STORE), noted privately
        item["00090010"] = _element("LO", _PRIVATE_CREATOR)
        item["00091010"] = _element("LO", "held_for_reconciliation")
    return item


def _failed(sop_class: str | None, sop: str | None, reason: int, code: str) -> dict[str, Any]:
    item: dict[str, Any] = {"00081197": _element("US", reason)}
    if sop_class:
        item["00081150"] = _element("UI", sop_class)
    if sop:
        item["00081155"] = _element("UI", sop)
    # Our stable error code in a private element, for clients that want more than the status.
    item["00090010"] = _element("LO", _PRIVATE_CREATOR)
    item["00091010"] = _element("LO", code)
    return item


def _store_parts(services: Services, actor: Actor, request: Request, parts: list[Any]
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int, int]:
    referenced: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    position = captured = 0
    for part in parts:
        declared = part.content_type.split(";")[0].strip().lower()
        if declared not in (DICOM, ""):
            failed.append(_failed(None, None, FAILURE_CANNOT_UNDERSTAND,
                                  "dicomweb_unsupported_part"))
            continue
        try:
            result = ingest_dicom(services, actor, None, part.handle, part.sha256, wait=False)
        except OrthovaultError as error:
            part.handle.seek(0)
            sop_class, sop = _identity(part.handle.read())
            failed.append(_failed(sop_class, sop, _failure_reason(error), error.code))
            continue
        position = max(position, result.position)
        captured = max(captured, result.captured_position)
        referenced.append(_referenced(request, result))
    return referenced, failed, position, captured


def _caught_up(services: Services, view: Any, position: int) -> bool:
    """Read-your-writes with short first polls (2 ms, doubling to 100 ms).

    Projections apply a write within milliseconds; eventsourcing's own wait sleeps 100 ms
    before its second look, a long pause for a modality forwarding one instance per request
    (tests/bench/stow_bench.py: 13.8 → 16.1 instances/s with 5 clients)."""
    if position <= 0:
        return True
    deadline = time.monotonic() + services.settings.read_your_writes_timeout
    delay = 0.002
    while not view.has_tracking_id(services.app.name, position):
        if time.monotonic() > deadline:
            log.warning("read_your_writes_timeout", position=position)
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return True


def _wait_for_read_models(services: Services, position: int, captured: int) -> None:
    """Once for the whole request: the index (QIDO) and the gallery show what was stored.

    The gallery waits on the last capture: it does not follow reconciliation events."""
    _caught_up(services, services.gallery, captured)
    _caught_up(services, services.dicom_index, position)


@router.post("/studies")
async def store_instances(request: Request, actor: ActorDep) -> JSONResponse:
    services = services_of(request)
    require(actor, Permission.CAPTURE, Grant.DOCUMENTS)
    content_type = request.headers.get("content-type", "")
    related = parse_related_type(content_type)
    if related.root_type not in (DICOM, ""):
        raise UnsupportedMedia("dicomweb_unsupported_media_type",
                               "only type=application/dicom instances are accepted")
    parts = await receive_related(content_type, request.stream(),
                                  max_bytes=services.settings.max_upload_bytes)
    try:
        referenced, failed, position, captured = await run_in_threadpool(
            _store_parts, services, actor, request, parts)
    finally:
        close_parts(parts)
    await run_in_threadpool(_wait_for_read_models, services, position, captured)
    body: dict[str, Any] = {"00081190": _element("UR", _base(request) + "/studies")}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    held = any("00081196" in item for item in referenced)
    status = 409 if not referenced else 202 if failed or held else 200
    return _dicom_json(body, status_code=status)


# ---- WADO-RS ---------------------------------------------------------------------------


def _instances_of(services: Services, actor: Actor, study: str, series: str | None = None,
                  sop: str | None = None, *, hide_radiographs: bool = False
                  ) -> list[IndexedInstance]:
    if any(uid is not None and not _plausible_uid(uid) for uid in (study, series, sop)):
        what = "instance" if sop else "series" if series else "study"
        raise NotFound(f"{what}_not_found", f"no such {what}")  # never stored as a UID
    found = services.dicom_index.instances(
        actor.clinic_id, study, series, sop, hide_radiographs=hide_radiographs)
    if not found:
        what = "instance" if sop else "series" if series else "study"
        raise NotFound(f"{what}_not_found", f"no such {what}")
    return found


def _images(services: Services, actor: Actor, instances: list[IndexedInstance]) -> list[Image]:
    return [services.app.get_image(i.image_id, actor) for i in instances]


def _accepts(request: Request, *types: str) -> bool:
    accept = request.headers.get("accept", "").lower()
    return not accept.strip() or "*/*" in accept or any(t in accept for t in types)


def _not_acceptable(request: Request, detail: str) -> Response:
    return problem(406, "dicomweb_not_acceptable", detail, request)


def _retrieve(request: Request, actor: Actor, study: str, series: str | None = None,
              sop: str | None = None) -> Response:
    if not _accepts(request, DICOM):
        return _not_acceptable(request, 'instances are served as type="application/dicom"')
    services = services_of(request)
    require(actor, Permission.VIEW)
    images = _images(services, actor, _instances_of(services, actor, study, series, sop))
    services.app.record_access(actor, [(i.id, i.patient_id) for i in images],
                               AccessKind.ORIGINAL)
    boundary = new_boundary()
    body = encode_related(
        ((DICOM, dicom_codec.part10_chunks(services.blobs.open(image.id, image.original)))
         for image in images), boundary)
    return StreamingResponse(body, media_type=related_content_type(DICOM, boundary),
                             headers={"Cache-Control": "private, no-store"})


@router.get("/studies/{study}")
def retrieve_study(study: str, request: Request, actor: ActorDep) -> Response:
    return _retrieve(request, actor, study)


@router.get("/studies/{study}/series/{series}")
def retrieve_series(study: str, series: str, request: Request, actor: ActorDep) -> Response:
    return _retrieve(request, actor, study, series)


@router.get("/studies/{study}/series/{series}/instances/{sop}")
def retrieve_instance(study: str, series: str, sop: str, request: Request,
                      actor: ActorDep) -> Response:
    return _retrieve(request, actor, study, series, sop)


def _dataset(services: Services, image: Image, *, pixels: bool) -> pydicom.Dataset:
    data = services.blobs.read(image.id, image.original)
    return pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=not pixels)


def _stored_transfer_syntax(ds: pydicom.Dataset) -> str:
    return str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""


def _encapsulated(ds: pydicom.Dataset) -> bool:
    ts = _stored_transfer_syntax(ds)
    return bool(ts) and ts not in _NATIVE_LITTLE_ENDIAN and ts != "1.2.840.10008.1.2.2"


def _metadata_of(request: Request, ds: pydicom.Dataset,
                 instance: IndexedInstance) -> dict[str, Any]:
    base = _instance_url(request, instance.study_uid, instance.series_uid,
                         instance.sop_uid) + "/bulkdata"
    body = ds.to_json_dict(bulk_data_threshold=bulkdata.json_threshold(),
                           bulk_data_element_handler=bulkdata.uri_handler(ds, base))
    # Read without pixels (see _dataset): the Pixel Data is always fetched by URI.
    body[bulkdata.PIXEL_DATA] = {"vr": bulkdata.pixel_data_vr(ds, _encapsulated(ds)),
                                 "BulkDataURI": f"{base}/{bulkdata.PIXEL_DATA}"}
    # The chart's identity, as QIDO reports it (see the module docstring).
    body["00100010"] = _person_name(instance.family_name, instance.given_name)
    body["00100020"] = _element("LO", instance.external_id)
    body["00100030"] = _element("DA", _da(instance.birth_date))
    ts = getattr(ds, "file_meta", None) and ds.file_meta.get("TransferSyntaxUID")
    if ts:
        body["00020010"] = _element("UI", str(ts))
    return body


def _metadata(request: Request, actor: Actor, study: str, series: str | None = None,
              sop: str | None = None) -> JSONResponse:
    services = services_of(request)
    held = _metadata_grant(actor)
    instances = _instances_of(services, actor, study, series, sop,
                              hide_radiographs=_hide_radiographs(held))
    images = _images(services, actor, instances)
    services.app.record_access(actor, [(i.id, i.patient_id) for i in images],
                               AccessKind.METADATA)
    bodies = []
    for instance, image in zip(instances, images, strict=True):
        try:
            bodies.append(_metadata_of(request, _dataset(services, image, pixels=False),
                                       instance))
        except (ValueError, TypeError, AttributeError, KeyError):
            bodies.append(_instance_json(request, instance, ["all"]))  # all the index says
    return _dicom_json(bodies)


@router.get("/studies/{study}/metadata")
def study_metadata(study: str, request: Request, actor: ActorDep) -> JSONResponse:
    return _metadata(request, actor, study)


@router.get("/studies/{study}/series/{series}/metadata")
def series_metadata(study: str, series: str, request: Request, actor: ActorDep) -> JSONResponse:
    return _metadata(request, actor, study, series)


@router.get("/studies/{study}/series/{series}/instances/{sop}/metadata")
def instance_metadata(study: str, series: str, sop: str, request: Request,
                      actor: ActorDep) -> JSONResponse:
    return _metadata(request, actor, study, series, sop)


def parse_frame_list(raw: str, frames: int) -> list[int]:
    try:
        numbers = [int(n) for n in raw.split(",") if n.strip()]
    except ValueError:
        raise InvalidInput("dicomweb_invalid_frames", "frames are 1-based numbers") from None
    if not numbers or any(not 1 <= n <= frames for n in numbers):
        raise NotFound(dicom_codec.FRAME_OUT_OF_RANGE, f"frames are numbered 1..{frames}")
    return numbers


@router.get("/studies/{study}/series/{series}/instances/{sop}/bulkdata/{path:path}")
def retrieve_bulkdata(study: str, series: str, sop: str, path: str, request: Request,
                      actor: ActorDep) -> Response:
    """A BulkDataURI of /metadata: the value's bytes (multipart/related when asked so);
    encapsulated Pixel Data as its frames, one part each in their stored encoding."""
    services = services_of(request)
    require(actor, Permission.VIEW)  # bulk values are pixels, or as sensitive
    instance = _instances_of(services, actor, study, series, sop)[0]
    image = services.app.get_image(instance.image_id, actor)
    ds = _dataset(services, image, pixels=True)
    elem = bulkdata.element_at(ds, path)
    services.app.record_access(actor, [(image.id, image.patient_id)], AccessKind.ORIGINAL)
    headers = {"Cache-Control": "private, no-store"}
    multipart = "multipart/related" in request.headers.get("accept", "").lower()
    if elem.tag == 0x7FE00010 and _encapsulated(ds) and multipart:
        part_type = _FRAME_TYPES.get(_stored_transfer_syntax(ds), "application/octet-stream")
        parts = list(generate_frames(elem.value, number_of_frames=instance.frames))
    elif multipart:
        part_type, parts = "application/octet-stream", [elem.value]
    else:
        return Response(elem.value, media_type="application/octet-stream", headers=headers)
    boundary = new_boundary()
    body = b"".join(encode_related(((part_type, [p]) for p in parts), boundary))
    return Response(body, media_type=related_content_type(part_type, boundary),
                    headers=headers)


def _native_frames(ds: pydicom.Dataset, numbers: list[int], frames: int) -> list[bytes]:
    bits = int(ds.BitsAllocated)
    ts = _stored_transfer_syntax(ds)
    if bits % 8 == 0 and ts in _NATIVE_LITTLE_ENDIAN and "PixelData" in ds:
        size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * bits // 8
        pixel_data = ds.PixelData
        return [pixel_data[(n - 1) * size: n * size] for n in numbers]
    # Big endian, bit-packed, float or compressed: decode to native little-endian pixels.
    array = pixel_array_isolated(ds)  # C decoders: in a child process
    if frames == 1:
        array = array[np.newaxis, ...]
    return [np.ascontiguousarray(array[n - 1]).astype(array.dtype.newbyteorder("<")).tobytes()
            for n in numbers]


def _frame_parts(request: Request, ds: pydicom.Dataset, numbers: list[int],
                 frames: int) -> tuple[str, list[bytes]] | None:
    ts = _stored_transfer_syntax(ds)
    compressed_type = _FRAME_TYPES.get(ts)
    accept = request.headers.get("accept", "").lower().replace(" ", "")
    if compressed_type and (_accepts(request, compressed_type) or "transfer-syntax=*" in accept):
        fragments = list(generate_frames(ds.PixelData, number_of_frames=frames))
        # With transfer-syntax=* the part says which encoding it holds (PS3.18 8.7.3.5).
        part_type = compressed_type if _accepts(request, compressed_type) else \
            f"application/octet-stream; transfer-syntax={ts}"
        return part_type, [fragments[n - 1] for n in numbers]
    if not _accepts(request, "application/octet-stream"):
        return None
    return "application/octet-stream", _native_frames(ds, numbers, frames)


@router.get("/studies/{study}/series/{series}/instances/{sop}/frames/{frame_list}")
def retrieve_frames(study: str, series: str, sop: str, frame_list: str, request: Request,
                    actor: ActorDep) -> Response:
    services = services_of(request)
    require(actor, Permission.VIEW)
    instance = _instances_of(services, actor, study, series, sop)[0]
    numbers = parse_frame_list(frame_list, instance.frames)
    image = services.app.get_image(instance.image_id, actor)
    ds = _dataset(services, image, pixels=True)
    try:
        parts = _frame_parts(request, ds, numbers, instance.frames)
    except Exception:
        raise UnsupportedMedia(dicom_codec.UNSUPPORTED_TRANSFER_SYNTAX,
                               "the frames cannot be decoded") from None
    if parts is None:
        return _not_acceptable(request, "frames are served as application/octet-stream "
                                        "or in their stored compression")
    part_type, payloads = parts
    services.app.record_access(actor, [(image.id, image.patient_id)], AccessKind.ORIGINAL)
    boundary = new_boundary()
    body = b"".join(encode_related(((part_type, [p]) for p in payloads), boundary))
    return Response(body, media_type=related_content_type(part_type, boundary),
                    headers={"Cache-Control": "private, no-store"})


def _encode_image(pixels: np.ndarray, request: Request, longest: int | None) -> tuple[bytes, str]:
    image = PILImage.fromarray(np.ascontiguousarray(pixels))
    if longest is not None and max(image.size) > longest:
        image.thumbnail((longest, longest), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    accept = request.headers.get("accept", "").lower()
    if "image/png" in accept and "image/jpeg" not in accept:
        image.save(out, "PNG")
        return out.getvalue(), "image/png"
    image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue(), "image/jpeg"


def _render(services: Services, actor: Actor, request: Request, instance: IndexedInstance,
            frame: int, options: RenderOptions) -> tuple[bytes, str, Image]:
    image = services.app.get_image(instance.image_id, actor)
    window = options.window.as_tuple() if options.window else None
    pixels = render_dicom_isolated(services.blobs.read(image.id, image.original), frame,
                                   window=window)
    body, media_type = _encode_image(apply_viewport(pixels, options.viewport), request, None)
    return body, media_type, image


def _rendered(request: Request, actor: Actor, study: str, series: str | None = None,
              sop: str | None = None, frame: int = 0) -> Response:
    """One rendered image; for a study or series asked as multipart/related, one part per
    instance (its first frame), else the first instance alone."""
    services = services_of(request)
    require(actor, Permission.VIEW)
    options = render_options(dict(request.query_params))
    instances = _instances_of(services, actor, study, series, sop)
    multipart = sop is None and "multipart/related" in request.headers.get("accept", "").lower()
    rendered = [_render(services, actor, request, instance, frame, options)
                for instance in (instances if multipart else instances[:1])]
    services.app.record_access(actor, [(image.id, image.patient_id)
                                       for _, _, image in rendered], AccessKind.PREVIEW)
    headers = {"Cache-Control": "private"}
    if not multipart:
        body, media_type, _ = rendered[0]
        return Response(body, media_type=media_type, headers=headers)
    boundary = new_boundary()
    media_type = rendered[0][1]
    body = b"".join(encode_related(((kind, [part]) for part, kind, _ in rendered), boundary))
    return Response(body, media_type=related_content_type(media_type, boundary),
                    headers=headers)


@router.get("/studies/{study}/rendered")
def study_rendered(study: str, request: Request, actor: ActorDep) -> Response:
    return _rendered(request, actor, study)


@router.get("/studies/{study}/series/{series}/rendered")
def series_rendered(study: str, series: str, request: Request, actor: ActorDep) -> Response:
    return _rendered(request, actor, study, series)


@router.get("/studies/{study}/series/{series}/instances/{sop}/rendered")
def instance_rendered(study: str, series: str, sop: str, request: Request,
                      actor: ActorDep) -> Response:
    return _rendered(request, actor, study, series, sop)


@router.get("/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/rendered")
def frame_rendered(study: str, series: str, sop: str, frame: int, request: Request,
                   actor: ActorDep) -> Response:
    return _rendered(request, actor, study, series, sop, frame - 1)


def _thumbnail(request: Request, actor: Actor, study: str, series: str | None = None,
               sop: str | None = None) -> Response:
    services = services_of(request)
    held = require(actor, Permission.VIEW, Grant.THUMBNAILS)
    instances = _instances_of(services, actor, study, series, sop,
                              hide_radiographs=_hide_radiographs(held))
    image = services.app.get_image(instances[0].image_id, actor)
    ref = image.derivatives.get("thumbnail")
    if ref is not None:
        body, media_type = services.blobs.read(image.id, ref), ref.media_type
    else:
        # Not rendered by the worker yet: render this one now rather than make a viewer wait.
        frames = instances[0].frames
        pixels = render_dicom_isolated(services.blobs.read(image.id, image.original),
                                       frames // 2 if frames > 1 else 0)
        body, media_type = _encode_image(pixels, request, THUMBNAIL_PX)
    services.app.record_access(actor, [(image.id, image.patient_id)], AccessKind.THUMBNAIL)
    return Response(body, media_type=media_type, headers={"Cache-Control": "private"})


@router.get("/studies/{study}/thumbnail")
def study_thumbnail(study: str, request: Request, actor: ActorDep) -> Response:
    return _thumbnail(request, actor, study)


@router.get("/studies/{study}/series/{series}/thumbnail")
def series_thumbnail(study: str, series: str, request: Request, actor: ActorDep) -> Response:
    return _thumbnail(request, actor, study, series)


@router.get("/studies/{study}/series/{series}/instances/{sop}/thumbnail")
def instance_thumbnail(study: str, series: str, sop: str, request: Request,
                       actor: ActorDep) -> Response:
    return _thumbnail(request, actor, study, series, sop)
