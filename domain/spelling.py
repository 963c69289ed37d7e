"""Which word of a clinic's lexicon a mistyped search word meant.

Candidates come from the lexicon's deletion neighbourhood (every term is stored with each
spelling that drops one letter, so one index look-up finds every term within one
insertion, deletion, substitution or adjacent transposition of the typed word) and from
trigram similarity (longer words with two slips). They are ranked here by an edit cost in
which the commonest slips of a typist cost less than an arbitrary edit:

* a letter typed twice or once too few inside a double ("Hoppper", "Hoper"): 0.5;
* a letter left out ("Johson"): 0.7, the commonest slip of a typist after those;
* two neighbouring letters swapped ("Jonhson"): 0.75;
* a neighbouring key hit instead ("Jihnson"): 0.75;
* any other extra or wrong letter: 1.

Ties go to the term more of the clinic's records use, then alphabetically. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

DOUBLE = 0.5
DROP = 0.7
SWAP = 0.75
NEIGHBOUR_KEY = 0.75
EDIT = 1.0
MIN_LETTERS = 3  # shorter words are only ever matched as typed (or as a prefix)

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_KEYS = {ch: (r, c) for r, row in enumerate(_ROWS) for c, ch in enumerate(row)}


def correctable(word: str) -> bool:
    """Words of letters only (identifiers are never "corrected" into another patient's)."""
    return len(word) >= MIN_LETTERS and word.isalpha()


def deletions(word: str) -> list[str]:
    """The word itself and every spelling of it with one letter left out."""
    return list(dict.fromkeys([word, *(word[:i] + word[i + 1:] for i in range(len(word)))]))


def max_cost(typed: str) -> float:
    """One slip in a short word, two in a longer one."""
    return EDIT if len(typed) <= 5 else 2 * EDIT


def _neighbours(a: str, b: str) -> bool:
    if a not in _KEYS or b not in _KEYS:
        return False
    (ra, ca), (rb, cb) = _KEYS[a], _KEYS[b]
    return abs(ra - rb) <= 1 and abs(ca - cb) <= 1 and (ra, ca) != (rb, cb)


def _doubled(word: str, i: int) -> bool:
    ch = word[i - 1]
    return (i >= 2 and word[i - 2] == ch) or (i < len(word) and word[i] == ch)


def _extra(typed: str, i: int) -> float:
    """``typed[i - 1]`` is one letter too many."""
    return DOUBLE if _doubled(typed, i) else EDIT


def _missing(term: str, j: int) -> float:
    """``term[j - 1]`` was left out."""
    return DOUBLE if _doubled(term, j) else DROP


def typo_cost(typed: str, term: str) -> float:
    """Weighted optimal-string-alignment (restricted Damerau-Levenshtein) distance."""
    rows, cols = len(typed), len(term)
    d = [[0.0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(1, rows + 1):
        d[i][0] = d[i - 1][0] + _extra(typed, i)
    for j in range(1, cols + 1):
        d[0][j] = d[0][j - 1] + _missing(term, j)
    for i in range(1, rows + 1):
        for j in range(1, cols + 1):
            a, b = typed[i - 1], term[j - 1]
            substitute = 0.0 if a == b else NEIGHBOUR_KEY if _neighbours(a, b) else EDIT
            best = min(d[i - 1][j] + _extra(typed, i), d[i][j - 1] + _missing(term, j),
                       d[i - 1][j - 1] + substitute)
            if i > 1 and j > 1 and a == term[j - 2] and typed[i - 2] == b and a != b:
                best = min(best, d[i - 2][j - 2] + SWAP)
            d[i][j] = best
    return d[rows][cols]


def rank(typed: str, candidates: Mapping[str, int]) -> list[str]:
    """The candidates (term → how many records use it) within reach of ``typed``, the
    likeliest first; ``typed`` itself comes first when it is a term."""
    limit = max_cost(typed)
    scored = [(typo_cost(typed, term), -uses, term) for term, uses in candidates.items()]
    return [term for cost, _, term in sorted(scored) if cost <= limit]
