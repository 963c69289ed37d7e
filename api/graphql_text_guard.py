"""Refuses text that no column can hold, before any resolver runs.

PostgreSQL text refuses NUL, and an unpaired UTF-16 surrogate (JSON allows ``\\udcff``)
cannot be encoded to UTF-8 at all. Either one in a stored event would stall every read model
that projects it, for every clinic, for good (the log is immutable). Fields validate their
own content; this guard covers every String argument of every operation, present and future,
in one place: variables and inline literals alike answer ``invalid_text`` (400).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import ExecutionResult, GraphQLError
from graphql.language import DocumentNode, StringValueNode, visit
from graphql.language.visitor import Visitor
from strawberry.extensions import SchemaExtension

from domain.errors import InvalidInput


def unstorable(text: str) -> bool:
    return "\x00" in text or any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def _any_unstorable(value: Any) -> bool:
    if isinstance(value, str):
        return unstorable(value)
    if isinstance(value, dict):
        return any(_any_unstorable(k) or _any_unstorable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_any_unstorable(v) for v in value)
    return False


class _Literals(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found = False

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
        if unstorable(node.value):
            self.found = True


def _document_unstorable(document: DocumentNode | None) -> bool:
    if document is None:
        return False
    literals = _Literals()
    visit(document, literals)
    return literals.found


class TextGuard(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        if _any_unstorable(context.variables) or _document_unstorable(
                context.graphql_document):
            error = InvalidInput("invalid_text",
                                 "text may not contain NUL characters or unpaired surrogates")
            context.result = ExecutionResult(
                data=None, errors=[GraphQLError(error.message, original_error=error)])
        yield
