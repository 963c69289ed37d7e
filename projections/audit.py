"""The audit read model: who did what to which subject and when, hash-chained.

One entry per event in the notification log (``topics = ()``), keyed by its position. An
entry holds ids, roles, the action and the time, never PHI: no names, tag texts, file names
or free-text reasons (a destruction keeps only a reason *category*, see
:func:`reason_category`).

Entries are built only from what survives crypto-shredding: the envelope (position,
originator id and version, topic), the time, the actor and the pseudonymous patient and
clinic ids that the event store keeps in a sealed event's clear header, and the fields of the
clear (PHI-free) access records and tombstones. A live event and its :class:`ShreddedEvent`
placeholder therefore describe to the same entry, and a rebuild after a destruction
reproduces the chain the live projection wrote. Events that carry no patient or clinic (a
tag, say) inherit them from the first entry of the same aggregate.

Tamper evidence: ``entry_hash = sha256(prev_hash || canonical)`` where ``prev_hash`` is the
previous entry's hash as 64 lower-case hex ASCII characters (64 zeros before the first
entry) and ``canonical`` is the UTF-8 JSON of the entry's other fields (:data:`HASHED_FIELDS`)
with sorted keys, ``(",", ":")`` separators and ASCII escapes; times as UTC ISO-8601 with
microseconds, ids as strings, absent values as ``null``. Anyone holding an export can
recompute it (:func:`verify_entries`). The chain shows edits and deletions inside the table;
an attacker who rewrites the whole tail is caught by :func:`verify_against_log`, which
rebuilds the entries from the event log itself.

Exactly one runner per projection name: each append reads the chain head and writes the next
link in one transaction, under a transaction-scoped advisory lock on the table, together with
the tracking record. A second runner on the same name fails on the tracking record instead of
forking the chain. Rebuilding means a new ``AuditProjection.name`` replaying from zero.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from functools import singledispatch
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.sql import SQL, Composable, Composed, Identifier

from domain.access import AccessRecord
from domain.errors import InvalidInput
from domain.events import ShreddedEvent
from domain.image import Image
from domain.imaging import Imaging
from domain.values import Actor

GENESIS_HASH = "0" * 64
MAX_PAGE = 500
VIEW_ACTION_PREFIX = "image.viewed."
_BATCH = 1000

# Destruction reasons are free text and may name a patient; only these codes are kept.
REASON_CATEGORIES = frozenset({
    "retention_expired", "erasure_request", "duplicate", "wrong_patient", "poor_quality",
    "test_data", "legal_order",
})
_REASON_ALIASES = {"retention": "retention_expired", "erasure": "erasure_request"}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    position: int  # the event's notification id
    occurred_at: datetime | None
    clinic_id: str  # "" when no clinic could be told; no caller's clinic is ever ""
    actor_user: str | None
    actor_role: str | None
    request_id: str | None
    action: str  # e.g. image.captured, image.viewed.thumbnail, patient.consent_granted
    aggregate_type: str  # image, patient, access_record
    aggregate_id: UUID
    aggregate_version: int
    patient_id: UUID | None
    image_id: UUID | None
    reason_category: str | None
    prev_hash: str = ""
    entry_hash: str = ""

    def as_record(self) -> dict[str, Any]:
        """Every field as a JSON value (the form hashed, exported and read back)."""
        return {f.name: _json_value(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AuditEntry:
        return cls(
            position=int(record["position"]),
            occurred_at=_optional(record.get("occurred_at"), _utc_from_iso),
            clinic_id=str(record["clinic_id"]),
            actor_user=_optional(record.get("actor_user"), str),
            actor_role=_optional(record.get("actor_role"), str),
            request_id=_optional(record.get("request_id"), str),
            action=str(record["action"]),
            aggregate_type=str(record["aggregate_type"]),
            aggregate_id=UUID(str(record["aggregate_id"])),
            aggregate_version=int(record["aggregate_version"]),
            patient_id=_optional(record.get("patient_id"), UUID),
            image_id=_optional(record.get("image_id"), UUID),
            reason_category=_optional(record.get("reason_category"), str),
            prev_hash=str(record.get("prev_hash") or ""),
            entry_hash=str(record.get("entry_hash") or ""),
        )


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(AuditEntry))
HASHED_FIELDS: tuple[str, ...] = tuple(n for n in FIELDS if n not in ("prev_hash", "entry_hash"))
OPTIONAL_FIELDS = frozenset({
    "occurred_at", "actor_user", "actor_role", "request_id", "patient_id", "image_id",
    "reason_category",
})


def _optional(value: Any, parse: Any) -> Any:
    return None if value is None or value == "" else parse(value)


def _utc_from_iso(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, UUID):
        return str(value)
    return value


def canonical_bytes(entry: AuditEntry) -> bytes:
    record = entry.as_record()
    content = {name: record[name] for name in HASHED_FIELDS}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_digest(prev_hash: str, entry: AuditEntry) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_bytes(entry)).hexdigest()


def seal(entry: AuditEntry, prev_hash: str) -> AuditEntry:
    return replace(entry, prev_hash=prev_hash, entry_hash=entry_digest(prev_hash, entry))


# ---- describing an event (identically for a live event and its shredded placeholder) ----


class Subject(NamedTuple):
    """Clinic and patient of an aggregate, as its first audit entry recorded them."""

    clinic_id: str
    patient_id: UUID | None


class Draft(NamedTuple):
    """An entry before the chain: clinic/patient may still come from the aggregate's past."""

    entry: AuditEntry
    actor_clinic: str | None

    @property
    def needs_subject(self) -> bool:
        return not self.entry.clinic_id or self.entry.patient_id is None


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _names(topic: str) -> tuple[str, str]:
    """``domain.image:Image.Tagged`` -> (``image``, ``tagged``)."""
    qualname = topic.rpartition(":")[2]
    owner, _, event_name = qualname.rpartition(".")
    aggregate = owner.rpartition(".")[2] or topic.partition(":")[0].rpartition(".")[2]
    return _snake(aggregate), _snake(event_name)


def _text(value: Any) -> str | None:
    # "" and None read the same once exported to CSV, so only None is kept.
    if isinstance(value, UUID):
        return str(value)
    return value if isinstance(value, str) and value else None


def _uuid(value: Any) -> UUID | None:
    if isinstance(value, UUID):
        return value
    if isinstance(value, str) and value:
        try:
            return UUID(value)
        except ValueError:
            return None
    return None


def reason_category(reason: Any) -> str:
    normalised = re.sub(r"[\s\-]+", "_", str(reason or "").strip().lower())
    normalised = _REASON_ALIASES.get(normalised, normalised)
    return normalised if normalised in REASON_CATEGORIES else "other"


def _draft(
    *,
    position: int,
    topic: str,
    originator_id: UUID,
    version: int,
    occurred_at: datetime | None,
    actor: dict[str, Any],
    clinic_id: Any,
    patient_id: Any,
) -> Draft:
    aggregate_type, event_name = _names(topic)
    patient = _uuid(patient_id) or (originator_id if aggregate_type == "patient" else None)
    entry = AuditEntry(
        position=position,
        occurred_at=occurred_at.astimezone(UTC) if occurred_at else None,
        clinic_id=_text(clinic_id) or "",
        actor_user=_text(actor.get("user_id")),
        actor_role=_text(actor.get("role")),
        request_id=_text(actor.get("request_id")),
        action=f"{aggregate_type}.{event_name}",
        aggregate_type=aggregate_type,
        aggregate_id=originator_id,
        aggregate_version=int(version),
        patient_id=patient,
        image_id=originator_id if aggregate_type == "image" else None,
        reason_category=None,
    )
    return Draft(entry, _text(actor.get("clinic_id")))


def _actor_fields(actor: Any) -> dict[str, Any]:
    if isinstance(actor, Actor):
        return {"user_id": actor.user_id, "role": actor.role, "clinic_id": actor.clinic_id,
                "request_id": actor.request_id}
    return dict(actor) if isinstance(actor, dict) else {}


@singledispatch
def describe(event: Any, position: int) -> Draft:
    """Any live event: the envelope plus what a sealed event's clear header also holds."""
    return _draft(
        position=position,
        topic=get_topic(type(event)),
        originator_id=event.originator_id,
        version=event.originator_version,
        occurred_at=getattr(event, "timestamp", None),
        actor=_actor_fields(getattr(event, "actor", None)),
        clinic_id=getattr(event, "clinic_id", None),
        patient_id=getattr(event, "patient_id", None),
    )


@describe.register
def _(event: ShreddedEvent, position: int) -> Draft:
    return _draft(
        position=position,
        topic=event.topic,
        originator_id=event.originator_id,
        version=event.originator_version,
        occurred_at=event.timestamp,
        actor=_actor_fields(event.header.get("actor")),
        clinic_id=event.header.get("clinic_id"),
        patient_id=event.header.get("patient_id"),
    )


@describe.register
def _(event: AccessRecord.Recorded, position: int) -> Draft:
    # Stored in the clear, so never shredded: the image and the kind of access are kept.
    draft = describe.dispatch(object)(event, position)
    entry = replace(draft.entry, action=f"{VIEW_ACTION_PREFIX}{event.kind}",
                    image_id=_uuid(event.image_id))
    return draft._replace(entry=entry)


@describe.register
def _(event: Image.Destroyed, position: int) -> Draft:
    draft = describe.dispatch(object)(event, position)
    return draft._replace(
        entry=replace(draft.entry, reason_category=reason_category(event.reason))
    )


def resolve(draft: Draft, known: Subject | None) -> AuditEntry:
    """Fill clinic and patient from the aggregate's first entry, else the actor's clinic."""
    entry = draft.entry
    if not draft.needs_subject:
        return entry
    clinic = entry.clinic_id or (known.clinic_id if known else "") or draft.actor_clinic or ""
    patient = entry.patient_id or (known.patient_id if known else None)
    return replace(entry, clinic_id=clinic, patient_id=patient)


# ---- the view --------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    has_next_page: bool
    end_position: int | None


@dataclass(frozen=True)
class Viewing:
    """One view or download of one of a patient's images."""

    position: int
    at: datetime | None
    user_id: str | None
    role: str | None
    kind: str  # metadata, thumbnail, preview, original
    image_id: UUID | None
    request_id: str | None


_COLUMNS = SQL(", ").join(Identifier(name) for name in FIELDS)
_VALUES = SQL(", ").join(SQL("%({})s").format(SQL(name)) for name in FIELDS)


class AuditView(PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        prefix = self.tracking_table_name.removesuffix("_tracking")
        table_name = f"{prefix}_entries"
        self.check_identifier_length(f"{table_name}_by_aggregate")
        schema = Identifier(self.datastore.schema)
        self.entries_table = SQL("{}.{}").format(schema, Identifier(table_name))
        # One lock per chain; the key is stable across processes and restarts.
        digest = hashlib.sha256(f"orthovault-audit:{table_name}".encode()).digest()
        self.lock_key = int.from_bytes(digest[:8], "big", signed=True)
        # Told each new head after its commit (``adapters.audit_head.HeadPublisher``).
        self.on_append: Callable[[int, str], None] | None = None
        self.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " position bigint PRIMARY KEY, occurred_at timestamptz, clinic_id text NOT NULL,"
            " actor_user text, actor_role text, request_id text, action text NOT NULL,"
            " aggregate_type text NOT NULL, aggregate_id uuid NOT NULL,"
            " aggregate_version int NOT NULL, patient_id uuid, image_id uuid,"
            " reason_category text, prev_hash char(64) NOT NULL,"
            " entry_hash char(64) NOT NULL)"
        ).format(self.entries_table))
        for suffix, columns in (
            ("by_patient", "clinic_id, patient_id, position"),
            ("by_user", "clinic_id, actor_user, position"),
            ("by_image", "clinic_id, image_id, position"),
            ("by_time", "clinic_id, occurred_at"),
            ("by_clinic", "clinic_id, position"),
            ("by_aggregate", "aggregate_id, position"),
        ):
            self.sql_create_statements.append(
                SQL("CREATE INDEX IF NOT EXISTS {} ON {} (" + columns + ")").format(
                    Identifier(f"{table_name}_{suffix}"), self.entries_table
                )
            )

    # ---- writes ------------------------------------------------------------------------

    def append(self, tracking: Tracking, draft: Draft) -> AuditEntry:
        """Link the entry to the chain head and store it with its tracking record."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("SELECT pg_advisory_xact_lock(%s)"), (self.lock_key,))
            known = self._subject(curs, draft.entry.aggregate_id) if draft.needs_subject else None
            entry = resolve(draft, known)
            curs.execute(SQL("SELECT position, entry_hash FROM {} ORDER BY position DESC LIMIT 1")
                         .format(self.entries_table))
            head = curs.fetchone()
            if head is not None and head["position"] >= entry.position:
                raise RuntimeError(
                    f"audit chain head is at {head['position']}, cannot append "
                    f"{entry.position}: is a second runner using this projection name?"
                )
            sealed = seal(entry, head["entry_hash"] if head else GENESIS_HASH)
            curs.execute(
                SQL("INSERT INTO {} ({}) VALUES ({})").format(
                    self.entries_table, _COLUMNS, _VALUES
                ),
                {name: getattr(sealed, name) for name in FIELDS},
            )
            self._insert_tracking(curs, tracking)
        if self.on_append is not None:
            self.on_append(sealed.position, sealed.entry_hash)
        return sealed

    def head(self) -> tuple[int, str] | None:
        """The chain's last entry: (position, entry hash)."""
        rows = self._select(SQL("SELECT position, entry_hash FROM {}"
                                " ORDER BY position DESC LIMIT 1").format(self.entries_table),
                            ())
        return (rows[0]["position"], rows[0]["entry_hash"]) if rows else None

    def entry_hash_at(self, position: int) -> str | None:
        rows = self._select(SQL("SELECT entry_hash FROM {} WHERE position = %s")
                            .format(self.entries_table), (position,))
        return rows[0]["entry_hash"] if rows else None

    def _subject(self, curs: Cursor[Any], aggregate_id: UUID) -> Subject | None:
        curs.execute(
            SQL("SELECT clinic_id, patient_id FROM {} WHERE aggregate_id = %s"
                " ORDER BY position LIMIT 1").format(self.entries_table),
            (aggregate_id,),
        )
        row = curs.fetchone()
        return Subject(row["clinic_id"], row["patient_id"]) if row else None

    # ---- queries (every one for one clinic) --------------------------------------------

    def search(
        self,
        clinic_id: str,
        *,
        patient_id: UUID | None = None,
        user_id: str | None = None,
        image_id: UUID | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: int | None = None,
        first: int = 100,
        newest_first: bool = False,
    ) -> AuditPage:
        """One clinic's entries matching every given filter, paged by position.

        ``action`` matches exactly or as a dotted prefix (``image.viewed`` matches
        ``image.viewed.original``); ``since`` and ``until`` are both inclusive; ``after`` is
        the previous page's ``end_position``.
        """
        if not 1 <= first <= MAX_PAGE:
            raise InvalidInput("invalid_page_size", f"first must be between 1 and {MAX_PAGE}")
        conditions, params = _filters(
            clinic_id, patient_id=patient_id, user_id=user_id, image_id=image_id,
            action=action, since=since, until=until,
        )
        if after is not None:
            conditions.append(SQL("position < %(after)s" if newest_first else
                                  "position > %(after)s"))
            params["after"] = after
        params["limit"] = first + 1
        order = SQL("DESC" if newest_first else "ASC")
        rows = self._select(
            SQL("SELECT * FROM {} WHERE {} ORDER BY position {} LIMIT %(limit)s").format(
                self.entries_table, SQL(" AND ").join(conditions), order
            ),
            params,
        )
        entries = [_entry(row) for row in rows[:first]]
        return AuditPage(entries, len(rows) > first,
                         entries[-1].position if entries else None)

    def iter_clinic(self, clinic_id: str, **filters: Any) -> Iterator[AuditEntry]:
        """Every matching entry, oldest first, fetched page by page (for exports)."""
        after: int | None = None
        while True:
            page = self.search(clinic_id, after=after, first=MAX_PAGE, **filters)
            yield from page.entries
            if not page.has_next_page:
                return
            after = page.end_position

    def who_viewed(
        self, clinic_id: str, patient_id: UUID, since: datetime, until: datetime
    ) -> list[Viewing]:
        """Every view or download of the patient's images from ``since`` to ``until``
        (both inclusive), in the order they happened."""
        if since > until:
            raise InvalidInput("invalid_time_range", "the range ends before it starts")
        conditions, params = _filters(clinic_id, patient_id=patient_id,
                                      action=VIEW_ACTION_PREFIX.rstrip("."),
                                      since=since, until=until)
        rows = self._select(
            SQL("SELECT * FROM {} WHERE {} ORDER BY occurred_at, position").format(
                self.entries_table, SQL(" AND ").join(conditions)
            ),
            params,
        )
        return [
            Viewing(position=e.position, at=e.occurred_at, user_id=e.actor_user,
                    role=e.actor_role, kind=e.action.removeprefix(VIEW_ACTION_PREFIX),
                    image_id=e.image_id, request_id=e.request_id)
            for e in map(_entry, rows)
        ]

    def iter_all(self, *, stop: int | None = None) -> Iterator[AuditEntry]:
        """The whole chain across clinics, in position order: for verification only."""
        after = 0
        while True:
            rows = self._select(
                SQL("SELECT * FROM {} WHERE position > %s AND position <= %s"
                    " ORDER BY position LIMIT %s").format(self.entries_table),
                (after, stop if stop is not None else 2**63 - 1, _BATCH),
            )
            yield from map(_entry, rows)
            if len(rows) < _BATCH:
                return
            after = rows[-1]["position"]

    def _select(self, statement: Composed, params: Any) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, params)
            return list(curs.fetchall())


def _filters(
    clinic_id: str,
    *,
    patient_id: UUID | None = None,
    user_id: str | None = None,
    image_id: UUID | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[Composable], dict[str, Any]]:
    if not clinic_id:
        # Entries whose clinic could not be told carry ""; no caller may read them.
        raise InvalidInput("clinic_required", "audit queries need the caller's clinic")
    conditions = [SQL("clinic_id = %(clinic)s")]
    params: dict[str, Any] = {"clinic": clinic_id}
    for column, key, value in (("patient_id", "patient", patient_id),
                               ("actor_user", "user", user_id),
                               ("image_id", "image", image_id)):
        if value is not None:
            conditions.append(SQL("{} = %({})s").format(Identifier(column), SQL(key)))
            params[key] = value
    if action:
        conditions.append(SQL(
            "(action = %(action)s OR left(action, length(%(action)s) + 1) = %(action)s || '.')"
        ))
        params["action"] = action
    if since is not None:
        conditions.append(SQL("occurred_at >= %(since)s"))
        params["since"] = since
    if until is not None:
        conditions.append(SQL("occurred_at <= %(until)s"))
        params["until"] = until
    return conditions, params


def _entry(row: dict[str, Any]) -> AuditEntry:
    values = {name: row[name] for name in FIELDS}
    at = values["occurred_at"]
    values["occurred_at"] = at.astimezone(UTC) if at else None
    return AuditEntry(**values)


# ---- the projection ----------------------------------------------------------------------


class AuditProjection(Projection[AuditView]):
    name = "audit_v1"
    topics = ()  # every event is audited, including ones added after this was written

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        # Never skips: an event of an unknown type still gets an entry from its envelope.
        self.view.append(tracking, describe(domain_event, tracking.notification_id))


# ---- verification ------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_broken_position: int | None = None
    reason: str | None = None
    # Publish or anchor these elsewhere (a ticket, a signed e-mail) to pin the whole chain.
    head_position: int | None = None
    head_hash: str | None = None


def verify_entries(
    entries: Iterable[AuditEntry], *, start_hash: str | None = GENESIS_HASH, linked: bool = True
) -> VerifyResult:
    """Recompute every entry's hash and, when ``linked``, every link between entries.

    ``start_hash=None`` accepts the first entry's ``prev_hash`` (a contiguous slice of the
    chain); ``linked=False`` checks entries one by one (a filtered export, e.g. one clinic's).
    """
    expected_prev = start_hash if linked else None
    previous: AuditEntry | None = None
    checked = 0
    for entry in entries:
        if previous is not None and entry.position <= previous.position:
            return _broken(checked, entry, f"position does not follow {previous.position}")
        if expected_prev is not None and entry.prev_hash != expected_prev:
            before = f"position {previous.position}" if previous else "the chain start"
            return _broken(checked, entry, f"prev_hash does not match the entry before it "
                                           f"({before}): an entry is missing or was altered")
        if entry_digest(entry.prev_hash, entry) != entry.entry_hash:
            return _broken(checked, entry, "entry_hash does not match the entry's content")
        checked += 1
        previous = entry
        if linked:
            expected_prev = entry.entry_hash
    if previous is None:
        return VerifyResult(True, 0)
    return VerifyResult(True, checked, head_position=previous.position,
                        head_hash=previous.entry_hash)


def _broken(checked: int, entry: AuditEntry, reason: str) -> VerifyResult:
    return VerifyResult(False, checked, entry.position, reason)


def verify_chain(view: AuditView, application_name: str = Imaging.name) -> VerifyResult:
    """Recompute the stored chain and check its head against the tracking position.

    Every processed event has an entry, so a head behind the tracking position means
    entries were deleted from the end of the chain.
    """
    tracked = view.max_tracking_id(application_name)
    result = verify_entries(view.iter_all())
    if result.ok and tracked is not None and result.head_position != tracked:
        return VerifyResult(False, result.checked, tracked,
                            f"the chain ends before the tracked position {tracked}: "
                            "entries were removed from its end")
    return result


def _log_after(app: Application[Any], after: int, upto: int) -> tuple[int, int, int] | None:
    """(first, last, count) of the log's events after ``after`` up to ``upto``."""
    recorder: Any = app.recorder
    with recorder.datastore.transaction(commit=False) as curs:
        curs.execute(
            SQL("SELECT min(notification_id) AS first, max(notification_id) AS last,"
                " count(*) AS n FROM {}.{} WHERE notification_id > %s"
                " AND notification_id <= %s").format(
                Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)),
            (after, upto))
        row = curs.fetchone()
    return (row["first"], row["last"], row["n"]) if row and row["n"] else None


def verify_tail(view: AuditView, app: Application[Any], *, patience: float = 3.0,
                poll: float = 0.25) -> VerifyResult:
    """Every event in the log now (up to its current maximum) must have an entry.

    Catches a cut tail whose tracking row was moved back with it, which the chain and the
    tracking position cannot: the event log itself still holds those events. A running
    projection that merely lags is waited for while it makes progress; one that stands
    still for ``patience`` seconds with events missing is reported, naming the gap.
    """
    target = app.recorder.max_notification_id() or 0
    head = view.head()
    stalled_since = time.monotonic()
    while True:
        position = head[0] if head else 0
        missing = _log_after(app, position, target)
        if missing is None:
            return VerifyResult(True, 0, head_position=head[0] if head else None,
                                head_hash=head[1] if head else None)
        if time.monotonic() - stalled_since >= patience:
            first, last, count = missing
            return VerifyResult(
                False, 0, first,
                f"the chain ends at position {position} but the event log goes on to "
                f"{target}: positions {first}-{last} missing ({count} events), the tail "
                "was cut or the audit projection is not running")
        time.sleep(poll)
        moved = view.head()
        if moved != head:
            head, stalled_since = moved, time.monotonic()


def verify_against_head(view: AuditView, published: tuple[int, str]) -> VerifyResult:
    """The chain must still hold the published head, unchanged (run after
    :func:`verify_chain`, which proves every link up to it)."""
    position, entry_hash = published
    head = view.head()
    if head is None or head[0] < position:
        end = head[0] if head else 0
        return VerifyResult(False, 0, end + 1,
                            f"the chain ends at position {end}, before the published head "
                            f"{position}: positions {end + 1}-{position} were removed")
    found = view.entry_hash_at(position)
    if found is None:
        return VerifyResult(False, 0, position,
                            "the entry at the published head's position is missing")
    if found != entry_hash:
        return VerifyResult(False, 0, position,
                            "the entry at the published head's position differs from the "
                            "published hash: the chain was rewritten")
    return VerifyResult(True, 0, head_position=position, head_hash=entry_hash)


def replay(app: Application[Any], *, stop: int | None = None) -> Iterator[AuditEntry]:
    """The chain as the event log implies it, computed in memory without writing."""
    subjects: dict[UUID, Subject] = {}
    prev_hash = GENESIS_HASH
    after = 0
    while True:
        notifications = app.recorder.select_notifications(
            after, _BATCH, stop=stop, inclusive_of_start=False
        )
        for notification in notifications:
            draft = describe(app.mapper.to_domain_event(notification), notification.id)
            entry = resolve(draft, subjects.get(draft.entry.aggregate_id))
            if entry.aggregate_type != "access_record":  # one event each: never looked up
                subjects.setdefault(entry.aggregate_id,
                                    Subject(entry.clinic_id, entry.patient_id))
            entry = seal(entry, prev_hash)
            prev_hash = entry.entry_hash
            yield entry
        if len(notifications) < _BATCH:
            return
        after = notifications[-1].id


def verify_against_log(view: AuditView, app: Application[Any]) -> VerifyResult:
    """Compare the stored chain, entry by entry, with one rebuilt from the event log.

    Catches what the chain alone cannot: a rewrite of an entry together with every hash
    after it. Entries past the view's tracking position are not compared.
    """
    tracked = view.max_tracking_id(app.name)
    if tracked is None:
        return VerifyResult(True, 0)
    stored = view.iter_all(stop=tracked)
    checked = 0
    last: AuditEntry | None = None
    for expected in replay(app, stop=tracked):
        actual = next(stored, None)
        if actual is None or actual.position != expected.position:
            return VerifyResult(False, checked, expected.position,
                                "the event log has an event the audit has no entry for")
        if actual != expected:
            differing = [n for n in FIELDS if getattr(actual, n) != getattr(expected, n)]
            return VerifyResult(False, checked, actual.position,
                                f"differs from the event log in: {', '.join(differing)}")
        checked += 1
        last = actual
    extra = next(stored, None)
    if extra is not None:
        return VerifyResult(False, checked, extra.position,
                            "the audit has an entry the event log has no event for")
    if last is None:
        return VerifyResult(True, 0)
    return VerifyResult(True, checked, head_position=last.position, head_hash=last.entry_hash)


__all__ = [
    "GENESIS_HASH", "AuditEntry", "AuditPage", "AuditProjection", "AuditView", "VerifyResult",
    "Viewing", "describe", "replay", "verify_against_head", "verify_against_log",
    "verify_chain", "verify_entries", "verify_tail",
]
