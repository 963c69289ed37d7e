"""Running a clinic's ONNX landmark model (onnxruntime), always in a child process.

A model file is code from outside: onnxruntime parses it in C++, and a hostile or broken
one could crash, hang or eat memory. Both entry points therefore run through
``adapters.isolated_decoding.run_isolated`` (a bounded forkserver child with a memory cap and
a timeout), never in the API's event loop or its threads:

- :func:`inspect_model` at registration: loads the model and runs it once on a black input
  of the declared size; returns the output shape (the caller checks it against the
  landmark list) or 422 ``model_load_failed`` / ``model_run_failed``;
- :func:`predict` at suggestion: decodes the radiograph, resamples it to the model's pixel
  spacing, lays it into the input from the top-left (black padding), runs the model and
  returns its raw output for ``domain.landmark_model.read_predictions`` to judge.

Sessions are cached per child by the file's SHA-256, so a second suggestion with the same
model skips the load.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from typing import Any

import numpy as np
from PIL import Image

from adapters.isolated_decoding import DECODE_TIMEOUT, DECODER_CRASHED, run_isolated
from domain.errors import TooLarge, Unprocessable

LOAD_FAILED = "model_load_failed"
RUN_FAILED = "model_run_failed"
_CACHED_SESSIONS = 2
_sessions: OrderedDict[str, Any] = OrderedDict()


def _session(model: bytes, sha256: str) -> Any:
    import onnxruntime as ort  # imported in the child only: the API process never loads it

    session = _sessions.get(sha256)
    if session is not None:
        _sessions.move_to_end(sha256)
        return session
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the machine's cores are shared with the server
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model, sess_options=options,
                                       providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own (and varied) error types
        raise Unprocessable(LOAD_FAILED,
                            f"onnxruntime cannot load the model: {_first_line(error)}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) < 1:
        raise Unprocessable(LOAD_FAILED, "the model must have one input and one output")
    _sessions[sha256] = session
    while len(_sessions) > _CACHED_SESSIONS:
        _sessions.popitem(last=False)
    return session


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def _run(session: Any, tensor: np.ndarray) -> np.ndarray:
    try:
        first = session.run(None, {session.get_inputs()[0].name: tensor})[0]
    except Exception as error:  # a shape the graph cannot take, an op that fails, ...
        raise Unprocessable(RUN_FAILED, f"the model failed to run: {_first_line(error)}"
                            ) from None
    return np.asarray(first)


def _inspect(model: bytes, sha256: str, width: int, height: int) -> tuple[int, ...]:
    session = _session(model, sha256)
    return tuple(_run(session, np.zeros((1, 1, height, width), np.float32)).shape)


def _grey(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            array = np.asarray(image.convert("F"), dtype=np.float32)
            top = float(array.max()) or 1.0
            return Image.fromarray(array / top)
        return Image.fromarray(np.asarray(image.convert("L"), np.float32) / 255.0)


def _predict(model: bytes, sha256: str, pixels: bytes, resized: tuple[int, int],
             input_size: tuple[int, int]) -> np.ndarray:
    session = _session(model, sha256)
    # The decoded picture may be a preview smaller than the original: resizing it straight
    # to the original's size at the model's spacing covers both cases.
    picture = _grey(pixels).resize(resized, Image.Resampling.BILINEAR)
    width, height = input_size
    tensor = np.zeros((1, 1, height, width), np.float32)
    laid = np.asarray(picture, np.float32)[:height, :width]
    tensor[0, 0, : laid.shape[0], : laid.shape[1]] = laid
    return _run(session, tensor)


def _isolated(fn: Any, *args: Any) -> Any:
    try:
        return run_isolated(fn, *args)
    except MemoryError:
        raise TooLarge("model_too_large", "the model needs more memory than allowed") from None
    except Unprocessable as error:
        # The runner's own codes speak of DICOM decoding; say what crashed here.
        if error.code == DECODER_CRASHED:
            raise Unprocessable(RUN_FAILED, "the model crashed its runtime") from None
        if error.code == DECODE_TIMEOUT:
            raise Unprocessable(RUN_FAILED, "the model took too long to run") from None
        raise


def inspect_model(model: bytes, sha256: str, input_size: tuple[int, int]) -> tuple[int, ...]:
    """Load the model and run it once on a black ``[1, 1, H, W]``; its output shape."""
    return _isolated(_inspect, model, sha256, input_size[0], input_size[1])


def predict(model: bytes, sha256: str, pixels: bytes, resized: tuple[int, int],
            input_size: tuple[int, int]) -> np.ndarray:
    """The model's raw output on the radiograph ``pixels`` (encoded JPEG/PNG/...)."""
    return _isolated(_predict, model, sha256, pixels, resized, input_size)
