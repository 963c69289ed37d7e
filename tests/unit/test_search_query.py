"""Search queries are split into words before any tsquery is built: syntax is inert."""

from __future__ import annotations

import pytest

from domain.errors import InvalidInput
from projections.search import ParsedQuery, decode_cursor, view_text, words


def test_words_are_letters_and_digits_only():
    assert words("Ada  O'Brien-Smith & | !x:*A (P-1001)") == [
        "ada", "o", "brien", "smith", "x", "a", "p", "1001"]
    assert words("Müller_müller ÄDA") == ["müller", "äda"]


def test_tsquery_has_prefixes_corrections_and_weights():
    parsed = ParsedQuery.parse("lovlace x")
    assert parsed.tsquery({"lovlace": ["lovelace"]}, "") == "(lovlace:* | lovelace) & (x)"
    assert parsed.tsquery({"lovlace": ["lovelace"]}, "ABC") == \
        "(lovlace:*ABC | lovelace:ABC) & (x:ABC)"
    assert parsed.tsquery({}, "ABC", exact=True) == "lovlace:ABC & x:ABC"


@pytest.mark.parametrize("query,code", [
    ("", "empty_query"), ("&|!():*'", "empty_query"), ("a" * 201, "query_too_long"),
    ("a b c d e f g h i", "too_many_words"),
])
def test_refused_queries(query, code):
    with pytest.raises(InvalidInput) as refused:
        ParsedQuery.parse(query)
    assert refused.value.code == code


@pytest.mark.parametrize("cursor", ["", "x", "bm90IGpzb24", "WzEsMl0"])
def test_foreign_cursors_are_refused(cursor):
    with pytest.raises(InvalidInput):
        decode_cursor(cursor)


def test_view_text_names_the_view():
    assert view_text("intraoral", "IV24") == "intraoral IV24 upper occlusal (mirror)"
    assert view_text("radiograph", None) == "radiograph"
