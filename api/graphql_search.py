"""GraphQL ``search``: ranked, typo-tolerant search over the caller's clinic.

What a role finds follows the permission table (``domain.permissions``): front desk never
finds radiographs, and neither front desk nor billing matches on (or sees snippets of)
clinical notes; pixel URLs on the hits follow the same rules as gallery pages. Hits are
images, fetched from the gallery in one query per page; matching patients come along on
the first page.
"""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from api.graphql_context import actor_of, blocking
from api.graphql_gallery import (
    ImageNode,
    PageInfo,
    _image_node,
    _visible_categories,
    gallery_filters,
)
from api.services import Services
from domain.access import AccessKind
from domain.permissions import Grant, Permission, require
from domain.values import Actor
from projections.search import SearchFilters, SearchScope, encode_cursor


def search_scope(actor: Actor) -> SearchScope:
    held = require(actor, Permission.VIEW, Grant.THUMBNAILS, Grant.METADATA)
    return SearchScope(notes=held is Grant.FULL, categories=_visible_categories(actor))


@strawberry.type
class SearchHitNode:
    score: float
    snippet: str = strawberry.field(
        description="The matched text with «marks» around the matches.")
    image: ImageNode


@strawberry.type
class SearchEdge:
    node: SearchHitNode
    cursor: str


@strawberry.type
class PatientMatch:
    id: strawberry.ID
    name: str
    external_id: str
    score: float


@strawberry.type
class Correction:
    word: str
    terms: list[str]


@strawberry.type
class FacetCount:
    value: str
    count: int


@strawberry.type
class SearchFacets:
    category: list[FacetCount]
    view: list[FacetCount]


@strawberry.type
class SearchResult:
    edges: list[SearchEdge]
    page_info: PageInfo
    patients: list[PatientMatch]
    corrections: list[Correction] = strawberry.field(
        description="Close spellings that were searched as well (typo tolerance).")
    facets: SearchFacets


@strawberry.input
class SearchFilterInput:
    """Narrows a search like the gallery's filters; they combine (AND). ``capturedFrom`` is
    inclusive, ``capturedTo`` exclusive."""

    category: str | None = None
    view: str | None = None
    tag: str | None = None
    captured_from: datetime | None = None
    captured_to: datetime | None = None


def search_filters(given: SearchFilterInput | None) -> SearchFilters | None:
    """Checked like the gallery's: an unknown value is a 400 with its own code."""
    if given is None:
        return None
    checked = gallery_filters(given.category, given.view, None, given.tag,
                              given.captured_from, given.captured_to)
    del checked["quality"]
    return SearchFilters(**checked)


def _facet(counts: dict[str, int]) -> list[FacetCount]:
    return [FacetCount(value=v, count=n)
            for v, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


@strawberry.type
class SearchQuery:
    @strawberry.field(description="Search images by patient, tags, albums, views, notes.")
    async def search(self, info: Info, query: str, first: int = 20,
                     after: str | None = None,
                     filter: SearchFilterInput | None = None) -> SearchResult:
        return await run_search(info, query, first, after, search_filters(filter))


async def run_search(info: Info, query: str, first: int, after: str | None,
                     filters: SearchFilters | None) -> SearchResult:
    """One page of hits as the caller's role may see them (saved searches run this too)."""
    actor = actor_of(info)
    scope = search_scope(actor)
    services: Services = info.context.services
    page = await blocking(services.search.search, actor.clinic_id, query, scope,
                          first=first, after=after, filters=filters)
    rows = await blocking(services.gallery.images_by_id, actor.clinic_id,
                          [h.image_id for h in page.hits])
    hits = [h for h in page.hits if h.image_id in rows]
    await blocking(services.app.record_access, actor,
                   [(h.image_id, h.patient_id) for h in hits], AccessKind.METADATA)
    return SearchResult(
        edges=[SearchEdge(node=SearchHitNode(score=h.score, snippet=h.snippet,
                                             image=_image_node(rows[h.image_id], actor)),
                          cursor=encode_cursor(h)) for h in hits],
        page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        patients=[PatientMatch(id=strawberry.ID(str(p.patient_id)), name=p.name,
                               external_id=p.external_id, score=p.score)
                  for p in page.patients],
        corrections=[Correction(word=w, terms=t) for w, t in page.corrections.items()],
        facets=SearchFacets(category=_facet(page.facets.get("category", {})),
                            view=_facet(page.facets.get("view", {}))),
    )
