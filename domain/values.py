"""Value objects carried by events, and their JSON transcodings for the event store."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from eventsourcing.persistence import Transcoding


@dataclass(frozen=True)
class Actor:
    """Who did something: every event and every access record carries one.

    Ids and roles only; no names, so an actor is never PHI.
    """

    user_id: str
    role: str
    clinic_id: str
    request_id: str = ""


@dataclass(frozen=True)
class BlobRef:
    """Where a blob lives and what it must hash to. Events carry these, never pixels."""

    key: str
    sha256: str
    size: int
    media_type: str


@dataclass(frozen=True)
class Guardian:
    """The legal guardian of a minor patient (PHI: stored only in encrypted event state)."""

    name: str
    relationship: str
    phone: str = ""


class _DataclassAsDict(Transcoding):
    def encode(self, obj: Any) -> dict[str, Any]:
        return asdict(obj)

    def decode(self, data: dict[str, Any]) -> Any:
        return self.type(**data)


class ActorAsDict(_DataclassAsDict):
    type = Actor
    name = "actor"


class BlobRefAsDict(_DataclassAsDict):
    type = BlobRef
    name = "blob_ref"


class GuardianAsDict(_DataclassAsDict):
    type = Guardian
    name = "guardian"


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


TRANSCODINGS: tuple[Transcoding, ...] = (
    ActorAsDict(), BlobRefAsDict(), GuardianAsDict(), DateAsISO(),
)
