"""The GraphQL schema at /graphql: every area's queries and mutations, merged.

Limits (depth 10, 30 aliases, 5000 tokens) and stable error codes apply to all of them.
"""

from __future__ import annotations

from fastapi import Request
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.fastapi import GraphQLRouter
from strawberry.tools import merge_types

from api.auth import bearer_token, verify_token
from api.graphql_audit import AuditQuery
from api.graphql_capture import CaptureMutation, CaptureQuery
from api.graphql_context import Context, ErrorCodes, OrthovaultSchema
from api.graphql_gallery import GalleryMutation, GalleryQuery, HistoryQuery
from api.services import Services

Query = merge_types("Query", (GalleryQuery, HistoryQuery, CaptureQuery, AuditQuery))
Mutation = merge_types("Mutation", (GalleryMutation, CaptureMutation))

schema = OrthovaultSchema(
    query=Query,
    mutation=Mutation,
    extensions=[
        lambda: QueryDepthLimiter(max_depth=10),
        lambda: MaxAliasesLimiter(max_alias_count=30),
        lambda: MaxTokensLimiter(max_token_count=5000),
        ErrorCodes,
    ],
)


def router(graphiql: bool) -> GraphQLRouter:
    async def context(request: Request) -> Context:
        services: Services = request.app.state.services
        actor = None
        if request.method != "GET" or request.headers.get("authorization"):
            token = bearer_token(request.headers.get("authorization"))
            actor = verify_token(services.tokens, token, getattr(request.state, "request_id", ""))
        return Context(services=services, actor=actor)

    return GraphQLRouter(
        schema, context_getter=context, graphql_ide="graphiql" if graphiql else None
    )
