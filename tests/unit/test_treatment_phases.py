"""Phase assignment: explicit link, then capture session, then capture date."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from domain.treatment import PhaseImage, PhaseMilestone, assign_phases, labels

INITIAL = PhaseMilestone("m-initial", "initial_records", date(2026, 2, 1))
PROGRESS_1 = PhaseMilestone("m-p1", "progress", date(2026, 4, 1))
PROGRESS_2 = PhaseMilestone("m-p2", "progress", date(2026, 5, 15))
DEBOND = PhaseMilestone("m-debond", "debond", date(2026, 7, 1))
TIMELINE = [DEBOND, PROGRESS_2, INITIAL, PROGRESS_1]  # any order in


def image(day: date, **session: object) -> PhaseImage:
    return PhaseImage(uuid.uuid4(), datetime(day.year, day.month, day.day, 9, tzinfo=UTC),
                      **session)  # type: ignore[arg-type]


def test_by_capture_date_the_latest_milestone_on_or_before():
    before, on_day, between, after = (image(date(2026, 1, 5)), image(date(2026, 2, 1)),
                                      image(date(2026, 5, 1)), image(date(2026, 9, 9)))
    result = assign_phases(TIMELINE, [before, on_day, between, after], {})
    assert result[before.image_id] == (None, "none")
    assert result[on_day.image_id] == ("m-initial", "date")
    assert result[between.image_id] == ("m-p1", "date")
    assert result[after.image_id] == ("m-debond", "date")


def test_session_beats_date_and_picks_the_nearest_milestone_of_its_kind():
    late = image(date(2026, 9, 9), session_kind="progress", session_on=date(2026, 5, 20))
    unknown_kind = image(date(2026, 9, 9), session_kind="retention",
                         session_on=date(2026, 9, 9))
    result = assign_phases(TIMELINE, [late, unknown_kind], {})
    assert result[late.image_id] == ("m-p2", "session")
    # No retention milestone yet: the date decides.
    assert result[unknown_kind.image_id] == ("m-debond", "date")


def test_an_explicit_link_wins_unless_its_milestone_is_gone():
    linked = image(date(2026, 1, 5), session_kind="progress", session_on=date(2026, 4, 1))
    dangling = image(date(2026, 1, 5))
    result = assign_phases(TIMELINE, [linked, dangling],
                           {linked.image_id: "m-debond", dangling.image_id: "m-nope"})
    assert result[linked.image_id] == ("m-debond", "link")
    assert result[dangling.image_id] == (None, "none")


def test_default_labels_number_the_progress_milestones():
    assert labels(TIMELINE) == {"m-initial": "Initial records", "m-p1": "Progress 1",
                                "m-p2": "Progress 2", "m-debond": "Debond"}
