"""What every orthovault event shares, and the placeholder for a shredded one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.errors import Gone


class PhiFree:
    """Marks an event class whose state holds no PHI.

    The mapper stores such events in the clear, so they outlive crypto-shredding:
    access records and tombstones stay readable for the audit after a subject's key is gone.
    """


@dataclass(frozen=True)
class ShreddedEvent:
    """Stands in for a stored event whose subject key was destroyed.

    Only the envelope survives: ids, version, topic, time and the non-PHI actor header.
    Projections see it and move on; rebuilding an aggregate from it is refused as Gone.
    """

    originator_id: UUID
    originator_version: int
    topic: str
    timestamp: datetime | None
    header: dict[str, Any]

    def mutate(self, _aggregate: Any) -> Any:
        raise Gone("subject_destroyed", f"{self.originator_id} was destroyed")
