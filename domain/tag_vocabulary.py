"""A clinic's controlled tag vocabulary, and the renames and merges that reshape it.

Free tags stay allowed; the vocabulary is the list a clinic curates (``imaging:admin``)
plus the aliases its renames and merges leave behind. An alias makes a retired spelling
land on its successor: after "ceph" was merged into "cephalometric", tagging an image
"ceph" records "cephalometric". The images already tagged are re-tagged image by image,
as ordinary ``Image.Untagged``/``Image.Tagged`` events, so every read model follows.
"""

from __future__ import annotations

import uuid
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import Conflict, InvalidInput
from domain.events import PhiFree
from domain.values import Actor

MAX_TERMS = 2000
VOCABULARY_NAMESPACE = uuid.UUID("5d0b8a8e-51f4-4d0e-9a0c-7c7b1f2d9e31")


def vocabulary_id(clinic_id: str) -> UUID:
    """One vocabulary per clinic, found without a look-up."""
    return uuid.uuid5(VOCABULARY_NAMESPACE, clinic_id)


class TagVocabulary(Aggregate):
    """Tags are clinical labels, not PHI: these events are stored in the clear."""

    @staticmethod
    def create_id(clinic_id: str) -> UUID:
        return vocabulary_id(clinic_id)

    class Created(PhiFree, Aggregate.Created):
        clinic_id: str
        actor: Actor

    @event(Created)
    def __init__(self, *, clinic_id: str, actor: Actor) -> None:
        self.clinic_id = clinic_id
        self.terms: list[str] = []
        self.aliases: dict[str, str] = {}

    def canonical(self, tag: str) -> str:
        """Follows aliases (a rename of a rename lands on the latest name)."""
        seen = set()
        while tag in self.aliases and tag not in seen:
            seen.add(tag)
            tag = self.aliases[tag]
        return tag

    class TermAdded(PhiFree, Aggregate.Event):
        tag: str
        actor: Actor

    def add_term(self, *, tag: str, actor: Actor) -> bool:
        if tag in self.aliases:
            raise Conflict("tag_retired",
                           f"{tag!r} was renamed or merged into {self.canonical(tag)!r}")
        if tag in self.terms:
            return False
        if len(self.terms) >= MAX_TERMS:
            raise Conflict("vocabulary_full", f"a vocabulary holds at most {MAX_TERMS} tags")
        self._add_term(tag=tag, actor=actor)
        return True

    @event(TermAdded)
    def _add_term(self, *, tag: str, actor: Actor) -> None:
        self.terms.append(tag)

    class TermRemoved(PhiFree, Aggregate.Event):
        tag: str
        actor: Actor

    def remove_term(self, *, tag: str, actor: Actor) -> None:
        if tag not in self.terms:
            raise Conflict("tag_not_in_vocabulary", f"{tag!r} is not in the vocabulary")
        self._remove_term(tag=tag, actor=actor)

    @event(TermRemoved)
    def _remove_term(self, *, tag: str, actor: Actor) -> None:
        self.terms.remove(tag)

    class TagRenamed(PhiFree, Aggregate.Event):
        old: str
        new: str
        actor: Actor

    def rename(self, *, old: str, new: str, actor: Actor) -> None:
        """``new`` must be a fresh name; to fold into an existing tag, merge."""
        if old == new:
            raise InvalidInput("same_tag", "the new name equals the old one")
        if new in self.terms:
            raise Conflict("tag_exists", f"{new!r} exists already; merge instead")
        if new in self.aliases:
            raise Conflict("tag_retired", f"{new!r} was renamed or merged away")
        self._rename(old=old, new=new, actor=actor)

    @event(TagRenamed)
    def _rename(self, *, old: str, new: str, actor: Actor) -> None:
        if old in self.terms:
            self.terms[self.terms.index(old)] = new
        self.aliases[old] = new

    class TagsMerged(PhiFree, Aggregate.Event):
        source: str
        target: str
        actor: Actor

    def merge(self, *, source: str, target: str, actor: Actor) -> None:
        if source == target:
            raise InvalidInput("same_tag", "a tag cannot be merged into itself")
        if self.canonical(target) == source:
            raise Conflict("tag_merge_cycle", f"{target!r} is an alias of {source!r}")
        self._merge(source=source, target=self.canonical(target), actor=actor)

    @event(TagsMerged)
    def _merge(self, *, source: str, target: str, actor: Actor) -> None:
        if source in self.terms:
            self.terms.remove(source)
        if target not in self.terms:
            self.terms.append(target)
        self.aliases[source] = target
