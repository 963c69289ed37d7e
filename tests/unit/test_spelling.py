"""The typo cost and ranking behind search's typo tolerance (pure, no database)."""

from __future__ import annotations

import pytest

from domain.spelling import correctable, deletions, rank, typo_cost


@pytest.mark.parametrize("typed,term,cost", [
    ("johnson", "johnson", 0.0),
    ("hoper", "hopper", 0.5),      # a double undone
    ("hoppper", "hopper", 0.5),    # a letter typed twice
    ("johson", "johnson", 0.7),    # a letter left out
    ("jonhson", "johnson", 0.75),  # neighbouring letters swapped
    ("jihnson", "johnson", 0.75),  # a neighbouring key (i beside o)
    ("jqhnson", "johnson", 1.0),   # a wrong letter far away
    ("johnxson", "johnson", 1.0),  # an extra letter
    ("abcd", "bcda", 1.7),         # two edits: a deletion, then a missing letter
])
def test_typo_cost(typed, term, cost):
    assert typo_cost(typed, term) == pytest.approx(cost)


def test_every_single_slip_shares_a_deletion_with_the_word():
    """Why one look-up of the typed word's deletions finds every term within one slip."""
    word = "johnson"
    slips = ["jonhson", "johnsn", "johnsonn", "jihnson", "xjohnson"]
    for typo in slips:
        assert set(deletions(typo)) & set(deletions(word)), typo


def test_rank_prefers_the_cheaper_slip_then_the_commoner_term():
    assert rank("jonhson", {"jonson": 5, "johnson": 1}) == ["johnson", "jonson"]
    assert rank("smiht", {"smith": 1, "smyth": 3}) == ["smith"]  # smyth is two slips away
    assert rank("jons", {"jons": 1, "jones": 9}) == ["jons", "jones"]  # the word itself first
    assert rank("mark", {"marc": 2, "mars": 1}) == ["marc", "mars"]  # equal cost: commoner


def test_only_words_of_letters_are_corrected():
    assert correctable("lovelace") and correctable("müller")
    assert not correctable("104857") and not correctable("p1") and not correctable("ab")
