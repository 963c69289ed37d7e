"""Clinic-supplied landmark models: registering one, and suggesting landmarks with it.

Registration (``POST /api/v1/landmark-models``, multipart: the ``.onnx`` file as ``file``,
and ``name``, ``version``, ``inputWidth``, ``inputHeight``, ``landmarks`` (codes in output
order, comma-separated) and ``pixelSpacingMm``) loads the model in a child process and runs
it once before anything is stored; a file onnxruntime cannot load is 422
``model_load_failed``, a model whose answer is not ``[1, K, 2]`` 422 ``model_mismatch``.
Then the file goes to the encrypted blob store under the model's id and
``LandmarkModel.Registered`` is recorded (a crash between the two leaves an orphan blob for
``orthovault gc``).

``suggestLandmarks(modelId:)`` resamples the radiograph to the model's spacing and runs the
model in a child process (adapters/onnx_landmarks.py); the answer is judged by
domain/landmark_model.read_predictions and recorded with the model's name and version.

Both need ``imaging:cephalometric``; another clinic's model is 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from adapters import onnx_landmarks
from api.graphql_annotations import image_calibration
from api.multipart_stream import ReceivedForm, receive_form
from api.rest_cephalometry import image_pixels
from api.rest_images import ActorDep, services_of
from api.services import Services
from domain.annotation_commands import Edited
from domain.errors import Conflict, InvalidInput, NotFound, Unprocessable
from domain.landmark_model import (
    MAX_MODEL_BYTES,
    MODEL_MEDIA_TYPE,
    LandmarkModel,
    ModelSpec,
    check_output_shape,
    model_id,
    model_spec,
    read_predictions,
    resampling,
)
from domain.permissions import Permission, require
from domain.values import Actor

router = APIRouter(prefix="/api/v1", tags=["cephalometry"])


@dataclass(frozen=True)
class RegisteredModel:
    id: UUID
    spec: ModelSpec
    sha256: str
    size: int

    def as_json(self) -> dict[str, Any]:
        s = self.spec
        return {"id": str(self.id), "name": s.name, "version": s.version,
                "inputWidth": s.input_width, "inputHeight": s.input_height,
                "landmarks": list(s.landmarks), "pixelSpacingMm": s.pixel_spacing_mm,
                "sha256": self.sha256, "size": self.size}


def registered(model: LandmarkModel) -> RegisteredModel:
    return RegisteredModel(model.id, model.spec, model.file.sha256, model.file.size)


def load_model(services: Services, actor: Actor, id_: UUID) -> LandmarkModel:
    """A model of the actor's clinic; any other id is 404."""
    require(actor, Permission.CEPHALOMETRIC)
    try:
        model = services.app.repository.get(id_)
    except AggregateNotFoundError:
        model = None
    if not isinstance(model, LandmarkModel) or model.clinic_id != actor.clinic_id:
        raise NotFound("landmark_model_not_found", "no such landmark model")
    return model


def _int_field(form: ReceivedForm, name: str) -> int:
    raw = form.fields.get(name, "").strip()
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput("invalid_model_input_size", f"{name} is a whole number") from None


def _spec_of(form: ReceivedForm) -> ModelSpec:
    try:
        spacing = float(form.fields.get("pixelSpacingMm", "").strip())
    except ValueError:
        raise InvalidInput("invalid_model_pixel_spacing", "pixelSpacingMm is a number") from None
    codes = [c for c in form.fields.get("landmarks", "").replace(" ", "").split(",") if c]
    return model_spec(name=form.fields.get("name", ""), version=form.fields.get("version", ""),
                      input_width=_int_field(form, "inputWidth"),
                      input_height=_int_field(form, "inputHeight"), landmarks=codes,
                      pixel_spacing_mm=spacing)


def _registered_already(services: Services, id_: UUID) -> bool:
    try:
        services.app.repository.get(id_)
    except AggregateNotFoundError:
        return False
    return True


def register_model(services: Services, actor: Actor, form: ReceivedForm) -> RegisteredModel:
    require(actor, Permission.CEPHALOMETRIC)
    files = [f for f in form.files if f.field_name == "file"]
    if len(files) != 1 or files[0].size == 0:
        raise InvalidInput("file_required", "send the .onnx model as the multipart field file")
    spec = _spec_of(form)
    new_id = model_id(actor.clinic_id, spec)
    if _registered_already(services, new_id):
        raise Conflict("model_exists", f"{spec.label} is already registered")
    upload = files[0]
    data = upload.handle.read()
    check_output_shape(onnx_landmarks.inspect_model(data, upload.sha256,
                                                    (spec.input_width, spec.input_height)), spec)
    # Named by content: a losing concurrent registration cannot overwrite the winner's file.
    file = services.blobs.put_bytes(new_id, f"{upload.sha256}.onnx", data, MODEL_MEDIA_TYPE)
    model = LandmarkModel(model_id=new_id, clinic_id=actor.clinic_id, name=spec.name,
                          version=spec.version, input_width=spec.input_width,
                          input_height=spec.input_height, landmarks=list(spec.landmarks),
                          pixel_spacing_mm=spec.pixel_spacing_mm, file=file, actor=actor)
    try:
        services.app.save(model)
    except IntegrityError:
        raise Conflict("model_exists", f"{spec.label} is already registered") from None
    return registered(model)


@router.post("/landmark-models", status_code=201)
async def post_landmark_model(request: Request, actor: ActorDep) -> JSONResponse:
    """Register an ONNX landmark model (multipart: ``file`` and its metadata; see
    docs/cephalometry.md). Answers 201 with the model's id."""
    services = services_of(request)
    require(actor, Permission.CEPHALOMETRIC)
    form = await receive_form(request.headers.get("content-type", ""), request.stream(),
                              max_bytes=min(MAX_MODEL_BYTES, services.settings.max_upload_bytes),
                              spool_dir=None)
    try:
        model = await run_in_threadpool(register_model, services, actor, form)
    finally:
        form.close()
    return JSONResponse(model.as_json(), status_code=201,
                        headers={"Location": f"/api/v1/landmark-models/{model.id}"})


def suggest_with_model(services: Services, actor: Actor, tracing_id: UUID, version: int,
                       model_id_: UUID) -> Edited:
    """Run a registered model on the tracing's radiograph and record its suggestions."""
    require(actor, Permission.CEPHALOMETRIC)
    tracing = services.app.tracing(actor, tracing_id)
    if tracing.removed:
        raise Conflict("tracing_removed", "the tracing is removed; undo to restore")
    # Refuse a stale version before running the model, not after (checked again on save).
    services.app._check_version(tracing, version)
    model = load_model(services, actor, model_id_)
    image = services.app.get_image(tracing.image_id, actor)
    calibration = image_calibration(services, actor, image.id)
    if calibration is None:
        raise Unprocessable("calibration_required", "the model works in millimetres: "
                            f"calibrate the image (it expects {model.spec.pixel_spacing_mm} "
                            "mm per pixel)")
    if not calibration.is_isotropic:
        raise Conflict("anisotropic_pixels", "the image has non-square pixels")
    size = (image.width, image.height)
    frame = resampling(size, calibration.mm_per_pixel, model.spec)
    pixels = image_pixels(services, actor, image)
    if pixels is None:
        raise Conflict("image_not_rendered", "the radiograph is not rendered yet; retry")
    data = services.blobs.read(model.id, model.file)
    output = onnx_landmarks.predict(data, model.file.sha256, pixels, frame.resized,
                                    (model.spec.input_width, model.spec.input_height))
    suggestions = read_predictions(output, model.spec, frame, size)
    return services.app.suggest_landmarks(
        actor, tracing_id, version, detected=suggestions,
        model={"id": str(model.id), "name": model.spec.name, "version": model.spec.version})
