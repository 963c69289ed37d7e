"""What every GraphQL area shares: the request context, error codes, helpers.

Each area of the API (gallery, and later capture, cephalometry, audit…) keeps its types,
queries and mutations in its own ``api/graphql_<area>.py``; ``api/graphql_schema.py``
merges them into one schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

import strawberry
import structlog
from fastapi.concurrency import run_in_threadpool
from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.fastapi import BaseContext
from strawberry.types import Info

from api.errors import STATUS, database_unavailable
from api.services import Services
from domain.errors import InvalidInput, OrthovaultError, Unauthenticated
from domain.values import Actor

log = structlog.get_logger("orthovault.graphql")
T = TypeVar("T")


class Context(BaseContext):
    def __init__(self, services: Services, actor: Actor | None) -> None:
        super().__init__()
        self.services = services
        self.actor = actor


def actor_of(info: Info) -> Actor:
    context: Context = info.context
    if context.actor is None:
        raise Unauthenticated("missing_token", "send Authorization: Bearer <token>")
    return context.actor


async def blocking(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(func, *args, **kwargs)


def parse_id(value: strawberry.ID | str, what: str) -> UUID:
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidInput("invalid_id", f"{what} is not a valid id") from None


class ErrorCodes(MaskErrors):
    """Gives every error a stable ``extensions.code``; hides unexpected errors' details."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda _error: True)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, OrthovaultError):
            message = original.message
            extensions = {"code": original.code, "status": STATUS[original.kind]}
        elif original is None or error.path is None:
            # No resolver ran: the document or its variables were refused.
            message = error.message
            extensions = {"code": "invalid_query", "status": 400}
        elif database_unavailable(original):  # PostgreSQL restarting: retry shortly
            log.warning("database_unavailable", error=type(original).__name__)
            message = "the database is unavailable; retry shortly"
            extensions = {"code": "database_unavailable", "status": 503}
        else:
            log.error("graphql_unhandled_error", error=type(original).__name__)
            message = "an unexpected error occurred"
            extensions = {"code": "internal_error", "status": 500}
        return GraphQLError(message=message, nodes=error.nodes, source=error.source,
                            positions=error.positions, path=error.path, extensions=extensions)


class OrthovaultSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Log codes and types only: tracebacks and messages could carry PHI.

        (Unexpected errors are also logged by ErrorCodes, which masks them for the caller.)
        """
        for error in errors:
            original = error.original_error
            code = (error.extensions or {}).get("code") if original is None else (
                original.code if isinstance(original, OrthovaultError) else
                "database_unavailable" if database_unavailable(original) else "internal_error")
            log.info("graphql_error", code=code, path=error.path,
                     error=type(original).__name__ if original else None)
