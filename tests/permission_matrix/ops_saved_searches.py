"""Saved searches (smart albums), classified like the albums they sit beside: listing and
running one is a metadata read (what it finds follows search's own role rules), creating
and changing one is organising (``imaging:annotate``, clinical staff's OWN grade too).

The targets are the clinic's shared saved searches, made by the clinic admin; a private
one is its owner's alone (tests/test_saved_searches.py).
"""

from __future__ import annotations

import uuid

from domain.permissions import Grant, Permission
from permission_matrix.spec import Headers, Operation, Outcome, World

P, G = Permission, Grant
METADATA_VIEW = {P.VIEW: (G.THUMBNAILS, G.METADATA)}
ORGANISE = {P.ANNOTATE: (G.OWN,)}
NOT_FOUND = "saved_search_not_found"

CREATE = """mutation($i: CreateSavedSearchInput!){ createSavedSearch(input: $i){ id } }"""


def _new(world: World) -> str:
    return world.setup_gql(CREATE, {"i": {"name": f"saved-{uuid.uuid4().hex[:8]}",
                                          "query": "lovelace", "shared": True}}
                           )["createSavedSearch"]["id"]


def _saved(world: World) -> str:
    return world.once("saved-search:shared", _new)


def _list(world: World, headers: Headers) -> Outcome:
    _saved(world)
    return world.gql(headers, "query{ savedSearches { id name count } }")


def _open(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """query($id: ID!){ savedSearch(id: $id){ name count
        results(first: 2){ edges { node { image { id } } } } } }""", {"id": _saved(world)})


def _create(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, CREATE, {"i": {"name": "mine", "query": "debond"}})


def _rename(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """mutation($i: RenameSavedSearchInput!){
        renameSavedSearch(input: $i){ id } }""",
                     {"i": {"savedSearchId": _new(world), "name": "renamed"}})


def _update(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """mutation($i: UpdateSavedSearchInput!){
        updateSavedSearch(input: $i){ id } }""",
                     {"i": {"savedSearchId": _new(world), "query": "debond",
                            "filter": {"category": "photo"}}})


def _delete(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """mutation($i: SavedSearchIdInput!){
        deleteSavedSearch(input: $i) }""", {"i": {"savedSearchId": _new(world)}})


OPERATIONS = [
    Operation("query savedSearches", METADATA_VIEW, _list, takes_id=False),
    Operation("query savedSearch", METADATA_VIEW, _open, not_found=NOT_FOUND),
    Operation("mutation createSavedSearch", ORGANISE, _create, takes_id=False),
    Operation("mutation renameSavedSearch", ORGANISE, _rename, not_found=NOT_FOUND),
    Operation("mutation updateSavedSearch", ORGANISE, _update, not_found=NOT_FOUND),
    Operation("mutation deleteSavedSearch", ORGANISE, _delete, not_found=NOT_FOUND),
]
