"""The search read model: ranked full-text search with typo tolerance, per clinic.

One row per image holds the text a clinician searches by, in four weights:
A the patient's name and identifier, B tags and album names, C view and category,
D clinical notes. ``document`` is a generated ``tsvector`` over them (``simple``
configuration: names are not stemmed), indexed with GIN together with ``clinic_id``
(btree_gin), so the clinic filter is part of the index scan.

Typo tolerance: a per-clinic lexicon (``_terms``: every word of patient names, identifiers,
tags and album names, reference-counted) with each word's deletion neighbourhood
(``_variants``: the word with one letter left out, so one index look-up finds every word
within one slip) and pg_trgm similarity for longer words; ``domain.spelling`` ranks the
candidates, each query word becomes ``(word:* | close_term | …)`` and the likeliest term's
matches rank first. The query never reaches ``to_tsquery`` as the
user typed it: it is split into words of letters and digits, so tsquery and SQL syntax are
matched literally (as words) or not at all.

Roles: front desk never finds radiographs; front desk and billing never match on notes
(weight D is left out of their query, so a note's content cannot be probed by searching).
Every query is filtered by the caller's clinic. Like the gallery, the model holds patient
names in clear inside PostgreSQL and deletes an image's row (and its lexicon references)
on ``Image.Destroyed``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from domain.album import Album
from domain.cbct import VOLUME_SOURCE
from domain.errors import InvalidInput
from domain.image import Image, ImageCategory
from domain.patient import Patient
from domain.spelling import correctable, deletions, rank
from domain.tag_vocabulary import TagVocabulary
from domain.views import VIEWS
from projections.gallery import GalleryProjection

MAX_QUERY_CHARS = 200
MAX_WORDS = 8
MAX_PAGE = 100
ALTERNATIVES = 3
SIMILARITY = 0.4
WORD = re.compile(r"[^\W_]+")
STATIC_TERMS = sorted({w for v in VIEWS.values() for w in WORD.findall(v.name.lower())}
                      | {c.value for c in ImageCategory} | {c.lower() for c in VIEWS})
# The fixed words' deletion neighbourhood, as ``_variants`` holds it for the lexicon.
STATIC_VARIANTS: dict[str, set[str]] = {}
for _term in filter(correctable, STATIC_TERMS):
    for _variant in deletions(_term):
        STATIC_VARIANTS.setdefault(_variant, set()).add(_term)


def words(text: str) -> list[str]:
    """Distinct lower-case words of letters and digits, in order."""
    return list(dict.fromkeys(WORD.findall(text.lower())))


def view_text(category: str, view: str | None) -> str:
    described = VIEWS.get(view or "")
    return " ".join(p for p in (category, view or "", described.name if described else "") if p)


@dataclass(frozen=True)
class SearchScope:
    """What the caller's role may find."""

    notes: bool  # match on (and show) clinical notes
    categories: list[str] | None  # None = every category


@dataclass(frozen=True)
class SearchFilters:
    """Checked values (``api.graphql_gallery.gallery_filters``); they combine (AND)."""

    category: str | None = None
    view: str | None = None
    tag: str | None = None
    captured_from: datetime | None = None  # inclusive
    captured_to: datetime | None = None  # exclusive

    def conditions(self) -> tuple[list[Any], dict[str, Any]]:
        """SQL conditions over a search row, and their parameters (``f_<field>``)."""
        checks = {"category": "category = %(f_category)s", "view": "view = %(f_view)s",
                  "tag": "%(f_tag)s = ANY(tags)",
                  "captured_from": "captured_at >= %(f_captured_from)s",
                  "captured_to": "captured_at < %(f_captured_to)s"}
        present = {k: getattr(self, k) for k in checks if getattr(self, k) is not None}
        return [SQL(checks[k]) for k in present], {f"f_{k}": v for k, v in present.items()}


@dataclass(frozen=True)
class SearchHit:
    image_id: UUID
    patient_id: UUID
    score: float
    snippet: str
    captured_at: datetime


@dataclass(frozen=True)
class PatientHit:
    patient_id: UUID
    name: str
    external_id: str
    score: float


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    has_next_page: bool
    end_cursor: str | None
    patients: list[PatientHit]
    corrections: dict[str, list[str]]  # query word → close terms also searched
    facets: dict[str, dict[str, int]]


@dataclass(frozen=True)
class Spelling:
    """What the lexicon makes of each query word."""

    corrections: dict[str, list[str]]  # close terms searched as well (not the word, no prefix)
    likeliest: dict[str, str]  # the word's likeliest term, where it is not the word itself


@dataclass(frozen=True)
class ParsedQuery:
    words: list[str]

    @classmethod
    def parse(cls, query: str) -> ParsedQuery:
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidInput("query_too_long",
                               f"a search query is at most {MAX_QUERY_CHARS} characters")
        found = words(query)
        if not found:
            raise InvalidInput("empty_query", "the query has no letters or digits to search for")
        if len(found) > MAX_WORDS:
            raise InvalidInput("too_many_words", f"a search query has at most {MAX_WORDS} words")
        return cls(found)

    def tsquery(self, corrections: dict[str, list[str]], weights: str, *,
                exact: bool = False) -> str:
        """Built from words of letters and digits only, so always valid tsquery syntax."""
        label = f":{weights}" if weights else ""
        parts = []
        for word in self.words:
            if exact:
                parts.append(f"{word}{label}")
                continue
            options = [f"{word}:*{weights}" if len(word) > 1 else f"{word}{label}"]
            options += [f"{term}{label}" for term in corrections.get(word, [])]
            parts.append("(" + " | ".join(options) + ")")
        return " & ".join(parts)

    def likeliest_tsquery(self, likeliest: dict[str, str], weights: str) -> str:
        """Every word as its likeliest term (or as typed, prefix included)."""
        label = f":{weights}" if weights else ""
        return " & ".join(f"{likeliest[w]}{label}" if w in likeliest
                          else f"{w}:*{weights}" if len(w) > 1 else f"{w}{label}"
                          for w in self.words)


def encode_cursor(hit: SearchHit) -> str:
    raw = json.dumps([repr(hit.score), hit.captured_at.isoformat(), str(hit.image_id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        score, captured_at, image_id = json.loads(raw)
        return float(score), datetime.fromisoformat(captured_at), UUID(image_id)
    except (ValueError, TypeError, ArithmeticError, binascii.Error):
        raise InvalidInput("invalid_cursor", "the cursor is not one this server issued") from None


class SearchView(PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        prefix = self.tracking_table_name.removesuffix("_tracking")
        schema = Identifier(self.datastore.schema)

        def table(name: str) -> Any:
            return SQL("{}.{}").format(schema, Identifier(f"{prefix}_{name}"))

        def index(name: str) -> Any:
            return Identifier(f"{prefix}_{name}")

        self.images, self.patients, self.terms = table("images"), table("patients"), table("terms")
        self.variants = table("variants")
        self.albums, self.album_items = table("albums"), table("album_items")
        self.sql_create_statements.extend([
            SQL("CREATE TABLE IF NOT EXISTS {} (image_id uuid PRIMARY KEY,"
                " clinic_id text NOT NULL, patient_id uuid NOT NULL, status text NOT NULL,"
                " category text NOT NULL, view text, captured_at timestamptz NOT NULL,"
                " tags text[] NOT NULL DEFAULT '{{}}', tags_text text NOT NULL DEFAULT '',"
                " albums_text text NOT NULL DEFAULT '', patient_text text NOT NULL DEFAULT '',"
                " view_text text NOT NULL DEFAULT '', notes_text text NOT NULL DEFAULT '',"
                " document tsvector GENERATED ALWAYS AS ("
                "  setweight(to_tsvector('simple'::regconfig, patient_text), 'A')"
                "  || setweight(to_tsvector('simple'::regconfig, tags_text || ' ' || albums_text),"
                "     'B')"
                "  || setweight(to_tsvector('simple'::regconfig, view_text), 'C')"
                "  || setweight(to_tsvector('simple'::regconfig, notes_text), 'D')) STORED)"
                ).format(self.images),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (clinic_id, document)").format(
                index("images_document"), self.images),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (patient_id)").format(
                index("images_by_patient"), self.images),
            SQL("CREATE TABLE IF NOT EXISTS {} (patient_id uuid PRIMARY KEY,"
                " clinic_id text NOT NULL, name text NOT NULL, external_id text NOT NULL,"
                " document tsvector GENERATED ALWAYS AS ("
                "  setweight(to_tsvector('simple'::regconfig, name), 'A')"
                "  || setweight(to_tsvector('simple'::regconfig, external_id), 'A')) STORED)"
                ).format(self.patients),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (clinic_id, document)").format(
                index("patients_document"), self.patients),
            SQL("CREATE TABLE IF NOT EXISTS {} (clinic_id text NOT NULL, term text NOT NULL,"
                " refs int NOT NULL, PRIMARY KEY (clinic_id, term))").format(self.terms),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (clinic_id, term gin_trgm_ops)"
                ).format(index("terms_trgm"), self.terms),
            # A term of the lexicon under each of its spellings with one letter left out.
            SQL("CREATE TABLE IF NOT EXISTS {} (clinic_id text NOT NULL, variant text NOT NULL,"
                " term text NOT NULL, PRIMARY KEY (clinic_id, variant, term))").format(
                self.variants),
            SQL("CREATE TABLE IF NOT EXISTS {} (album_id uuid PRIMARY KEY,"
                " clinic_id text NOT NULL, name text NOT NULL,"
                " archived boolean NOT NULL DEFAULT false)").format(self.albums),
            SQL("CREATE TABLE IF NOT EXISTS {} (album_id uuid NOT NULL, image_id uuid NOT NULL,"
                " PRIMARY KEY (image_id, album_id))").format(self.album_items),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (album_id)").format(
                index("album_items_by_album"), self.album_items),
        ])

    def create_table(self) -> None:
        """The extensions first: both are trusted (PostgreSQL 13+), so the database owner
        may create them; PostgreSQL 15 (Debian) and the embedded 18 both ship them."""
        for extension in ("pg_trgm", "btree_gin"):
            # A concurrent process may create it meanwhile: its transaction rolls back.
            with contextlib.suppress(psycopg.errors.UniqueViolation), \
                    self.datastore.transaction(commit=True) as curs:
                curs.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (extension,))
                if curs.fetchone() is None:
                    curs.execute(SQL("CREATE EXTENSION IF NOT EXISTS {}").format(
                        Identifier(extension)))
        super().create_table()
        self.fill_variants()

    def fill_variants(self) -> None:
        """A lexicon from before ``_variants`` existed (or bulk-loaded) gets its deletion
        neighbourhood once; afterwards ``add_terms`` keeps it."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("SELECT EXISTS (SELECT 1 FROM {}) AS filled").format(
                self.variants))
            if curs.fetchone()["filled"]:
                return
            curs.execute(SQL("SELECT clinic_id, term FROM {}").format(self.terms))
            rows = [(r["clinic_id"], r["term"]) for r in curs.fetchall()]
            clinics, terms, variants = [], [], []
            for clinic_id, term in rows:
                for variant in deletions(term) if correctable(term) else []:
                    clinics.append(clinic_id)
                    terms.append(term)
                    variants.append(variant)
            curs.execute(SQL("INSERT INTO {} (clinic_id, variant, term) SELECT * FROM unnest("
                             "%s::text[], %s::text[], %s::text[]) ON CONFLICT DO NOTHING").format(
                self.variants), (clinics, variants, terms))

    def apply(self, tracking: Tracking, *statements: tuple[Any, Any]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for sql, values in statements:
                curs.execute(sql, values)
            self._insert_tracking(curs, tracking)

    def fetch_one(self, statement: Any, params: Any) -> dict[str, Any] | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, params)
            return curs.fetchone()

    # ---- lexicon maintenance -----------------------------------------------------------

    def add_terms(self, clinic_id: str, terms: list[str]) -> tuple[Any, dict[str, Any]]:
        """Count the terms in; a term new to the lexicon brings its deletion neighbourhood."""
        pairs = [(t, v) for t in dict.fromkeys(terms) if correctable(t) for v in deletions(t)]
        return (SQL("WITH counted AS (INSERT INTO {} (clinic_id, term, refs) SELECT %(clinic)s,"
                    " t, count(*) FROM unnest(%(terms)s::text[]) t GROUP BY t ON CONFLICT"
                    " (clinic_id, term) DO UPDATE SET refs = {}.refs + excluded.refs"
                    " RETURNING term, xmax = 0 AS inserted)"
                    " INSERT INTO {} (clinic_id, variant, term) SELECT %(clinic)s, p.variant,"
                    " p.term FROM unnest(%(of)s::text[], %(variants)s::text[]) p(term, variant)"
                    " JOIN counted c ON c.term = p.term AND c.inserted ON CONFLICT DO NOTHING"
                    ).format(self.terms, self.terms, self.variants),
                {"clinic": clinic_id, "terms": terms, "of": [t for t, _ in pairs],
                 "variants": [v for _, v in pairs]})

    def remove_terms(self, clinic_id: str, terms: list[str]) -> list[tuple[Any, dict[str, Any]]]:
        params = {"clinic": clinic_id, "terms": terms, "variants": list(
            {v for t in terms if correctable(t) for v in deletions(t)})}
        return [
            (SQL("UPDATE {} t SET refs = t.refs - c.n FROM (SELECT u, count(*) n FROM"
                 " unnest(%(terms)s::text[]) u GROUP BY u) c WHERE t.clinic_id = %(clinic)s"
                 " AND t.term = c.u").format(self.terms), params),
            (SQL("DELETE FROM {} WHERE clinic_id = %(clinic)s AND term = ANY(%(terms)s)"
                 " AND refs <= 0").format(self.terms), params),
            # By the primary key's prefix (clinic, variant); a term gone from the lexicon
            # takes its spellings along (the range: see _refs).
            (SQL("DELETE FROM {} v WHERE clinic_id = %(clinic)s AND variant = ANY(%(variants)s)"
                 " AND term = ANY(%(terms)s) AND NOT EXISTS (SELECT 1 FROM {} t WHERE"
                 " t.clinic_id = %(clinic)s AND t.term >= v.term AND t.term <= v.term)").format(
                self.variants, self.terms), params),
        ]

    def refresh_albums_text(self, *, image_id: UUID | None = None,
                            album_id: UUID | None = None) -> tuple[Any, Any]:
        """Recompute the album names of one image, or of every image of one album."""
        where = (SQL("img.image_id = %(target)s") if image_id is not None else
                 SQL("img.image_id IN (SELECT image_id FROM {} WHERE album_id = %(target)s)")
                 .format(self.album_items))
        return (SQL("UPDATE {} img SET albums_text = coalesce((SELECT string_agg(a.name, ' '"
                    " ORDER BY a.name) FROM {} i JOIN {} a USING (album_id) WHERE"
                    " i.image_id = img.image_id AND NOT a.archived), '') WHERE {}").format(
                        self.images, self.album_items, self.albums, where),
                {"target": image_id if image_id is not None else album_id})

    # ---- queries -----------------------------------------------------------------------

    def image_ids_tagged(self, clinic_id: str, tag: str) -> list[UUID]:
        """Every image of the clinic carrying ``tag``, deleted ones included."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT image_id FROM {} WHERE clinic_id = %s AND %s = ANY(tags)"
                             " ORDER BY image_id").format(self.images), (clinic_id, tag))
            return [row["image_id"] for row in curs.fetchall()]

    def _matching(self, curs: Any, clinic_id: str, parsed: ParsedQuery, scope: SearchScope,
                  filters: SearchFilters | None) -> tuple[Spelling, list[Any], dict[str, Any]]:
        """The WHERE conditions (over ``q``) and parameters of what the caller may find."""
        weights = "" if scope.notes else "ABC"
        spelling = self._spelling(curs, clinic_id, parsed)
        params: dict[str, Any] = {
            "clinic": clinic_id, "q": parsed.tsquery(spelling.corrections, weights),
            "exact": parsed.tsquery({}, weights, exact=True),
            "likeliest": parsed.likeliest_tsquery(spelling.likeliest, weights),
            "categories": scope.categories,
        }
        conditions = [SQL("clinic_id = %(clinic)s"), SQL("status = 'active'"),
                      SQL("document @@ q")]
        if scope.categories is not None:
            conditions.append(SQL("category = ANY(%(categories)s)"))
        if filters is not None:
            more, values = filters.conditions()
            conditions += more
            params.update(values)
        return spelling, conditions, params

    def count(self, clinic_id: str, query: str, scope: SearchScope,
              filters: SearchFilters | None = None) -> int:
        """How many images the query finds for the caller now (a saved search's count)."""
        with self.datastore.transaction(commit=False) as curs:
            _, conditions, params = self._matching(curs, clinic_id, ParsedQuery.parse(query),
                                                   scope, filters)
            curs.execute(SQL("SELECT count(*) AS n FROM {}, to_tsquery('simple', %(q)s) q"
                             " WHERE {}").format(self.images, SQL(" AND ").join(conditions)),
                         params)
            return int(curs.fetchone()["n"])

    def search(self, clinic_id: str, query: str, scope: SearchScope, *, first: int = 20,
               after: str | None = None, with_facets: bool = True,
               filters: SearchFilters | None = None) -> SearchPage:
        if not 1 <= first <= MAX_PAGE:
            raise InvalidInput("invalid_page_size", f"first must be between 1 and {MAX_PAGE}")
        parsed = ParsedQuery.parse(query)
        cursor = decode_cursor(after) if after else None
        with self.datastore.transaction(commit=False) as curs:
            spelling, conditions, params = self._matching(curs, clinic_id, parsed, scope,
                                                          filters)
            corrections = spelling.corrections
            params["limit"] = first + 1
            keyset = SQL("")
            if cursor is not None:
                params["s"], params["at"], params["id"] = cursor
                keyset = SQL("WHERE (score, captured_at, image_id) < (%(s)s::float8, %(at)s,"
                             " %(id)s)")
            # Float scores compare exactly: the cursor carries the float's exact repr. The
            # likeliest reading of a mistyped word ranks above its other close terms.
            likeliest = SQL(" + ts_rank(document, b)" if spelling.likeliest else "")
            curs.execute(SQL(
                "SELECT image_id, patient_id, captured_at, score FROM (SELECT image_id,"
                " patient_id, captured_at, (ts_rank(document, q) + 2 * ts_rank(document, e)"
                "{})::float8 AS score FROM {}, to_tsquery('simple',"
                " %(q)s) q, to_tsquery('simple', %(exact)s) e, to_tsquery('simple',"
                " %(likeliest)s) b WHERE {}) hits {}"
                " ORDER BY score DESC, captured_at DESC, image_id DESC LIMIT %(limit)s").format(
                likeliest, self.images, SQL(" AND ").join(conditions), keyset), params)
            rows = curs.fetchall()
            page = rows[:first]
            snippets = self._snippets(curs, [r["image_id"] for r in page], params["q"],
                                      scope.notes)
            facets = self._facets(curs, conditions, params) if with_facets else {}
            patients = self._patients(curs, clinic_id, params["q"], params["likeliest"]) \
                if cursor is None else []
        hits = [SearchHit(image_id=r["image_id"], patient_id=r["patient_id"],
                          score=float(r["score"]), snippet=snippets.get(r["image_id"], ""),
                          captured_at=r["captured_at"]) for r in page]
        return SearchPage(hits=hits, has_next_page=len(rows) > first,
                          end_cursor=_cursor(page) if page else None, patients=patients,
                          corrections=corrections, facets=facets)

    def spelling_candidates(self, curs: Any, clinic_id: str, found: list[str]
                            ) -> dict[str, list[str]]:
        """Each correctable word's terms within reach, the likeliest first (the word itself
        first when it is a term): the lexicon's deletion neighbourhood, plus trigram
        neighbours for words long enough to carry two slips."""
        candidates = [w for w in found if correctable(w)]
        if not candidates:
            return {}
        uses: dict[str, dict[str, int]] = {w: {} for w in candidates}
        spelt: dict[str, set[str]] = {}  # variant → the query words it is a spelling of
        for word in candidates:
            for variant in deletions(word):
                spelt.setdefault(variant, set()).add(word)
        curs.execute(SQL("SELECT variant, term FROM {} WHERE clinic_id = %s AND variant ="
                         " ANY(%s)").format(self.variants), (clinic_id, list(spelt)))
        meant = [(row["variant"], row["term"]) for row in curs.fetchall()]
        refs = self._refs(curs, clinic_id, {t for _, t in meant})
        for variant, term in meant:
            for word in spelt[variant]:
                if term in refs:
                    uses[word][term] = refs[term]
        longer = [w for w in candidates if len(w) > 5]
        if longer:
            curs.execute("SELECT set_config('pg_trgm.similarity_threshold', %s, true)",
                         (str(SIMILARITY),))
            curs.execute(SQL(
                "SELECT w.word, c.term, c.refs FROM unnest(%(words)s::text[]) w(word) CROSS JOIN"
                " LATERAL (SELECT term, refs FROM (SELECT term, refs FROM {} WHERE clinic_id ="
                " %(clinic)s AND term %% w.word UNION SELECT s, 0 FROM unnest(%(static)s::text[])"
                " s WHERE s %% w.word) found ORDER BY similarity(term, w.word) DESC, term"
                " LIMIT %(n)s) c").format(self.terms),
                {"words": longer, "clinic": clinic_id, "static": STATIC_TERMS,
                 "n": 4 * ALTERNATIVES})
            for row in curs.fetchall():
                uses[row["word"]].setdefault(row["term"], row["refs"])
        for word in candidates:
            for variant in deletions(word):
                for term in STATIC_VARIANTS.get(variant, ()):
                    uses[word].setdefault(term, 0)
        return {word: rank(word, uses[word]) for word in candidates}

    def _refs(self, curs: Any, clinic_id: str, terms: set[str]) -> dict[str, int]:
        """How many records use each term (terms no longer in the lexicon are left out).

        ``term = ANY(...)`` would let the planner pick the trigram GIN index for equality,
        which scans the clinic's whole lexicon (measured: 250 ms against 0.1 ms); a range
        of one value is something only the primary key's btree can answer."""
        curs.execute(SQL("SELECT t.term, t.refs FROM unnest(%s::text[]) u(term) JOIN {} t ON"
                         " t.clinic_id = %s AND t.term >= u.term AND t.term <= u.term").format(
            self.terms), (list(terms), clinic_id))
        return {row["term"]: row["refs"] for row in curs.fetchall()}

    def _spelling(self, curs: Any, clinic_id: str, parsed: ParsedQuery) -> Spelling:
        corrections: dict[str, list[str]] = {}
        likeliest: dict[str, str] = {}
        for word, ranked in self.spelling_candidates(curs, clinic_id, parsed.words).items():
            if ranked and ranked[0] == word:
                continue  # a word of the lexicon is meant as typed (and as a prefix)
            if ranked:
                likeliest[word] = ranked[0]
            # Terms the word's prefix search finds anyway are not repeated.
            close = [t for t in ranked if not t.startswith(word)][:ALTERNATIVES]
            if close:
                corrections[word] = close
        return Spelling(corrections, likeliest)

    def _snippets(self, curs: Any, image_ids: list[UUID], tsquery: str,
                  notes: bool) -> dict[UUID, str]:
        if not image_ids:
            return {}
        text = ("concat_ws(' · ', nullif(patient_text, ''), nullif(tags_text, ''),"
                " nullif(albums_text, ''), nullif(view_text, '')"
                + (", nullif(notes_text, '')" if notes else "") + ")")
        curs.execute(SQL(
            "SELECT image_id, ts_headline('simple', " + text + ", to_tsquery('simple', %s),"
            " 'StartSel=«, StopSel=», MaxWords=18, MinWords=6, ShortWord=1') AS snippet"
            " FROM {} WHERE image_id = ANY(%s)").format(self.images), (tsquery, image_ids))
        return {row["image_id"]: row["snippet"] for row in curs.fetchall()}

    def _facets(self, curs: Any, conditions: list[Any], params: dict[str, Any]
                ) -> dict[str, dict[str, int]]:
        """Counts per category and per view over the whole match set (no ranking needed)."""
        curs.execute(SQL(
            "SELECT category, view, GROUPING(category) AS by_view, count(*) AS n FROM {},"
            " to_tsquery('simple', %(q)s) q WHERE {} GROUP BY GROUPING SETS ((category),"
            " (view))").format(self.images, SQL(" AND ").join(conditions)), params)
        facets: dict[str, dict[str, int]] = {"category": {}, "view": {}}
        for row in curs.fetchall():
            if not row["by_view"]:
                facets["category"][row["category"]] = row["n"]
            elif row["view"] is not None:
                facets["view"][row["view"]] = row["n"]
        return facets

    def _patients(self, curs: Any, clinic_id: str, tsquery: str,
                  likeliest: str) -> list[PatientHit]:
        # Weights A only: a patient row has no notes, and the restriction keeps it so.
        curs.execute(SQL(
            "SELECT patient_id, name, external_id, ts_rank(document, q) + ts_rank(document, b)"
            " AS score FROM {}, to_tsquery('simple', %s) q, to_tsquery('simple', %s) b"
            " WHERE clinic_id = %s AND document @@ q"
            " ORDER BY score DESC, name, patient_id LIMIT 10").format(self.patients),
            (tsquery, likeliest, clinic_id))
        return [PatientHit(r["patient_id"], r["name"], r["external_id"], float(r["score"]))
                for r in curs.fetchall()]


def _cursor(page: list[dict[str, Any]]) -> str:
    last = page[-1]
    return encode_cursor(SearchHit(last["image_id"], last["patient_id"], float(last["score"]),
                                   "", last["captured_at"]))


class SearchProjection(Projection[SearchView]):
    name = "search_v1"
    # A superset of the gallery's topics: writes that wait for the gallery may also wait
    # for search (read-your-writes: a tag added is found by the next query).
    topics = tuple(dict.fromkeys((*GalleryProjection.topics, *(get_topic(cls) for cls in (
        # The vocabulary's events only advance the position (see api/tag_management.py).
        TagVocabulary.TagRenamed, TagVocabulary.TagsMerged,
        Image.NoteAdded, Album.Created, Album.Renamed, Album.Archived, Album.ImageAdded,
        Album.ImageRemoved,
        # Not searched, but followed so that every album write may wait for search.
        Album.Moved, Album.Reordered)))))

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    # ---- patients ----------------------------------------------------------------------

    @process_event.register
    def _(self, event: Patient.Registered, tracking: Tracking) -> None:
        name = f"{event.given_name} {event.family_name}"
        self.view.apply(
            tracking,
            (SQL("INSERT INTO {} (patient_id, clinic_id, name, external_id) VALUES (%(id)s,"
                 " %(clinic)s, %(name)s, %(external)s)").format(self.view.patients),
             {"id": event.originator_id, "clinic": event.clinic_id, "name": name,
              "external": event.external_id}),
            self.view.add_terms(event.clinic_id, words(f"{name} {event.external_id}")),
        )

    @process_event.register
    def _(self, event: Patient.DemographicsUpdated, tracking: Tracking) -> None:
        """A corrected name or identifier replaces the old one everywhere it is searched."""
        old = self.view.fetch_one(SQL("SELECT clinic_id, name, external_id FROM {} WHERE"
                                      " patient_id = %s").format(self.view.patients),
                                  (event.originator_id,))
        if old is None:
            self.view.insert_tracking(tracking)
            return
        name = f"{event.given_name} {event.family_name}"
        params = {"id": event.originator_id, "name": name, "external": event.external_id}
        self.view.apply(
            tracking,
            (SQL("UPDATE {} SET name = %(name)s, external_id = %(external)s WHERE patient_id ="
                 " %(id)s").format(self.view.patients), params),
            (SQL("UPDATE {} SET patient_text = %(name)s || ' ' || %(external)s WHERE"
                 " patient_id = %(id)s").format(self.view.images), params),
            *self.view.remove_terms(old["clinic_id"],
                                    words(f"{old['name']} {old['external_id']}")),
            self.view.add_terms(old["clinic_id"], words(f"{name} {event.external_id}")),
        )

    # ---- images ------------------------------------------------------------------------

    @process_event.register
    def _(self, event: Image.Captured, tracking: Tracking) -> None:
        tags = list(dict.fromkeys(event.tags))
        self.view.apply(
            tracking,
            (SQL("INSERT INTO {} (image_id, clinic_id, patient_id, status, category, view,"
                 " captured_at, tags, tags_text, view_text, patient_text) SELECT %(id)s,"
                 " %(clinic)s, %(patient)s, 'active', %(category)s, %(view)s, %(captured)s,"
                 " %(tags)s, %(tags_text)s, %(view_text)s, coalesce((SELECT name || ' ' ||"
                 " external_id FROM {} WHERE patient_id = %(patient)s), '')").format(
                self.view.images, self.view.patients),
             {"id": event.originator_id, "clinic": event.clinic_id,
              "patient": event.patient_id, "category": event.category, "view": event.view,
              "captured": event.captured_at, "tags": tags, "tags_text": " ".join(tags),
              "view_text": view_text(event.category, event.view)}),
            self.view.add_terms(event.clinic_id, [w for t in tags for w in words(t)]),
        )

    def _image_row(self, image_id: UUID) -> dict[str, Any] | None:
        return self.view.fetch_one(SQL("SELECT clinic_id, tags FROM {} WHERE image_id = %s")
                                   .format(self.view.images), (image_id,))

    def _retag(self, event: Any, tracking: Tracking, tags_sql: str, change: str) -> None:
        row = self._image_row(event.originator_id)
        if row is None:
            self.view.insert_tracking(tracking)
            return
        terms = words(event.tag)
        lexicon = ([self.view.add_terms(row["clinic_id"], terms)] if change == "+"
                   else self.view.remove_terms(row["clinic_id"], terms))
        self.view.apply(
            tracking,
            (SQL("UPDATE {} SET tags = " + tags_sql + ", tags_text = array_to_string("
                 + tags_sql + ", ' ') WHERE image_id = %(id)s").format(self.view.images),
             {"id": event.originator_id, "tag": event.tag}),
            *lexicon,
        )

    @process_event.register
    def _(self, event: Image.Tagged, tracking: Tracking) -> None:
        self._retag(event, tracking, "array_append(tags, %(tag)s)", "+")

    @process_event.register
    def _(self, event: Image.Untagged, tracking: Tracking) -> None:
        self._retag(event, tracking, "array_remove(tags, %(tag)s)", "-")

    def _update(self, tracking: Tracking, image_id: UUID, assignments: str,
                params: dict[str, Any]) -> None:
        self.view.apply(tracking, (SQL("UPDATE {} SET " + assignments + " WHERE image_id ="
                                       " %(id)s").format(self.view.images),
                                   {"id": image_id, **params}))

    @process_event.register
    def _(self, event: Image.Categorised, tracking: Tracking) -> None:
        self._update(tracking, event.originator_id,
                     "category = %(category)s, view = %(view)s, view_text = %(text)s",
                     {"category": event.category, "view": event.view,
                      "text": view_text(event.category, event.view)})

    @process_event.register
    def _(self, event: Image.MetadataExtracted, tracking: Tracking) -> None:
        """The slices of an assembled CBCT volume are found as the volume, not one by one
        (as in the gallery)."""
        if event.source != VOLUME_SOURCE:
            self.view.insert_tracking(tracking)
            return
        self.view.apply(tracking, (SQL(
            "UPDATE {} SET status = 'volume_slice' WHERE image_id = ANY(%(slices)s::uuid[])"
            " AND clinic_id = %(clinic)s").format(self.view.images), {
            "slices": event.metadata.get("slice_image_ids", []),
            "clinic": event.actor.clinic_id}))

    @process_event.register
    def _(self, event: Image.NoteAdded, tracking: Tracking) -> None:
        self._update(tracking, event.originator_id,
                     "notes_text = ltrim(notes_text || ' ' || %(text)s)", {"text": event.text})

    @process_event.register
    def _(self, event: Image.SoftDeleted, tracking: Tracking) -> None:
        self._update(tracking, event.originator_id, "status = 'deleted'", {})

    @process_event.register
    def _(self, event: Image.Restored, tracking: Tracking) -> None:
        self._update(tracking, event.originator_id, "status = 'active'", {})

    @process_event.register
    def _(self, event: Image.Destroyed, tracking: Tracking) -> None:
        row = self._image_row(event.originator_id)
        terms = [w for t in (row["tags"] if row else []) for w in words(t)]
        self.view.apply(
            tracking,
            (SQL("DELETE FROM {} WHERE image_id = %(id)s").format(self.view.images),
             {"id": event.originator_id}),
            (SQL("DELETE FROM {} WHERE image_id = %(id)s").format(self.view.album_items),
             {"id": event.originator_id}),
            *(self.view.remove_terms(row["clinic_id"], terms) if row and terms else []),
        )

    # ---- albums (their names make their images findable) -------------------------------

    @process_event.register
    def _(self, event: Album.Created, tracking: Tracking) -> None:
        self.view.apply(
            tracking,
            (SQL("INSERT INTO {} (album_id, clinic_id, name) VALUES (%(id)s, %(clinic)s,"
                 " %(name)s)").format(self.view.albums),
             {"id": event.originator_id, "clinic": event.clinic_id, "name": event.name}),
            self.view.add_terms(event.clinic_id, words(event.name)),
        )

    def _album(self, album_id: UUID) -> dict[str, Any] | None:
        return self.view.fetch_one(SQL("SELECT clinic_id, name FROM {} WHERE album_id = %s")
                                   .format(self.view.albums), (album_id,))

    @process_event.register
    def _(self, event: Album.Renamed, tracking: Tracking) -> None:
        album = self._album(event.originator_id)
        if album is None:
            self.view.insert_tracking(tracking)
            return
        refresh = self.view.refresh_albums_text(album_id=event.originator_id)
        self.view.apply(
            tracking,
            (SQL("UPDATE {} SET name = %(name)s WHERE album_id = %(id)s").format(
                self.view.albums), {"id": event.originator_id, "name": event.name}),
            *self.view.remove_terms(album["clinic_id"], words(album["name"])),
            self.view.add_terms(album["clinic_id"], words(event.name)),
            refresh,
        )

    @process_event.register
    def _(self, event: Album.Archived, tracking: Tracking) -> None:
        refresh = self.view.refresh_albums_text(album_id=event.originator_id)
        self.view.apply(
            tracking,
            (SQL("UPDATE {} SET archived = true WHERE album_id = %(id)s").format(
                self.view.albums), {"id": event.originator_id}),
            refresh,
        )

    @process_event.register
    def _(self, event: Album.ImageAdded, tracking: Tracking) -> None:
        refresh = self.view.refresh_albums_text(image_id=event.image_id)
        self.view.apply(
            tracking,
            (SQL("INSERT INTO {} (album_id, image_id) VALUES (%(id)s, %(image)s)").format(
                self.view.album_items), {"id": event.originator_id, "image": event.image_id}),
            refresh,
        )

    @process_event.register
    def _(self, event: Album.ImageRemoved, tracking: Tracking) -> None:
        refresh = self.view.refresh_albums_text(image_id=event.image_id)
        self.view.apply(
            tracking,
            (SQL("DELETE FROM {} WHERE album_id = %(id)s AND image_id = %(image)s").format(
                self.view.album_items), {"id": event.originator_id, "image": event.image_id}),
            refresh,
        )
