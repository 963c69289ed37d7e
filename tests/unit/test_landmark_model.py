"""The rules of clinic-supplied landmark models, without onnxruntime: metadata, the
resampling to the model's spacing, and what counts as a usable answer."""

import numpy as np
import pytest

from domain.errors import InvalidInput, Unprocessable
from domain.landmark_model import (
    check_output_shape,
    model_id,
    model_spec,
    read_predictions,
    resampling,
)


def spec(**changes):
    fields = {"name": "  cephnet ", "version": "2.1", "input_width": 512, "input_height": 640,
              "landmarks": ["S", "N", "Me"], "pixel_spacing_mm": 0.1}
    return model_spec(**{**fields, **changes})


def test_metadata_is_validated_with_its_own_codes():
    s = spec()
    assert (s.name, s.version, s.landmarks, s.label) == ("cephnet", "2.1", ("S", "N", "Me"),
                                                         "cephnet@2.1")
    for changes, code in [
        ({"input_width": 8}, "invalid_model_input_size"),
        ({"input_height": 10_000}, "invalid_model_input_size"),
        ({"landmarks": []}, "invalid_model_landmarks"),
        ({"landmarks": ["S", "S"]}, "invalid_model_landmarks"),
        ({"landmarks": ["S", "Nope"]}, "unknown_landmark"),
        ({"pixel_spacing_mm": 0.0}, "invalid_model_pixel_spacing"),
        ({"pixel_spacing_mm": float("nan")}, "invalid_model_pixel_spacing"),
        ({"name": " "}, "invalid_model_name"),
        ({"version": "x" * 81}, "invalid_model_version"),
    ]:
        with pytest.raises(InvalidInput) as refused:
            spec(**changes)
        assert refused.value.code == code, changes


def test_one_id_per_clinic_name_and_version():
    assert model_id("c1", spec()) == model_id("c1", spec(name="cephnet"))
    assert model_id("c1", spec()) != model_id("c2", spec())
    assert model_id("c1", spec()) != model_id("c1", spec(version="2.2"))


def test_output_shape_must_be_one_pair_per_landmark():
    check_output_shape((1, 3, 2), spec())
    for shape in [(1, 3, 3), (3, 2), (1, 4, 2), (2, 3, 2)]:
        with pytest.raises(Unprocessable) as refused:
            check_output_shape(shape, spec())
        assert refused.value.code == "model_mismatch"


def test_resampling_to_the_models_spacing_and_back():
    # A 2000 x 2400 film at 0.15 mm/px seen by a model trained at 0.1 mm/px: 1.5x larger.
    frame = resampling((2000, 2400), 0.15, spec())
    assert frame.resized == (3000, 3600)
    assert (frame.scale_x, frame.scale_y) == (1.5, 1.5)
    answer = np.array([[[150.0, 300.0], [450.0, 0.0], [3000.0, 3600.0]]], np.float32)
    got = read_predictions(answer, spec(), frame, (2000, 2400))
    assert got == {"S": [100.0, 200.0], "N": [300.0, 0.0], "Me": [2000.0, 2400.0]}
    # Rounding to whole pixels is undone exactly, per axis.
    odd = resampling((1001, 999), 0.2, spec(pixel_spacing_mm=0.3))
    assert odd.resized == (667, 666)
    assert odd.scale_x == pytest.approx(667 / 1001) and odd.scale_y == pytest.approx(666 / 999)


@pytest.mark.parametrize(("answer", "why"), [
    (np.zeros((1, 3, 3)), "shape"),
    (np.zeros((3, 2)), "shape"),
    (np.array([[[1.0, 2.0], [np.nan, 3.0], [4.0, 5.0]]]), "NaN"),
    (np.array([[[1.0, 2.0], [np.inf, 3.0], [4.0, 5.0]]]), "NaN"),
    (np.array([[[1.0, 2.0], [-0.5, 3.0], [4.0, 5.0]]]), "outside the image"),
    (np.array([[[1.0, 2.0], [2.0, 3.0], [4.0, 640.5]]]), "outside the image"),
])
def test_garbage_answers_are_refused_whole(answer, why):
    frame = resampling((512, 640), 0.1, spec())
    with pytest.raises(Unprocessable) as refused:
        read_predictions(answer, spec(), frame, (512, 640))
    assert refused.value.code == "model_output_invalid"
    assert why in refused.value.message
