"""The GraphQL schema at /graphql: every area's queries and mutations, merged.

Limits (depth 10, 30 aliases, 5000 tokens) and stable error codes apply to all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Request
from graphql.validation import NoSchemaIntrospectionCustomRule
from starlette.requests import HTTPConnection
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.fastapi import GraphQLRouter
from strawberry.tools import merge_types

from api.auth import bearer_token, verify_token
from api.graphql_annotations import AnnotationMutation, AnnotationQuery
from api.graphql_audit import AuditQuery
from api.graphql_capture import CaptureMutation, CaptureQuery
from api.graphql_compliance import ComplianceMutation, ComplianceQuery
from api.graphql_context import Context, ErrorCodes, OrthovaultSchema
from api.graphql_dicom import DicomMutation, DicomQuery
from api.graphql_gallery import GalleryMutation, GalleryQuery, HistoryQuery
from api.graphql_operation_label import OperationLabel
from api.graphql_organisation import OrganisationMutation, OrganisationQuery
from api.graphql_reports import ReportsMutation, ReportsQuery
from api.graphql_saved_searches import SavedSearchMutation, SavedSearchQuery
from api.graphql_search import SearchQuery
from api.graphql_simulation import SimulationMutation, SimulationQuery
from api.graphql_subscriptions import ImageSubscription
from api.graphql_suggestions import HideSuggestions
from api.graphql_text_guard import TextGuard
from api.graphql_viewing import ViewingMutation, ViewingQuery
from api.offline_docs import OfflineGraphQLRouter
from api.services import Services

Query = merge_types("Query", (GalleryQuery, HistoryQuery, CaptureQuery, AuditQuery,
                              ReportsQuery, ComplianceQuery, SimulationQuery,
                              AnnotationQuery, ViewingQuery, OrganisationQuery, SearchQuery,
                              DicomQuery, SavedSearchQuery))
Mutation = merge_types("Mutation", (GalleryMutation, CaptureMutation, ReportsMutation,
                                    ComplianceMutation, SimulationMutation,
                                    AnnotationMutation, ViewingMutation, OrganisationMutation,
                                    DicomMutation, SavedSearchMutation))

Subscription = merge_types("Subscription", (ImageSubscription,))



def build_schema(*, introspection: bool) -> OrthovaultSchema:
    """Production mode turns introspection off: the schema is documented in docs/api.md,
    and an attacker should not get the map for free."""
    rules = [] if introspection else [
        lambda: AddValidationRules([NoSchemaIntrospectionCustomRule])]
    # Listed first, so it sees the errors after ErrorCodes has rewritten them.
    hints = [] if introspection else [HideSuggestions]
    return OrthovaultSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[
            *hints,
            lambda: QueryDepthLimiter(max_depth=10),
            lambda: MaxAliasesLimiter(max_alias_count=30),
            lambda: MaxTokensLimiter(max_token_count=5000),
            ErrorCodes,
            TextGuard,
            OperationLabel,
            *rules,
        ],
    )


schema = build_schema(introspection=True)


def router(graphiql: bool, introspection: bool = True,
           allowed_origins: Sequence[str] = ()) -> GraphQLRouter:
    """``allowed_origins``: pages that may open the subscription websocket (api/cors.py)."""
    async def context(request: HTTPConnection) -> Context:
        services: Services = request.app.state.services
        actor = None
        if not isinstance(request, Request):
            # A websocket: subscriptions authenticate from connection_init (browsers cannot
            # set headers there), see api/graphql_subscriptions.py.
            return Context(services=services, actor=None)
        # Only the IDE page itself (a GET without a query) is served to anyone.
        if request.method != "GET" or request.headers.get("authorization") \
                or "query" in request.query_params:
            token = bearer_token(request.headers.get("authorization"))
            actor = verify_token(services.tokens, token, getattr(request.state, "request_id", ""))
        return Context(services=services, actor=actor)

    return OfflineGraphQLRouter(  # GraphiQL without a CDN (api/offline_docs.py)
        schema if introspection else build_schema(introspection=False),
        context_getter=context, graphql_ide="graphiql" if graphiql else None,
        allowed_origins=allowed_origins,
    )
