"""Collage templates (pure): validation codes, the pre-built layouts, resolving slots."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from domain import collage as c
from domain.cephalometry.analyses import analyze_one
from domain.errors import Conflict, ErrorKind, InvalidInput

MILESTONES = ("initial", "progress_1", "progress_2", "debond")
PAGES = (c.A4, c.LETTER, c.custom_page(300, 200, "photo-book"))


def at(day: int, month: int = 1, year: int = 2024) -> datetime:
    return datetime(year, month, day, 10, 0, tzinfo=UTC)


def image(id_: str, view: str | None, milestone: str | None, when: datetime, *,
          quality: float | None = 0.8, deleted: bool = False,
          scopes: frozenset[str] = frozenset()) -> c.CollageImage:
    return c.CollageImage(id_, view, milestone, when, quality, deleted, scopes)


def one_cell(content: c.Content, frame: c.Frame | None = None, **template: object
             ) -> c.CollageTemplate:
    template.setdefault("name", "t")
    cells = (c.Cell(frame or c.Frame(20, 30, 50, 40), content),)
    return c.CollageTemplate(cells=cells, **template)  # type: ignore[arg-type]


def code_of(excinfo: pytest.ExceptionInfo[InvalidInput]) -> str:
    return excinfo.value.code


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (c.Frame(5, 30, 50, 40), "cell_outside_page"),  # into the 10 mm left margin
        (c.Frame(20, 30, 200, 40), "cell_outside_page"),  # past the right edge
        (c.Frame(20, 270, 50, 40), "cell_outside_page"),  # into the footer margin
        (c.Frame(20, 30, 0, 40), "invalid_cell_size"),
        (c.Frame(20, 30, 50, -1), "invalid_cell_size"),
        (c.Frame(20, 30, float("nan"), 40), "invalid_cell_size"),
    ],
)
def test_cell_frames_are_checked(frame: c.Frame, code: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        one_cell(c.ViewSlot("IV07"), frame)
    assert code_of(excinfo) == code
    assert excinfo.value.kind is ErrorKind.INVALID


def test_landscape_swaps_the_printable_area() -> None:
    wide = c.Frame(10, 20, 270, 100)
    with pytest.raises(InvalidInput, match="outside"):
        one_cell(c.ViewSlot("IV07"), wide)
    assert one_cell(c.ViewSlot("IV07"), wide, orientation=c.Orientation.LANDSCAPE)


def test_overlap_is_refused_unless_allowed_and_touching_is_fine() -> None:
    a = c.Cell(c.Frame(20, 30, 50, 40), c.ViewSlot("IV07"))
    b = c.Cell(c.Frame(60, 60, 50, 40), c.ViewSlot("IV01"))
    touching = c.Cell(c.Frame(70, 30, 50, 40), c.ViewSlot("IV18"))
    with pytest.raises(InvalidInput) as excinfo:
        c.CollageTemplate("t", (a, b))
    assert code_of(excinfo) == "cells_overlap"
    assert "cells 0 and 1" in excinfo.value.message
    assert c.CollageTemplate("t", (a, b), allow_overlap=True)
    assert c.CollageTemplate("t", (a, touching))


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (c.ViewSlot("IV99"), "unknown_view"),
        (c.ViewSlot("iv07"), "unknown_view"),  # codes are canonical upper case
        (c.ViewSlot("IV07", ""), "invalid_milestone"),
        (c.ViewSlot("IV07", "{debond}"), "invalid_milestone"),
        (c.ImageRef(""), "invalid_image_id"),
        (c.TextBlock("Hello {patient_name.__class__}"), "unknown_placeholder"),
        (c.TextBlock("Hello {ssn}"), "unknown_placeholder"),
        (c.TextBlock("Hello {patient_name!r}"), "unknown_placeholder"),
        (c.TextBlock("Hello {"), "invalid_text"),
        (c.TextBlock("Hi", size_pt=0), "invalid_font_size"),
        (c.MeasurementTable("astrology"), "unknown_analysis"),
    ],
)
def test_cell_contents_are_checked(content: c.Content, code: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        one_cell(content)
    assert code_of(excinfo) == code


@pytest.mark.parametrize(
    ("template", "code"),
    [
        ({"margins": c.Margins(top=5)}, "invalid_margins"),  # no room for the header
        ({"margins": c.Margins(top=5), "header": False, "footer": False}, "cell_outside_page"),
        ({"margins": c.Margins(left=-1)}, "invalid_margins"),
        ({"title": "{patient_name} {unknown}"}, "unknown_placeholder"),
        ({"name": ""}, "invalid_template_name"),
    ],
)
def test_page_level_problems(template: dict, code: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        one_cell(c.ViewSlot("IV07"), c.Frame(2, 2, 50, 40) if "header" in template else None,
                 **template)
    assert code_of(excinfo) == code


def test_empty_and_oversized_templates_and_bad_pages() -> None:
    with pytest.raises(InvalidInput, match="at least one cell"):
        c.CollageTemplate("t", ())
    many = tuple(c.Cell(c.Frame(10 + (i % 8) * 23, 20 + (i // 8) * 25, 20, 20),
                        c.ViewSlot("IV07")) for i in range(c.MAX_CELLS + 1))
    with pytest.raises(InvalidInput) as excinfo:
        c.CollageTemplate("t", many, allow_overlap=True)
    assert code_of(excinfo) == "too_many_cells"
    with pytest.raises(InvalidInput) as excinfo:
        c.custom_page(10, 300)
    assert code_of(excinfo) == "invalid_page_size"
    with pytest.raises(InvalidInput) as excinfo:
        c.Branding("Clinic", primary="blue")
    assert code_of(excinfo) == "invalid_colour"


def test_radiograph_types_are_known_views() -> None:
    assert one_cell(c.ViewSlot("lateral_ceph"))
    assert one_cell(c.ViewSlot("panoramic", "initial"))


# --- the pre-built layouts -------------------------------------------------------------------


def all_layouts(page: c.PageSize) -> dict[str, c.CollageTemplate]:
    return {
        "abo_8": c.prebuilt("abo_8", page=page),
        "full_series_12": c.prebuilt("full_series_12", page=page, milestone="debond"),
        "before_after": c.prebuilt("before_after", page=page, view="IV07"),
        "progress_timeline": c.prebuilt("progress_timeline", page=page, view="IV07",
                                        milestones=MILESTONES),
        "ceph_pano": c.prebuilt("ceph_pano", page=page),
        "smile_progress": c.prebuilt("smile_progress", page=page, milestones=MILESTONES[::3]),
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_layout_fits_its_page_without_overlap(page: c.PageSize) -> None:
    for name, template in all_layouts(page).items():
        box = template.content
        frames = [cell.frame for cell in template.cells]
        assert all(box.contains(f) for f in frames), name
        assert not any(a.overlaps(b) for i, a in enumerate(frames) for b in frames[i + 1:])
        # The layouts use the page: at least 60 % of the printable area is cells.
        used = sum(f.width * f.height for f in frames) / (box.width * box.height)
        assert used > 0.6, (name, used)


def test_layout_contents() -> None:
    abo = c.abo_eight()
    views = [cell.content.view for cell in abo.cells if isinstance(cell.content, c.ViewSlot)]
    assert sorted(views) == sorted(["EV15", "EV19", "EV01", "IV25", "IV27", "IV01", "IV07",
                                    "IV18"])
    assert any(isinstance(cell.content, c.TextBlock) for cell in abo.cells)
    series = c.full_series()
    assert len({cell.content.view for cell in series.cells}) == 12  # type: ignore[union-attr]
    ceph = c.ceph_pano_sheet()
    kinds = [type(cell.content) for cell in ceph.cells]
    assert kinds == [c.ViewSlot, c.ViewSlot, c.MeasurementTable]
    assert [cell.content.milestone for cell in c.smile_progress(["initial", "debond"]).cells
            ] == ["initial", "debond", "initial", "debond"]  # type: ignore[union-attr]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 6, 7, 9, 12, 16, 24])
def test_progress_timeline_grid_is_computed_for_n(count: int) -> None:
    milestones = [f"m{i}" for i in range(count)]
    template = c.progress_timeline("IV07", milestones)
    assert [cell.content.milestone for cell in template.cells] == milestones  # type: ignore
    rows, cols = c.best_grid(count, template.content)
    assert rows * cols >= count and (rows - 1) * cols < count  # no empty row
    # Reading order: left to right, then down.
    frames = [cell.frame for cell in template.cells]
    assert frames == sorted(frames, key=lambda f: (round(f.y, 6), f.x))


def test_timeline_and_layout_parameters_are_checked() -> None:
    with pytest.raises(InvalidInput) as excinfo:
        c.progress_timeline("IV07", [])
    assert code_of(excinfo) == "invalid_milestones"
    with pytest.raises(InvalidInput) as excinfo:
        c.progress_timeline("XX01", ["initial"])
    assert code_of(excinfo) == "unknown_view"
    with pytest.raises(InvalidInput) as excinfo:
        c.prebuilt("mosaic")
    assert code_of(excinfo) == "unknown_layout"
    with pytest.raises(InvalidInput) as excinfo:
        c.prebuilt("abo_8", colour="red")
    assert code_of(excinfo) == "invalid_layout_parameters"


@pytest.mark.parametrize("name", sorted(c.LAYOUTS))
def test_templates_round_trip_through_their_stored_form(name: str) -> None:
    template = all_layouts(c.LETTER)[name]
    assert c.template_from_dict(c.template_to_dict(template)) == template


def test_a_stored_template_is_validated_when_read() -> None:
    raw = c.template_to_dict(c.abo_eight())
    raw["cells"][0]["content"]["view"] = "IV99"
    with pytest.raises(InvalidInput) as excinfo:
        c.template_from_dict(raw)
    assert code_of(excinfo) == "unknown_view"
    with pytest.raises(InvalidInput) as excinfo:
        c.template_from_dict({"name": "x"})
    assert code_of(excinfo) == "invalid_template"


def test_placement_geometry() -> None:
    area = c.Frame(10, 10, 90, 40)
    fitted = c.fitted_box(area, 3000, 2000, c.Fit.FIT)  # height-limited: 60 x 40, centred
    assert (fitted.x, fitted.y, fitted.width, fitted.height) == (25, 10, 60, 40)
    assert c.fitted_box(area, 3000, 2000, c.Fit.FILL) == area
    left, top, right, bottom = c.cover_crop(3000, 2000, area)  # keep 2000 x 888.9, centred
    assert (left, right) == (0, 3000) and bottom - top == pytest.approx(3000 / 90 * 40)
    # 60 mm at 300 dpi is 709 px; a 500 px source is never upscaled.
    assert c.target_pixels(fitted, 300, (3000, 2000)) == (709, 472)
    assert c.target_pixels(fitted, 300, (300, 200)) == (300, 200)


# --- resolve: smart selection ----------------------------------------------------------------


def slot(view: str, milestone: str = c.LATEST) -> c.CollageTemplate:
    return one_cell(c.ViewSlot(view, milestone), c.Frame(20, 30, 60, 40))


def test_best_quality_wins_at_a_milestone_and_is_explained() -> None:
    images = [
        image("a", "IV07", "debond", at(1, 5), quality=0.71),
        image("b", "IV07", "debond", at(1, 5), quality=0.92),
        image("c", "IV07", "debond", at(2, 5), quality=0.65),
        image("d", "IV07", "initial", at(1, 1), quality=0.99),
        image("e", "IV01", "debond", at(1, 5), quality=1.0),
    ]
    resolved = c.resolve(slot("IV07", "debond"), images)
    cell = resolved.cells[0]
    assert cell.image is not None and cell.image.id == "b"
    assert cell.explanation == "best quality (0.92) among 3 IV07 at debond"
    assert resolved.missing == ()


def test_milestone_names_match_case_insensitively() -> None:
    resolved = c.resolve(slot("IV07", "Debond"), [image("a", "IV07", "debond", at(1))])
    assert resolved.cells[0].image is not None


def test_latest_and_first_pick_a_visit_then_its_best_image() -> None:
    images = [
        image("old-good", "IV07", "initial", at(1, 1), quality=0.99),
        image("new-poor", "IV07", "debond", at(1, 6), quality=0.4),
        image("new-retake", "IV07", "debond", at(3, 6), quality=0.8),
    ]
    latest = c.resolve(slot("IV07"), images).cells[0]
    assert latest.image is not None and latest.image.id == "new-retake"
    assert latest.explanation == "best quality (0.80) among 2 IV07 in the latest session (debond)"
    first = c.resolve(slot("IV07", c.FIRST), images).cells[0]
    assert first.image is not None and first.image.id == "old-good"
    assert first.explanation == "only IV07 in the first session (initial)"


def test_untagged_images_are_grouped_by_day_for_latest() -> None:
    images = [image("x", "EV19", None, at(2, 3)), image("y", "EV19", None, at(9, 3))]
    cell = c.resolve(slot("EV19"), images).cells[0]
    assert cell.image is not None and cell.image.id == "y"
    assert "2024-03-09" in cell.explanation


def test_untagged_images_near_the_milestone_date_stand_in_closest_first() -> None:
    images = [
        image("far", "IV07", None, at(1, 1), quality=0.99),  # 4 months off: not a stand-in
        image("near", "IV07", None, at(28, 4), quality=0.5),
        image("nearer", "IV07", None, at(3, 5), quality=0.3),
    ]
    dates = {"debond": date(2024, 5, 1)}
    cell = c.resolve(slot("IV07", "debond"), images, milestone_dates=dates).cells[0]
    assert cell.image is not None and cell.image.id == "nearer"
    assert cell.explanation.startswith("closest to the milestone date (2 days off) among 2")
    # Without the date there is nothing to go by: the slot is missing, not guessed.
    assert c.resolve(slot("IV07", "debond"), images).cells[0].missing


def test_equal_quality_is_decided_by_closeness_then_recency() -> None:
    dates = {"debond": date(2024, 5, 1)}
    images = [image("a", "IV07", "debond", at(10, 5)), image("b", "IV07", "debond", at(2, 5))]
    cell = c.resolve(slot("IV07", "debond"), images, milestone_dates=dates).cells[0]
    assert cell.image is not None and cell.image.id == "b"
    assert "closest to the milestone date (1 days off)" in cell.explanation
    same_day = [image("a", "IV07", "debond", at(2, 5)),
                image("b", "IV07", "debond", datetime(2024, 5, 2, 11, tzinfo=UTC))]
    cell = c.resolve(slot("IV07", "debond"), same_day).cells[0]
    assert cell.image is not None and cell.image.id == "b"
    assert cell.explanation.startswith("most recent of equal quality")


def test_unscored_images_rank_as_average() -> None:
    images = [image("scored", "IV07", "debond", at(1, 5), quality=0.4),
              image("unscored", "IV07", "debond", at(1, 5), quality=None)]
    cell = c.resolve(slot("IV07", "debond"), images).cells[0]
    assert cell.image is not None and cell.image.id == "unscored"


def test_deleted_images_are_never_picked() -> None:
    images = [image("gone", "IV07", "debond", at(1, 5), quality=1.0, deleted=True),
              image("kept", "IV07", "debond", at(1, 5), quality=0.2)]
    cell = c.resolve(slot("IV07", "debond"), images).cells[0]
    assert cell.image is not None and cell.image.id == "kept"
    assert cell.explanation.endswith("; 1 deleted skipped")
    only_deleted = c.resolve(slot("IV07"), images[:1])
    assert only_deleted.missing[0].reason == "no IV07 image (all deleted)"


def test_missing_slots_are_listed_with_labels() -> None:
    template = c.abo_eight(milestone="debond")
    images = [image(v, v, "debond", at(1, 5)) for v in ("EV15", "EV19", "EV01", "IV25", "IV27",
                                                       "IV01", "IV18")]
    images.append(image("iv07-initial", "IV07", "initial", at(1, 1)))
    resolved = c.resolve(template, images, fields={"patient_name": "Ada Lovelace"})
    assert [(m.label, m.milestone, m.reason) for m in resolved.missing] == [
        ("IV07", "debond", "no IV07 image at debond")]
    assert resolved.missing[0].placeholder == "IV07 — missing"
    assert len(resolved.image_ids) == 7
    missing_cell = resolved.cells[resolved.missing[0].index]
    assert missing_cell.missing and missing_cell.image is None


def test_explicit_images() -> None:
    images = [image("a", "IV07", "debond", at(1, 5)),
              image("b", "IV07", "debond", at(1, 5), deleted=True)]
    assert c.resolve(one_cell(c.ImageRef("a")), images).cells[0].explanation == \
        "chosen explicitly"
    assert c.resolve(one_cell(c.ImageRef("b")), images).missing[0].reason == \
        "image b is deleted"
    assert c.resolve(one_cell(c.ImageRef("zz")), images).missing[0].reason == \
        "image zz is not available"


# --- consent ---------------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", [c.Purpose.MARKETING, c.Purpose.EDUCATIONAL])
def test_non_clinical_use_needs_the_matching_consent(purpose: c.Purpose) -> None:
    clinical_only = [image("a", "IV07", "debond", at(1, 5),
                           scopes=frozenset({"clinical_photography"}))]
    assert c.resolve(slot("IV07"), clinical_only).cells[0].image is not None
    with pytest.raises(Conflict) as excinfo:
        c.resolve(slot("IV07"), clinical_only, purpose=purpose)
    assert excinfo.value.code == "consent_required"
    assert excinfo.value.kind is ErrorKind.CONFLICT
    assert f"{purpose.value} consent is required" in excinfo.value.message
    with pytest.raises(Conflict, match=purpose.value):
        c.resolve(one_cell(c.ImageRef("a")), clinical_only, purpose=purpose)
    consented = [image("a", "IV07", "debond", at(1, 5), scopes=frozenset({purpose.value}))]
    assert c.resolve(slot("IV07"), consented, purpose=purpose).cells[0].image is not None


def test_images_without_consent_are_skipped_when_others_have_it() -> None:
    images = [image("best", "IV07", "debond", at(1, 5), quality=0.99),
              image("ok", "IV07", "debond", at(1, 5), quality=0.5,
                    scopes=frozenset({"marketing"}))]
    cell = c.resolve(slot("IV07"), images, purpose=c.Purpose.MARKETING).cells[0]
    assert cell.image is not None and cell.image.id == "ok"
    assert cell.explanation.endswith("; 1 without marketing consent skipped")


# --- text, captions, tables ------------------------------------------------------------------


def test_placeholders_fill_text_captions_and_title() -> None:
    template = c.before_after("EV19", before="initial", after=c.LATEST)
    images = [image("i", "EV19", "initial", at(5, 1)), image("d", "EV19", "debond", at(6, 6))]
    resolved = c.resolve(template, images, fields={"patient_name": "Ada Lovelace",
                                                   "date": "2024-06-07", "ignored": "x"})
    assert resolved.title == "Ada Lovelace — before and after — frontal smile"
    assert [cell.caption for cell in resolved.cells] == [
        "Before — initial, 2024-01-05", "After — debond, 2024-06-06"]
    assert "ignored" not in resolved.fields
    assert c.fill_placeholders("{patient_name}: {{literal}}", {}) == ": {literal}"


def test_the_abo_block_names_the_visit_shown() -> None:
    template = c.abo_eight()  # latest
    images = [image(v, v, "debond", at(1, 5)) for row in c.ABO_EIGHT_ROWS for v in row if v]
    resolved = c.resolve(template, images, fields={"patient_name": "Ada", "date": "2024-05-02"})
    block = next(cell for cell in resolved.cells if cell.text is not None)
    assert block.text == "Ada\ndebond\n2024-05-02"
    assert resolved.title == "Ada — ABO records — debond"


STEINER_PX = {code: (x * 4, y * 4) for code, (x, y) in {
    "S": (0, 0), "N": (70, 0), "A": (65, 50), "B": (52, 90), "Go": (-5, 82), "Gn": (55, 110),
    "U1": (68, 82), "U1_apex": (58, 52), "L1": (60, 79), "L1_apex": (42, 103),
}.items()}


def test_measurement_tables_come_from_analysis_results() -> None:
    steiner = analyze_one("steiner", STEINER_PX, 0.25, age=30, sex="female")
    template = c.ceph_pano_sheet(milestone="debond")
    resolved = c.resolve(template, [], analyses=[steiner])
    table = resolved.cells[2].table
    assert table is not None
    assert table.columns == ("Measurement", "Value", "Norm", "Interpretation")
    rows = {row[0]: row for row in table.rows}
    assert rows["SNA"][1].endswith("°") and rows["SNA"][2].startswith("82")
    assert [m.label for m in resolved.missing] == ["lateral_ceph", "panoramic"]
    chosen = c.ceph_table(steiner, keys=("anb", "sna", "nope"))
    assert [row[0] for row in chosen.rows] == ["ANB", "SNA"]
    no_analysis = c.resolve(template, [])
    assert no_analysis.missing[-1].label == "Steiner table"
    assert no_analysis.missing[-1].reason == "no Steiner analysis available"


def test_a_logo_cell_without_a_logo_is_a_missing_slot() -> None:
    resolved = c.resolve(one_cell(c.Logo()), [], has_logo=False)
    assert resolved.missing[0].placeholder == "logo — missing"
    assert not c.resolve(one_cell(c.Logo()), []).missing
