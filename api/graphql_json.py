"""GraphQL request JSON with bounded nesting.

``json.loads`` raises RecursionError on a body nested some thousand levels deep, which
strawberry does not expect (a 500, and under uvicorn a dropped connection); and anything
nested a few hundred levels would exhaust the stack later, in the text guard or variable
coercion. So bodies (and GET ``variables``) nested deeper than :data:`MAX_DEPTH` are
refused up front: 400 problem+json ``json_too_deep``.
"""

from __future__ import annotations

import json
from typing import Any

from strawberry.fastapi import GraphQLRouter

from domain.errors import InvalidInput

MAX_DEPTH = 64  # far beyond any real variables (a polygon is a list of pairs: depth 4)


def _too_deep() -> InvalidInput:
    return InvalidInput("json_too_deep", f"the JSON is nested more than {MAX_DEPTH} levels")


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Iterative, so the check itself cannot run out of stack."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else (
            item if isinstance(item, list) else None)
        if children is None:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def loads_bounded(data: str | bytes) -> object:
    try:
        value = json.loads(data)
    except RecursionError:
        raise _too_deep() from None
    if depth_exceeds(value):
        raise _too_deep()
    return value


class BoundedJsonRouter(GraphQLRouter):  # type: ignore[type-arg]
    def decode_json(self, data: str | bytes) -> object:
        return loads_bounded(data)
