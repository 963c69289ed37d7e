"""GraphQL for saved searches ("smart albums"): stored queries listed beside the albums,
each with its current count, run again whenever they are opened.

A saved search is the clinic's (``shared``) or the caller's own (private). Running one is
exactly ``search`` with the stored query and filters, under the caller's role: front desk
finds no radiographs in a smart album a doctor saved, billing gets no pixel URLs, and
neither matches on notes. Who may create, rename, change and delete them follows the
albums (``imaging:annotate``); listing and running need a view grade.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import strawberry
from strawberry.types import Info

from api.graphql_context import actor_of, blocking, parse_id
from api.graphql_search import (
    SearchFilterInput,
    SearchResult,
    run_search,
    search_filters,
    search_scope,
)
from api.services import Services
from domain.errors import NotFound
from domain.imaging import Written
from domain.saved_search import SavedSearch
from domain.values import Actor
from projections.saved_searches import SavedSearchRow
from projections.search import ParsedQuery, SearchFilters

_DATES = ("captured_from", "captured_to")
_STORED = {"category": "category", "view": "view", "tag": "tag",
           "captured_from": "capturedFrom", "captured_to": "capturedTo"}


def _stored(filters: SearchFilters | None) -> dict[str, str]:
    """Checked filters as the events store them (text; dates ISO 8601)."""
    if filters is None:
        return {}
    values = {key: getattr(filters, key) for key in _STORED}
    return {_STORED[k]: (v.isoformat() if k in _DATES else v)
            for k, v in values.items() if v is not None}


def _filters(stored: dict[str, str]) -> SearchFilters:
    values = {key: stored.get(name) for key, name in _STORED.items()}
    return SearchFilters(**{k: (datetime.fromisoformat(v) if v and k in _DATES else v)
                            for k, v in values.items()})


@strawberry.type
class SearchFilter:
    category: str | None
    view: str | None
    tag: str | None
    captured_from: datetime | None
    captured_to: datetime | None


@strawberry.type(name="SavedSearch")
class SavedSearchNode:
    id: strawberry.ID
    name: str
    query: str
    filter: SearchFilter
    shared: bool = strawberry.field(
        description="The clinic's (true) or only the caller's own (false).")
    created_at: datetime
    updated_at: datetime
    stored: strawberry.Private[SearchFilters]

    @strawberry.field(description="How many images it finds for the caller now.")
    async def count(self, info: Info) -> int:
        actor, services = actor_of(info), info.context.services
        return await blocking(services.search.count, actor.clinic_id, self.query,
                              search_scope(actor), self.stored)

    @strawberry.field(description="Runs the stored query now, as search does for the caller.")
    async def results(self, info: Info, first: int = 20,
                      after: str | None = None) -> SearchResult:
        return await run_search(info, self.query, first, after, self.stored)


def _node(row: SavedSearchRow) -> SavedSearchNode:
    filters = _filters(row.filters)
    return SavedSearchNode(
        id=strawberry.ID(str(row.id)), name=row.name, query=row.query,
        filter=SearchFilter(category=filters.category, view=filters.view, tag=filters.tag,
                            captured_from=filters.captured_from,
                            captured_to=filters.captured_to),
        shared=row.owner_id is None, created_at=row.created_at, updated_at=row.updated_at,
        stored=filters)


async def _after(services: Services, actor: Actor, written: Written) -> SavedSearchNode:
    """Waits until the list shows the write; answers from the aggregate itself."""
    await blocking(services.wait_for_read_models, written.position, services.saved_searches)
    saved: SavedSearch = await blocking(services.app.saved_search, actor, written.id)
    return _node(SavedSearchRow(
        id=saved.id, clinic_id=saved.clinic_id, owner_id=saved.owner_id, name=saved.name,
        query=saved.query, filters=saved.filters, created_at=saved.created_on,
        updated_at=saved.modified_on))


def _checked(query: str, given: SearchFilterInput | None) -> dict[str, str]:
    ParsedQuery.parse(query)  # the same 400s as search itself, before anything is stored
    return _stored(search_filters(given))


@strawberry.input
class CreateSavedSearchInput:
    name: str
    query: str
    filter: SearchFilterInput | None = None
    shared: bool = False


@strawberry.input
class RenameSavedSearchInput:
    saved_search_id: strawberry.ID
    name: str


@strawberry.input
class UpdateSavedSearchInput:
    saved_search_id: strawberry.ID
    query: str
    filter: SearchFilterInput | None = None


@strawberry.input
class SavedSearchIdInput:
    saved_search_id: strawberry.ID


def _id(value: strawberry.ID) -> UUID:
    return parse_id(value, "savedSearchId")


@strawberry.type
class SavedSearchQuery:
    @strawberry.field(description="The clinic's saved searches and the caller's own.")
    async def saved_searches(self, info: Info) -> list[SavedSearchNode]:
        actor, services = actor_of(info), info.context.services
        search_scope(actor)  # a view grade
        rows = await blocking(services.saved_searches.visible, actor.clinic_id, actor.user_id)
        return [_node(r) for r in rows]

    @strawberry.field
    async def saved_search(self, info: Info, id: strawberry.ID) -> SavedSearchNode:
        actor, services = actor_of(info), info.context.services
        search_scope(actor)
        row = await blocking(services.saved_searches.one, actor.clinic_id, actor.user_id,
                             parse_id(id, "id"))
        if row is None:
            raise NotFound("saved_search_not_found", "no such saved search")
        return _node(row)


@strawberry.type
class SavedSearchMutation:
    @strawberry.mutation(description="Save a query (and filters) for the clinic or oneself.")
    async def create_saved_search(self, info: Info,
                                  input: CreateSavedSearchInput) -> SavedSearchNode:
        actor, services = actor_of(info), info.context.services
        filters = _checked(input.query, input.filter)
        written = await blocking(services.app.create_saved_search, actor, name=input.name,
                                 query=input.query, filters=filters, shared=input.shared)
        return await _after(services, actor, written)

    @strawberry.mutation
    async def rename_saved_search(self, info: Info,
                                  input: RenameSavedSearchInput) -> SavedSearchNode:
        actor, services = actor_of(info), info.context.services
        written = await blocking(services.app.rename_saved_search, actor,
                                 _id(input.saved_search_id), input.name)
        return await _after(services, actor, written)

    @strawberry.mutation(description="Replace the stored query and filters.")
    async def update_saved_search(self, info: Info,
                                  input: UpdateSavedSearchInput) -> SavedSearchNode:
        actor, services = actor_of(info), info.context.services
        search_id = _id(input.saved_search_id)
        await blocking(services.app.saved_search, actor, search_id)  # 404 before 400
        filters = _checked(input.query, input.filter)
        written = await blocking(services.app.update_saved_search, actor, search_id,
                                 query=input.query, filters=filters)
        return await _after(services, actor, written)

    @strawberry.mutation(description="Delete a saved search (the images are untouched).")
    async def delete_saved_search(self, info: Info, input: SavedSearchIdInput) -> strawberry.ID:
        actor, services = actor_of(info), info.context.services
        written = await blocking(services.app.delete_saved_search, actor,
                                 _id(input.saved_search_id))
        await blocking(services.wait_for_read_models, written.position,
                       services.saved_searches)
        return strawberry.ID(str(written.id))
