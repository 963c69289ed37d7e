"""Production mode: GraphQL errors name no fields the caller did not already know.

With introspection off, graphql-core's "Did you mean 'patient'?" hints would still map the
schema one typo at a time, so they are cut from every error message (validation and
variable coercion alike).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def without_suggestions(message: str) -> str:
    return _SUGGESTION.sub("", message)


class HideSuggestions(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        for error in (result.errors or []) if result is not None else []:
            error.message = without_suggestions(error.message)
