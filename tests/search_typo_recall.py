"""Typo recall of search: does a realistic misspelling find the intended word first?

The lexicon is a realistic clinic's (common given and family names of the practice's
patients, including near-twins such as Johnson/Jonson, Hopper/Hooper, Smith/Smyth; the
orthodontic tags; album names). The cases (``tests/data/search_typos.tsv``) are realistic
misspellings of those words: adjacent letters swapped, a letter dropped, a letter doubled or
a double undone, a wrong letter (a neighbouring key, or one that sounds alike), plus a few
misspellings seen in the wild. Misspellings that are themselves words of the lexicon are
left out: no spelling model can tell them from an intended word.

``measure(view, clinic)`` loads the lexicon into a search read model and asks it, for each
case, for its likeliest term (``SearchView.spelling_candidates``, what search itself uses).
``python tests/search_typo_recall.py`` prints the table and rewrites it in
docs/organisation.md; ``--generate`` writes the cases anew (seeded, so the same list).
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "data" / "search_typos.tsv"
DOC = ROOT / "docs" / "organisation.md"
BEGIN, END = "<!-- typo-recall:begin -->", "<!-- typo-recall:end -->"
TARGET = 0.95
KINDS = ("swap", "drop", "double", "wrong", "seen")


def _items(text: str, separator: str | None = None) -> list[str]:
    return [item.strip() for item in text.split(separator)]


GIVEN = _items("""James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David
Barbara Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Nancy Daniel Lisa
Matthew Margaret Anthony Sandra Mark Marc Marco Marcus Steven Stephen Ashley Paul Kimberly
Andrew Emily Joshua Donna Kevin Michelle Brian Carol George Amanda Edward Melissa Ronald
Deborah Timothy Stephanie Jason Rebecca Jeffrey Sharon Ryan Laura Lara Jacob Cynthia Gary
Kathleen Nicholas Amy Eric Angela Jonathan Jon Jonas Anna Ann Anne Larry Brenda Justin Emma
Brandon Nicole Benjamin Helen Samuel Samantha Katherine Catherine Kathryn Sophie Sophia
Olivia Liam Noah Lukas Lucas Leon Finn Mia Hannah Lena Lea Elena Marie Maria Mario Grace
Ada Clara Felix Isaac Julia Julian Max Oliver Theo Zoe Yara Ella Ellen Eva Eve""")

FAMILY = _items("""Smith Smyth Johnson Jonson Johansson Williams Brown Jones Garcia Miller Davis
Rodriguez Martinez Hernandez Lopez Gonzalez Wilson Anderson Andersen Thomas Taylor Moore
Jackson Martin Lee Perez Thompson Thomson White Harris Sanchez Clark Ramirez Lewis Robinson
Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall
Rivera Campbell Mitchell Carter Roberts Schmidt Schmitt Schneider Fischer Fisher Weber Meyer
Meier Mayer Wagner Becker Schulz Hoffmann Hofmann Koch Richter Klein Wolf Neumann Schwarz
Zimmermann Braun Hartmann Lange Werner Krause Lehmann Jensen Hansen Petersen Peterson
Nielsen Larsen Hopper Hooper Lovelace Curie Turing Kowalski Novak Rossi Russo Ferrari
Esposito Bianchi Romano Dubois Bernard Moreau Laurent Lefebvre Murphy Kelly Sullivan
Walsh Byrne Ryan Brennan Gallagher Doherty McDonald MacDonald Fraser Stewart Stuart Morrison
Patel Shah Khan Ali Singh Kumar Sato Suzuki Tanaka Kim Park Chen Wang Zhang Li""")

TAGS = _items("""initial progress debond retention class ii iii crossbite open bite deep crowding
spacing extraction expander elastics aligner bracket retainer gingivitis white spot root
resorption impacted canine midline shift overjet overbite underbite asymmetry case study
cephalometric panoramic occlusal diastema headgear premolar molar incisor lateral frontal
profile smile hygiene decalcification""")

ALBUMS = _items("""Smile makeover; Lecture 2026; Board exam cases; Surgical cases; Veneers;
Invisalign starts; Referral letters; Before and after; Study club; Retention checks;
Conference poster; Case presentations""", ";")

# Misspellings seen in the wild (intended word, typo).
SEEN = [("johnson", "jonhson"), ("michael", "micheal"), ("thompson", "tompson"),
        ("rodriguez", "rodriquez"), ("katherine", "kathrine"), ("elizabeth", "elizabteh"),
        ("jennifer", "jenifer"), ("christopher", "cristopher"), ("stephanie", "stephenie"),
        ("williams", "wiliams"), ("gallagher", "gallager"), ("martinez", "martines"),
        ("hernandez", "hernandes"), ("rebecca", "rebbeca"), ("jessica", "jesica"),
        ("matthew", "mathew"), ("cephalometric", "cephalometic"), ("retention", "retension"),
        ("occlusal", "occlussal"), ("resorption", "resorbtion"), ("gingivitis", "gingivits"),
        ("asymmetry", "assymetry"), ("aligner", "alinger"), ("expander", "expandor"),
        ("veneers", "veneres"), ("invisalign", "invisaline"), ("referral", "refferal"),
        ("presentations", "presentaions"), ("lovelace", "lovlace"), ("schneider", "schnieder")]

KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
SOUNDS = {"c": "k", "k": "c", "s": "z", "z": "s", "i": "y", "y": "i", "e": "a", "a": "e",
          "t": "d", "d": "t", "m": "n", "n": "m", "f": "v", "v": "f", "o": "u", "u": "o"}


@dataclass(frozen=True)
class Case:
    kind: str
    intended: str
    typo: str


def lexicon_texts() -> list[str]:
    """The texts a clinic's search rows hold: names, tags, album names."""
    return [*GIVEN, *FAMILY, *TAGS, *ALBUMS]


def lexicon_words() -> set[str]:
    from projections.search import words

    return {w for text in lexicon_texts() for w in words(text)}


def load_cases() -> list[Case]:
    rows = [line.split("\t") for line in CASES.read_text().splitlines()
            if line and not line.startswith("#")]
    return [Case(kind, intended, typo) for kind, intended, typo in rows[1:]]


def _neighbour_keys(ch: str) -> list[str]:
    for r, row in enumerate(KEYBOARD):
        if ch in row:
            c = row.index(ch)
            return [KEYBOARD[rr][cc] for rr in (r - 1, r, r + 1) if 0 <= rr < 3
                    for cc in (c - 1, c, c + 1) if 0 <= cc < len(KEYBOARD[rr])
                    and (rr, cc) != (r, c)]
    return []


def _slip(kind: str, word: str, rng: random.Random) -> str:
    """One slip of ``kind``; the first letter is rarely wrong in real typing, so kept."""
    at = rng.randrange(1, len(word))
    if kind == "swap":
        at = min(at, len(word) - 2)
        return word[:at] + word[at + 1] + word[at] + word[at + 2:]
    if kind == "drop":
        return word[:at] + word[at + 1:]
    if kind == "double":
        doubles = [i for i in range(1, len(word)) if word[i] == word[i - 1]]
        if doubles and rng.random() < 0.5:
            undo = rng.choice(doubles)
            return word[:undo] + word[undo + 1:]
        return word[:at] + word[at] + word[at:]
    options = _neighbour_keys(word[at]) if rng.random() < 2 / 3 else [SOUNDS.get(word[at], "")]
    options = [o for o in options if o and o != word[at]] or _neighbour_keys(word[at])
    return word[:at] + rng.choice(options) + word[at + 1:]


def generate(per_kind: int = 40, seed: int = 19) -> list[Case]:
    from domain.spelling import correctable

    rng = random.Random(seed)
    known = lexicon_words()
    pool = sorted(w for w in known if correctable(w) and len(w) >= 4)
    cases = [Case("seen", intended, typo) for intended, typo in SEEN]
    for kind in KINDS[:4]:
        made: list[Case] = []
        for word in rng.sample(pool, len(pool)):
            typo = _slip(kind, word, rng)
            if typo != word and typo not in known and all(c.typo != typo for c in made):
                made.append(Case(kind, word, typo))
            if len(made) == per_kind:
                break
        cases += made
    return cases


def write_cases(cases: list[Case]) -> None:
    lines = ["# Realistic misspellings for the search typo-recall table (tests/search_typo_recall"
             ".py --generate; seeded).", "kind\tintended\ttypo"]
    CASES.write_text("\n".join(lines + [f"{c.kind}\t{c.intended}\t{c.typo}" for c in cases])
                     + "\n")


def load_lexicon(view: Any, clinic_id: str) -> None:
    """Every word counted once per text it appears in, as the projection counts them."""
    from projections.search import words

    statement, params = view.add_terms(
        clinic_id, [w for text in lexicon_texts() for w in words(text)])
    with view.datastore.transaction(commit=True) as curs:
        curs.execute(statement, params)


def measure(view: Any, clinic_id: str) -> dict[str, Any]:
    """Top-1 hits per kind and the misses, through the search read model's own ranking."""
    cases = load_cases()
    per_kind: dict[str, list[int]] = {k: [0, 0] for k in KINDS}
    misses: list[tuple[Case, str | None]] = []
    with view.datastore.transaction(commit=False) as curs:
        for case in cases:
            ranked = view.spelling_candidates(curs, clinic_id, [case.typo]).get(case.typo, [])
            first = ranked[0] if ranked else None
            per_kind[case.kind][1] += 1
            if first == case.intended:
                per_kind[case.kind][0] += 1
            else:
                misses.append((case, first))
    found = sum(hit for hit, _ in per_kind.values())
    return {"per_kind": per_kind, "found": found, "total": len(cases), "misses": misses,
            "lexicon": len(lexicon_words())}


def render(result: dict[str, Any]) -> str:
    labels = {"swap": "two neighbouring letters swapped", "drop": "a letter missing",
              "double": "a letter doubled, or a double undone",
              "wrong": "a wrong letter (neighbouring key or sound-alike)",
              "seen": "misspellings seen in the wild"}
    lines = ["| kind of typo | cases | intended word first | recall |", "|---|---|---|---|"]
    for kind, (hit, total) in result["per_kind"].items():
        lines.append(f"| {labels[kind]} | {total} | {hit} | {100 * hit / total:.1f} % |")
    lines.append(f"| **all** | {result['total']} | {result['found']} | "
                 f"**{100 * result['found'] / result['total']:.1f} %** |")
    missed = ", ".join(f"{c.typo} → {first or 'nothing'} (meant {c.intended})"
                       for c, first in result["misses"])
    lines += ["", f"Lexicon: {result['lexicon']} words (names, tags, album names). "
              f"Missed: {missed or 'none'}."]
    return "\n".join(lines)


def write_doc(table: str) -> None:
    text = DOC.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


def doc_table() -> str:
    return DOC.read_text().partition(BEGIN)[2].partition(END)[0].strip()


def main(args: list[str]) -> None:
    sys.path[:0] = [str(ROOT)]
    if "--generate" in args:
        write_cases(generate())
    import base64
    import secrets

    import psycopg

    from api.services import tracking_recorder
    from api.settings import eventsourcing_env
    from projections.search import SearchProjection, SearchView

    server = "postgresql://postgres@127.0.0.1:5432/postgres"
    name = f"ov_typo_recall_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        env = eventsourcing_env(server.rsplit("/", 1)[0] + "/" + name,
                                base64.b64encode(b"r" * 32).decode())
        view = tracking_recorder(env, SearchProjection.name, SearchView)
        load_lexicon(view, "clinic-recall")
        table = render(measure(view, "clinic-recall"))
        view.datastore.close()
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(table)
    write_doc(table)


if __name__ == "__main__":
    main(sys.argv[1:])
