"""Audit exports for compliance officers: CSV, JSON Lines, and FHIR R4 AuditEvent bundles.

CSV and JSON Lines carry every column, hashes included, and read back into identical
entries, so an officer can verify an export away from the server (``verify_entries``).
FHIR is for exchange with other systems; it keeps the hashes as entity details but is not
meant to be read back.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal, TextIO
from uuid import NAMESPACE_URL, uuid5

from projections.audit import FIELDS, OPTIONAL_FIELDS, VIEW_ACTION_PREFIX, AuditEntry

# ---- CSV ---------------------------------------------------------------------------------

# A cell starting with one of these runs as a formula in a spreadsheet (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ESCAPE = "'"


def _escape_cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    # The quote is escaped too, so reading back strips exactly what writing added.
    if text.startswith((*_FORMULA_STARTS, _ESCAPE)):
        return _ESCAPE + text
    return text


def _unescape_cell(text: str) -> str:
    return text.removeprefix(_ESCAPE)


def write_csv(entries: Iterable[AuditEntry], out: TextIO) -> int:
    """Header row plus one row per entry; returns the number of entries written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    count = 0
    for entry in entries:
        record = entry.as_record()
        writer.writerow([_escape_cell(record[name]) for name in FIELDS])
        count += 1
    return count


def read_csv(source: TextIO) -> Iterator[AuditEntry]:
    reader = csv.DictReader(source)
    if tuple(reader.fieldnames or ()) != FIELDS:
        raise ValueError("not an orthovault audit CSV: unexpected columns")
    for row in reader:
        record = {
            name: (None if name in OPTIONAL_FIELDS and value == "" else _unescape_cell(value))
            for name, value in row.items()
        }
        yield AuditEntry.from_record(record)


# ---- JSON Lines --------------------------------------------------------------------------


def write_jsonl(entries: Iterable[AuditEntry], out: TextIO) -> int:
    count = 0
    for entry in entries:
        out.write(json.dumps(entry.as_record(), separators=(",", ":"), ensure_ascii=True))
        out.write("\n")
        count += 1
    return count


def read_jsonl(source: TextIO) -> Iterator[AuditEntry]:
    for line in source:
        if line.strip():
            yield AuditEntry.from_record(json.loads(line))


# ---- FHIR R4 AuditEvent ------------------------------------------------------------------

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ID_SYSTEM = "urn:orthovault:"  # + user, patient, image, audit-entry, system
OUTCOME_SUCCESS = "0"  # only what happened is in the log; refused requests write no event

# The last dotted part of an action decides the FHIR action; anything else is an update.
_DELETES = frozenset({"destroyed", "soft_deleted"})
_INTERACTIONS = {"C": "create", "R": "read", "U": "update", "D": "delete"}


def fhir_action(entry: AuditEntry) -> str:
    """C/R/U/D: a view reads, a tombstone or soft delete deletes, a first event creates."""
    if entry.action.startswith(VIEW_ACTION_PREFIX):
        return "R"
    if entry.action.rpartition(".")[2] in _DELETES:
        return "D"
    return "C" if entry.aggregate_version == 1 else "U"


def _identifier(kind: str, value: Any) -> dict[str, str]:
    return {"system": f"{ID_SYSTEM}{kind}", "value": str(value)}


def _agent(entry: AuditEntry) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "who": ({"identifier": _identifier("user", entry.actor_user)}
                if entry.actor_user else {"display": "unknown"}),
        # Every event is written on behalf of the user (or system job) who asked for it.
        "requestor": True,
    }
    if entry.actor_role:
        agent["role"] = [{"text": entry.actor_role}]
    return agent


def _entities(entry: AuditEntry) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    if entry.patient_id is not None:
        entities.append({
            "what": {"identifier": _identifier("patient", entry.patient_id)},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        })
    if entry.image_id is not None:
        entities.append({
            "what": {"identifier": _identifier("image", entry.image_id)},
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        })
    details = {
        "action": entry.action, "aggregate_type": entry.aggregate_type,
        "aggregate_id": str(entry.aggregate_id),
        "aggregate_version": str(entry.aggregate_version), "request_id": entry.request_id,
        "reason_category": entry.reason_category, "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
    }
    entities.append({
        "what": {"identifier": _identifier("audit-entry", entry.position)},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "detail": [{"type": k, "valueString": v} for k, v in details.items() if v],
    })
    return entities


def to_fhir_audit_event(entry: AuditEntry) -> dict[str, Any]:
    action = fhir_action(entry)
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"ov-audit-{entry.position}",
        "type": {"system": AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": RESTFUL_INTERACTION, "code": _INTERACTIONS[action]}],
        "action": action,
        "outcome": OUTCOME_SUCCESS,
        "agent": [_agent(entry)],
        "source": {
            "observer": {"identifier": _identifier("system", "orthovault"),
                         "display": "orthovault"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": _entities(entry),
    }
    if entry.clinic_id:
        resource["source"]["site"] = entry.clinic_id
    # recorded is required; an entry without a time (never written by this code) is
    # exported with the epoch rather than dropped, so the bundle still lists it.
    recorded = entry.occurred_at or datetime.fromtimestamp(0, UTC)
    resource["recorded"] = recorded.astimezone(UTC).isoformat(timespec="microseconds")
    return resource


def to_fhir_bundle(
    entries: Iterable[AuditEntry],
    bundle_type: Literal["collection", "searchset"] = "collection",
    *,
    generated_at: datetime | None = None,
) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for entry in entries:
        resource = to_fhir_audit_event(entry)
        item: dict[str, Any] = {"fullUrl": _full_url(resource), "resource": resource}
        if bundle_type == "searchset":
            item["search"] = {"mode": "match"}
        items.append(item)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": bundle_type,
        "timestamp": (generated_at or datetime.now(UTC)).isoformat(timespec="seconds"),
        "entry": items,
    }
    if bundle_type == "searchset":
        bundle["total"] = len(items)
    return bundle


def _full_url(resource: dict[str, Any]) -> str:
    # Stable: the same entry exported twice gets the same urn.
    name = f"{ID_SYSTEM}audit-entry/{resource['id']}"
    return f"urn:uuid:{uuid5(NAMESPACE_URL, name)}"


__all__ = [
    "fhir_action", "read_csv", "read_jsonl", "to_fhir_audit_event", "to_fhir_bundle",
    "write_csv", "write_jsonl",
]
