"""Saved searches ("smart albums"): a stored query that is run again each time it is opened.

A saved search belongs to one clinic and is either the clinic's (shared: every member with
a view grade lists and runs it) or one user's (private: nobody else finds it at all). It
stores the query text and the filters, never results, so what it finds is always what
search finds for the caller right now, under the caller's role. Its name and query are
free text that may name a patient, so its events are sealed (its own subject key) like
an album's.
"""

from __future__ import annotations

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidInput
from domain.values import Actor

MAX_NAME = 120
MAX_QUERY = 200
FILTER_KEYS = ("category", "view", "tag", "capturedFrom", "capturedTo")


def saved_search_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > MAX_NAME or not cleaned.isprintable():
        raise InvalidInput("invalid_saved_search_name",
                           f"a saved search's name is 1-{MAX_NAME} printable characters")
    return cleaned


def saved_query(query: str) -> str:
    cleaned = " ".join(query.split())
    if not cleaned or len(cleaned) > MAX_QUERY or not cleaned.isprintable():
        raise InvalidInput("invalid_query_text",
                           f"a saved query is 1-{MAX_QUERY} printable characters")
    return cleaned


def saved_filters(filters: dict[str, str]) -> dict[str, str]:
    """Only known filter names, as text (the API checked the values)."""
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    if unknown:
        raise InvalidInput("invalid_filter", f"unknown filters: {', '.join(unknown)}")
    return {k: str(filters[k]) for k in FILTER_KEYS if filters.get(k) is not None}


class SavedSearch(Aggregate):
    @event("Created")
    def __init__(self, *, clinic_id: str, owner_id: str | None, name: str, query: str,
                 filters: dict[str, str], actor: Actor) -> None:
        self.clinic_id = clinic_id
        self.owner_id = owner_id  # None: the clinic's, shared
        self.name = name
        self.query = query
        self.filters = dict(filters)
        self.deleted = False

    @event("Renamed")
    def rename(self, *, name: str, actor: Actor) -> None:
        self.name = name

    @event("QueryChanged")
    def change_query(self, *, query: str, filters: dict[str, str], actor: Actor) -> None:
        self.query = query
        self.filters = dict(filters)

    @event("Deleted")
    def delete(self, *, actor: Actor) -> None:
        self.deleted = True

    def visible_to(self, actor: Actor) -> bool:
        return (self.clinic_id == actor.clinic_id and not self.deleted
                and self.owner_id in (None, actor.user_id))
