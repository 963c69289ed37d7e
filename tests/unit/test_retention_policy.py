"""Retention rules as pure functions: periods by category and age, recovery window, holds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from domain.consent_rules import grantor, is_minor
from domain.errors import Conflict, InvalidInput
from domain.retention import (
    DEFAULT_POLICY,
    Basis,
    ImageFacts,
    RetentionPolicy,
    add_years,
    decide,
    retain_until,
)


def test_add_years_keeps_the_day_and_handles_29_february():
    assert add_years(date(2020, 3, 1), 11) == date(2031, 3, 1)
    assert add_years(date(2020, 2, 29), 1) == date(2021, 2, 28)
    assert add_years(date(2020, 2, 29), 4) == date(2024, 2, 29)


def test_adult_records_run_from_the_last_visit():
    until = retain_until(DEFAULT_POLICY, category="intraoral", captured_on=date(2005, 3, 1),
                         last_activity=date(2008, 6, 1), birth_date=date(1970, 1, 1))
    assert until == date(2019, 6, 1)
    assert retain_until(DEFAULT_POLICY, category="document", captured_on=date(2005, 3, 1),
                        last_activity=date(2005, 3, 1), birth_date=date(1970, 1, 1)) == \
        date(2013, 3, 1)


def test_a_minors_records_run_to_majority_plus_n_years_if_that_is_later():
    born = date(2010, 5, 17)
    child = retain_until(DEFAULT_POLICY, category="radiograph", captured_on=date(2012, 1, 1),
                         last_activity=date(2012, 1, 1), birth_date=born)
    assert child == date(2035, 5, 17)  # 25th birthday beats 2023
    teen = retain_until(DEFAULT_POLICY, category="radiograph", captured_on=date(2027, 1, 1),
                        last_activity=date(2027, 1, 1), birth_date=born)
    assert teen == date(2038, 1, 1)  # 11 years after the last visit beats the 25th birthday
    adult = retain_until(DEFAULT_POLICY, category="radiograph", captured_on=date(2029, 1, 1),
                         last_activity=date(2029, 1, 1), birth_date=born)
    assert adult == date(2040, 1, 1)
    strict = RetentionPolicy(age_of_majority=21, years_after_majority=10)
    assert retain_until(strict, category="photo", captured_on=date(2012, 1, 1),
                        last_activity=date(2012, 1, 1), birth_date=born) == date(2041, 5, 17)


def _facts(**overrides) -> ImageFacts:
    values = dict(image_id=uuid4(), clinic_id="c", patient_id=uuid4(), category="photo",
                  captured_on=date(2001, 1, 1), last_activity=date(2001, 1, 1),
                  birth_date=date(1960, 1, 1), deleted_at=None, on_hold=False)
    values.update(overrides)
    return ImageFacts(**values)


def test_decisions():
    now = datetime(2026, 6, 1, tzinfo=UTC)
    due = decide(DEFAULT_POLICY, _facts(), now)
    assert due.destroy and due.basis is Basis.RETENTION_PERIOD_ENDED
    assert due.due == date(2012, 1, 1)
    held = decide(DEFAULT_POLICY, _facts(on_hold=True), now)
    assert not held.destroy and "legal hold" in held.why
    recent = decide(DEFAULT_POLICY, _facts(captured_on=date(2020, 1, 1),
                                           last_activity=date(2020, 1, 1)), now)
    assert not recent.destroy and recent.due == date(2031, 1, 1)
    # Soft-deleted: destroyed once the recovery window ends, not before.
    fresh = _facts(captured_on=date(2025, 1, 1), last_activity=date(2025, 1, 1))
    inside = decide(DEFAULT_POLICY, _facts(**{**fresh.__dict__,
                                              "deleted_at": now - timedelta(days=29)}), now)
    assert not inside.destroy
    after = decide(DEFAULT_POLICY, _facts(**{**fresh.__dict__,
                                             "deleted_at": now - timedelta(days=30)}), now)
    assert after.destroy and after.basis is Basis.RECOVERY_WINDOW_ENDED


@pytest.mark.parametrize("kwargs", [
    {"years_by_category": {"photo": -1}},
    {"years_by_category": {"selfie": 3}},
    {"recovery_days": -1},
    {"age_of_majority": 99},
    {"years_after_majority": 101},
])
def test_invalid_policies_are_refused(kwargs):
    with pytest.raises(InvalidInput) as refused:
        RetentionPolicy(**kwargs)
    assert refused.value.code == "invalid_policy"


def test_policy_round_trips_through_its_stored_form():
    policy = RetentionPolicy(years_by_category={**DEFAULT_POLICY.years_by_category,
                                                "radiograph": 15}, recovery_days=7)
    assert RetentionPolicy.from_dict(policy.as_dict()) == policy


def test_minor_means_under_18_on_the_day():
    assert is_minor(date(2008, 6, 2), date(2026, 6, 1))
    assert not is_minor(date(2008, 6, 1), date(2026, 6, 1))
    assert grantor(date(2008, 6, 2), None, date(2026, 6, 1)) == "guardian"
    assert grantor(date(2008, 6, 1), None, date(2026, 6, 1)) == "patient"
    with pytest.raises(Conflict):
        grantor(date(2008, 6, 2), "patient", date(2026, 6, 1))
