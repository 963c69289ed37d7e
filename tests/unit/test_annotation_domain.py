"""Annotations, tracings, undo/redo and calibration choice, as pure domain code.

The application runs on eventsourcing's in-memory store here; the API tests
(tests/test_annotations.py) run the same commands against PostgreSQL.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.annotation import AnnotationKind, make_content, measure_content
from domain.cephalometry.analyses import analyze_one
from domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from domain.image import ImageCategory
from domain.image_calibration import effective_calibration, recorded_calibration
from domain.imaging import Imaging, NewImage
from domain.measurement import Calibration, CalibrationSource, Shape, ShapeKind
from domain.patient import ConsentScope
from domain.revision_history import RevisionHistory
from domain.values import Actor, BlobRef

CLINIC = "clinic-a"
DOCTOR = Actor("dr", "doctor", CLINIC)
STAFF = Actor("nurse", "clinical_staff", CLINIC)
STAFF2 = Actor("nurse2", "clinical_staff", CLINIC)
FRONT = Actor("desk", "front_desk", CLINIC)
OTHER = Actor("dr-b", "doctor", "clinic-b")
SIZE = (1000, 800)


# ---- revision history --------------------------------------------------------------


def test_revision_history_undo_redo_and_branching():
    h = RevisionHistory({"v": 1})
    h.push({"v": 2})
    h.push({"v": 3})
    assert h.peek_undo() == {"v": 2}
    h.move(-1)
    h.move(-1)
    assert h.current == {"v": 1} and not h.can_undo
    with pytest.raises(Conflict) as err:
        h.peek_undo()
    assert err.value.code == "nothing_to_undo"
    h.move(+1)
    assert h.current == {"v": 2} and h.can_redo
    h.push({"v": 9})  # a new edit after undo drops the redo branch
    assert not h.can_redo and h.current == {"v": 9}
    with pytest.raises(Conflict) as err:
        h.peek_redo()
    assert err.value.code == "nothing_to_redo"


@given(st.lists(st.sampled_from(["edit", "undo", "redo"]), max_size=30))
def test_revision_history_matches_a_simple_model(ops):
    """Against a list-and-index model: undo/redo never lose a reachable revision."""
    h, model, cursor, n = RevisionHistory({"v": 0}), [0], 0, 0
    for op in ops:
        if op == "edit":
            n += 1
            h.push({"v": n})
            del model[cursor + 1:]
            model.append(n)
            cursor += 1
        elif op == "undo" and cursor > 0:
            h.move(-1)
            cursor -= 1
        elif op == "redo" and cursor < len(model) - 1:
            h.move(+1)
            cursor += 1
        assert h.current == {"v": model[cursor]}
        assert h.can_undo == (cursor > 0) and h.can_redo == (cursor < len(model) - 1)


# ---- annotation content -------------------------------------------------------------


def content(kind: str, points, **kw):
    return make_content(kind=AnnotationKind(kind), points=points, label=kw.get("label", ""),
                        text=kw.get("text", ""), known_length_mm=kw.get("known_length_mm"),
                        image_size=SIZE)


@pytest.mark.parametrize(("kind", "points", "extra", "code"), [
    ("line", [[0, 0], [1001, 5]], {}, "coordinates_out_of_bounds"),
    ("line", [[10, 10], [10, 10]], {}, "degenerate_geometry"),
    ("angle", [[0, 0], [10, 10], [20, 20]], {}, "degenerate_geometry"),
    ("polygon", [[0, 0], [10, 10]], {}, "invalid_shape"),
    ("line", [[0, 0], [float("nan"), 1]], {}, "invalid_coordinates"),
    ("ruler", [[0, 0], [100, 0]], {}, "invalid_calibration"),
    ("ruler", [[0, 0], [100, 0]], {"known_length_mm": -5}, "invalid_calibration"),
    ("line", [[0, 0], [100, 0]], {"known_length_mm": 5}, "invalid_shape"),
    ("text", [[5, 5]], {}, "invalid_text"),
    ("text", [[5, 5], [6, 6]], {"text": "x"}, "invalid_shape"),
    ("line", [[0, 0, 0], [1, 1]], {}, "invalid_coordinates"),
])
def test_bad_geometry_is_refused_with_a_stable_code(kind, points, extra, code):
    with pytest.raises(InvalidInput) as err:
        content(kind, points, **extra)
    assert err.value.code == code


def test_every_kind_is_measured_by_the_server():
    cal = Calibration(0.1, CalibrationSource.RULER)
    cases = {
        "point": ([[10, 20]], None, "mm"),
        "line": ([[0, 0], [30, 40]], 5.0, "mm"),
        "arrow": ([[0, 0], [30, 40]], 5.0, "mm"),
        "angle": ([[10, 0], [0, 0], [0, 10]], 90.0, "deg"),
        "polyline": ([[0, 0], [30, 40], [30, 0]], 9.0, "mm"),
        "freehand": ([[0, 0], [30, 40], [30, 0]], 9.0, "mm"),
        "polygon": ([[0, 0], [100, 0], [100, 100], [0, 100]], 100.0, "mm²"),
        "rectangle": ([[0, 0], [100, 100]], 100.0, "mm²"),
        "ellipse": ([[0, 0], [200, 100]], math.pi * 10 * 5, "mm²"),
        "ruler": ([[0, 0], [100, 0]], 10.0, "mm"),
    }
    for kind, (points, expected, unit) in cases.items():
        extra = {"known_length_mm": 10.0} if kind == "ruler" else {}
        m = measure_content(content(kind, points, **extra), cal)
        assert m is not None and m.unit.value == unit, kind
        assert m.calibrated and m.calibration_source is CalibrationSource.RULER
        if expected is None:
            assert m.position == pytest.approx((1.0, 2.0))
        else:
            assert m.value == pytest.approx(expected), kind
    assert measure_content(content("text", [[5, 5]], text="caries?"), cal) is None


def test_uncalibrated_lengths_are_pixels_and_mm_can_be_demanded():
    m = measure_content(content("line", [[0, 0], [30, 40]]), None)
    assert (m.value, m.unit.value, m.calibrated) == (50.0, "px", False)
    with pytest.raises(Exception) as err:
        measure_content(content("line", [[0, 0], [30, 40]]), None, require_mm=True)
    assert err.value.code == "calibration_required"


# ---- calibration choice ------------------------------------------------------------


def test_scan_resolution_with_magnification_gives_the_patient_plane():
    rec = recorded_calibration(dpi=512, magnification=1611 / 1524)
    assert rec.source is CalibrationSource.SCAN_RESOLUTION
    assert rec.mm_per_pixel == pytest.approx(25.4 / 512 * 1524 / 1611)


@pytest.mark.parametrize("kwargs", [
    {}, {"dpi": 512, "mm_per_pixel": 0.1}, {"dpi": -1}, {"mm_per_pixel": 0},
    {"mm_per_pixel": 0.1, "magnification": 0.5}, {"mm_per_pixel": float("inf")},
    {"mm_per_pixel": 0.1, "source": "ruler"}, {"mm_per_pixel": 0.1, "source": "nonsense"},
])
def test_bad_calibration_input(kwargs):
    with pytest.raises(InvalidInput) as err:
        recorded_calibration(**kwargs)
    assert err.value.code == "invalid_calibration"


def test_effective_calibration_order():
    ruler = Shape(ShapeKind.RULER, ((0, 0), (100, 0)), known_length_mm=20.0)
    scan = recorded_calibration(dpi=254, magnification=1.1)
    manual = recorded_calibration(mm_per_pixel=0.3)
    dicom = {"pixel_spacing": {"row_mm": 0.1, "column_mm": 0.1, "source": "pixel_spacing",
                               "magnification": None}}
    detector = {"pixel_spacing": {"row_mm": 0.1, "column_mm": 0.1,
                                  "source": "imager_pixel_spacing", "magnification": None}}
    pick = effective_calibration
    assert pick(dicom=dicom, recorded=scan, ruler=ruler).source.value == "dicom_pixel_spacing"
    assert pick(dicom=detector, recorded=scan, ruler=ruler).source.value == "scan_resolution"
    assert pick(dicom=detector, recorded=manual, ruler=ruler).source.value == "ruler"
    assert pick(dicom=detector, recorded=manual, ruler=None).source.value == (
        "dicom_pixel_spacing")
    assert pick(dicom=None, recorded=manual, ruler=None).mm_per_pixel == pytest.approx(0.3)
    assert pick(dicom={"pixel_spacing": {"row_mm": 0}}, recorded=None, ruler=None) is None


# ---- the commands, on the in-memory store ------------------------------------------


@pytest.fixture
def app():
    application = Imaging()
    yield application
    application.close()


def _image(app: Imaging, category=ImageCategory.RADIOGRAPH) -> uuid.UUID:
    patient = app.register_patient(DOCTOR, external_id=f"X{uuid.uuid4().hex[:6]}",
                                   given_name="A", family_name="B",
                                   birth_date=date(2010, 1, 1), sex="male").id
    app.grant_consent(DOCTOR, patient, ConsentScope.CLINICAL_PHOTOGRAPHY)
    image_id = uuid.uuid4()
    app.capture_image(DOCTOR, NewImage(
        image_id=image_id, patient_id=patient, original=BlobRef("k", "0" * 64, 1, "image/jpeg"),
        width=SIZE[0], height=SIZE[1], category=category, view=None,
        captured_at=datetime(2022, 1, 1, tzinfo=UTC), tags=[], filename="x.jpg"))
    return image_id


def test_stale_version_is_a_conflict_and_nothing_is_recorded(app):
    image = _image(app)
    added = app.add_annotation(DOCTOR, image, kind="line", points=[[0, 0], [10, 0]])
    app.edit_annotation(STAFF, added.id, added.version, points=[[0, 0], [20, 0]])
    with pytest.raises(Conflict) as err:
        app.edit_annotation(DOCTOR, added.id, added.version, points=[[0, 0], [30, 0]])
    assert err.value.code == "stale_version"
    annotation = app.annotation(DOCTOR, added.id)
    assert annotation.content["points"] == [[0, 0], [20, 0]] and annotation.version == 2


def test_undo_redo_round_trip_the_measurement_and_keep_every_event(app):
    image = _image(app)
    a = app.add_annotation(DOCTOR, image, kind="line", points=[[0, 0], [10, 0]])
    e = app.edit_annotation(DOCTOR, a.id, a.version, points=[[0, 0], [40, 0]])
    length = lambda: measure_content(app.annotation(DOCTOR, a.id).content, None).value  # noqa: E731
    assert length() == 40
    u = app.undo_annotation(DOCTOR, a.id, e.version)
    assert length() == 10
    r = app.redo_annotation(DOCTOR, a.id, u.version)
    assert length() == 40
    rm = app.remove_annotation(DOCTOR, a.id, r.version)
    assert app.annotation(DOCTOR, a.id).removed
    app.undo_annotation(DOCTOR, a.id, rm.version)  # undo restores a removal
    assert not app.annotation(DOCTOR, a.id).removed and length() == 40
    topics = [type(ev).__name__ for ev in app.events.get(a.id)]
    assert topics == ["Added", "Edited", "Undone", "Redone", "Removed", "Undone"]


def test_clinical_staff_edit_anyones_but_remove_only_their_own(app):
    image = _image(app)
    mine = app.add_annotation(STAFF, image, kind="point", points=[[1, 1]])
    theirs = app.add_annotation(STAFF2, image, kind="point", points=[[2, 2]])
    edited = app.edit_annotation(STAFF, theirs.id, theirs.version, label="checked")
    with pytest.raises(PermissionDenied) as err:
        app.remove_annotation(STAFF, theirs.id, edited.version)
    assert err.value.code == "not_own_annotation"
    app.remove_annotation(STAFF, mine.id, mine.version)
    app.remove_annotation(DOCTOR, theirs.id, edited.version)  # a doctor holds it fully
    with pytest.raises(PermissionDenied):
        app.add_annotation(FRONT, image, kind="point", points=[[1, 1]])


def test_other_clinic_gets_not_found_and_deleted_image_takes_no_marks(app):
    image = _image(app)
    a = app.add_annotation(DOCTOR, image, kind="point", points=[[1, 1]])
    with pytest.raises(NotFound):
        app.edit_annotation(OTHER, a.id, a.version, label="x")
    with pytest.raises(NotFound):
        app.add_annotation(OTHER, image, kind="point", points=[[1, 1]])
    app.delete_image(Actor("admin", "clinic_admin", CLINIC), image, "test")
    with pytest.raises(Conflict) as err:
        app.add_annotation(DOCTOR, image, kind="point", points=[[1, 1]])
    assert err.value.code == "image_deleted"


FIXED = {"S": [100, 400], "N": [700, 380], "A": [680, 560], "B": [650, 700],
         "Po": [60, 470], "Or": [560, 460], "Go": [150, 700], "Me": [600, 780]}


def test_tracing_undo_redo_round_trips_the_analysis(app):
    image = _image(app)
    t = app.start_tracing(DOCTOR, image, FIXED)
    sna = lambda: app.analyse_tracing(DOCTOR, t.id, ["steiner"], None).results[0].get(  # noqa: E731
        "sna").value
    before = sna()
    moved = app.place_landmarks(DOCTOR, t.id, t.version, {"A": [720, 560]})
    after = sna()
    assert after != pytest.approx(before)
    undone = app.undo_tracing(DOCTOR, t.id, moved.version)
    assert sna() == before
    app.redo_tracing(DOCTOR, t.id, undone.version)
    assert sna() == after
    # The analysis equals the pure computation on the same points.
    expected = analyze_one("steiner", {**FIXED, "A": [720, 560]}, None).get("sna").value
    assert after == expected


def test_tracing_rules(app):
    image = _image(app)
    photo = _image(app, ImageCategory.INTRAORAL)
    with pytest.raises(Conflict) as err:
        app.start_tracing(DOCTOR, photo, {})
    assert err.value.code == "not_a_radiograph"
    with pytest.raises(PermissionDenied):
        app.start_tracing(STAFF, image, {})  # imaging:cephalometric is the doctor's
    with pytest.raises(InvalidInput) as err:
        app.start_tracing(DOCTOR, image, {"S": [1, 1], "Zz": [2, 2], "Qq": [3, 3]})
    assert err.value.code == "unknown_landmark" and "Qq, Zz" in err.value.message
    with pytest.raises(InvalidInput) as err:
        app.start_tracing(DOCTOR, image, {"S": [1, 5000]})
    assert err.value.code == "coordinates_out_of_bounds"
    t = app.start_tracing(DOCTOR, image, {"S": [1, 1]})
    with pytest.raises(InvalidInput) as err:
        app.remove_landmarks(DOCTOR, t.id, t.version, ["N"])
    assert err.value.code == "landmark_not_placed"
    assert app.tracing(DOCTOR, t.id).version == t.version  # nothing recorded


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["place", "undo", "redo"]),
                          st.floats(0, 999), st.floats(0, 799)), max_size=12))
def test_tracing_landmarks_follow_the_edit_model(ops):
    app = Imaging()
    try:
        image = _image(app)
        t = app.start_tracing(DOCTOR, image, {})
        version, model, cursor = t.version, [{}], 0
        for op, x, y in ops:
            try:
                if op == "place":
                    version = app.place_landmarks(DOCTOR, t.id, version, {"N": [x, y]}).version
                    del model[cursor + 1:]
                    model.append({"N": [x, y]})
                    cursor += 1
                elif op == "undo":
                    version = app.undo_tracing(DOCTOR, t.id, version).version
                    cursor -= 1
                else:
                    version = app.redo_tracing(DOCTOR, t.id, version).version
                    cursor += 1
            except Conflict as err:
                assert err.code in ("nothing_to_undo", "nothing_to_redo")
            assert app.tracing(DOCTOR, t.id).landmarks == model[cursor]
    finally:
        app.close()


# ---- landmark suggestions ----------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.floats(-180, 180), st.floats(2, 20), st.booleans(),
       st.tuples(st.floats(100, 900), st.floats(100, 700)))
def test_template_fit_recovers_any_pose_and_mirror(degrees, px_per_mm, mirror, origin):
    from domain.landmark_suggestion import ANCHORS, TEMPLATE_MM, suggest_from_anchors

    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))

    def place(p):
        x, y = (-p[0] if mirror else p[0]) * px_per_mm, p[1] * px_per_mm
        return (origin[0] + c * x - s * y, origin[1] + s * x + c * y)

    anchors = {code: place(TEMPLATE_MM[code]) for code in ANCHORS}
    # A huge image, every point shifted well inside it, so no suggestion is left out.
    shifted = {k: (x + 5e5, y + 5e5) for k, (x, y) in anchors.items()}
    suggested = suggest_from_anchors(shifted, (10**6, 10**6))
    for code, point in TEMPLATE_MM.items():
        if code in ANCHORS:
            continue
        expected = place(point)
        assert suggested[code] == pytest.approx([expected[0] + 5e5, expected[1] + 5e5],
                                                abs=1e-6)


def test_suggestions_need_anchors_and_stay_suggestions_until_confirmed(app):
    from domain.landmark_suggestion import suggest_from_anchors

    with pytest.raises(InvalidInput) as err:
        suggest_from_anchors({"S": [0, 0], "N": [1, 1]}, SIZE)
    assert err.value.code == "anchors_required"
    with pytest.raises(InvalidInput) as err:
        suggest_from_anchors({"S": [0, 0], "N": [10, 10], "Me": [20, 20]}, SIZE)
    assert err.value.code == "degenerate_geometry"
    image = _image(app)
    t = app.start_tracing(DOCTOR, image, {"S": [300, 300], "N": [600, 300], "Me": [560, 760]})
    with pytest.raises(Conflict):
        app.suggest_landmarks(DOCTOR, t.id, t.version + 1)
    s = app.suggest_landmarks(DOCTOR, t.id, t.version)
    tracing = app.tracing(DOCTOR, t.id)
    assert "A" in tracing.suggestions and "A" not in tracing.landmarks
    sna = app.analyse_tracing(DOCTOR, t.id, ["steiner"], None).results[0].get("sna")
    assert not sna.computable and sna.missing_landmarks == ("A",)
    placed = app.place_landmarks(DOCTOR, t.id, s.version, {"B": [610, 600]})
    assert "B" not in app.tracing(DOCTOR, t.id).suggestions  # the click supersedes it
    with pytest.raises(InvalidInput) as err:
        app.confirm_landmarks(DOCTOR, t.id, placed.version, ["B"])
    assert err.value.code == "landmark_not_suggested"
    confirmed = app.confirm_landmarks(DOCTOR, t.id, placed.version, ["A"])
    tracing = app.tracing(DOCTOR, t.id)
    assert "A" in tracing.landmarks and "A" not in tracing.suggestions
    assert app.analyse_tracing(DOCTOR, t.id, ["steiner"], None).results[0].get(
        "sna").computable
    app.undo_tracing(DOCTOR, t.id, confirmed.version)  # undo un-confirms
    assert "A" in app.tracing(DOCTOR, t.id).suggestions
