"""Access records: every view or download of an image is an immutable event."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.events import PhiFree
from domain.values import Actor


class AccessKind(StrEnum):
    METADATA = "metadata"  # a GraphQL image node
    THUMBNAIL = "thumbnail"
    PREVIEW = "preview"
    ORIGINAL = "original"
    TILES = "tiles"  # a viewer opening the DeepZoom pyramid (recorded once per .dzi)


class AccessRecord(Aggregate):
    """One access, one aggregate: records never contend with edits of the image itself."""

    class Recorded(PhiFree, Aggregate.Created):
        clinic_id: str
        image_id: UUID
        patient_id: UUID
        kind: str
        actor: Actor

    @event(Recorded)
    def __init__(
        self, *, clinic_id: str, image_id: UUID, patient_id: UUID, kind: str, actor: Actor
    ) -> None:
        self.clinic_id = clinic_id
        self.image_id = image_id
        self.patient_id = patient_id
        self.kind = kind
