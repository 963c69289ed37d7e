"""Domain errors survive pickling: decoder child processes send them back to the server."""

from __future__ import annotations

import pickle

import pytest

from domain import errors
from domain.errors import ErrorKind, OrthovaultError

KINDS = [cls for cls in vars(errors).values()
         if isinstance(cls, type) and issubclass(cls, OrthovaultError)]


@pytest.mark.parametrize("cls", KINDS, ids=lambda cls: cls.__name__)
def test_every_error_class_round_trips(cls: type[OrthovaultError]) -> None:
    copy = pickle.loads(pickle.dumps(cls("some_code", "Some message.")))
    assert type(copy) is cls
    assert (copy.code, copy.message, copy.kind, str(copy)) == (
        "some_code", "Some message.", cls.kind, "Some message.")


def test_an_overridden_kind_round_trips() -> None:
    error = errors.Unprocessable("odd", "Odd.", kind=ErrorKind.CONFLICT)
    assert pickle.loads(pickle.dumps(error)).kind is ErrorKind.CONFLICT
