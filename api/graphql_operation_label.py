"""GraphQL requests are labelled by operation name in logs and metrics.

Every GraphQL request goes to one route, so the route alone says nothing; the operation
name (``query GalleryPage { … }``) does. The name is a GraphQL name (letters, digits, "_"),
never a value, so it carries no PHI; it is cut to 64 characters.
"""

from __future__ import annotations

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

STATE_KEY = "graphql_operation"
ANONYMOUS = "anonymous"
MAX_NAME = 64


class OperationLabel(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        context = self.execution_context.context
        request = getattr(context, "request", None)
        if request is None:
            return
        try:
            name = self.execution_context.operation_name
        except Exception:  # a document that did not parse has no operations
            name = None
        setattr(request.state, STATE_KEY, (name or ANONYMOUS)[:MAX_NAME])
