"""Undo and redo over an aggregate's revisions, without ever deleting an event.

Every edit appends a revision (a snapshot of the editable content); undo and redo are
events of their own that move a cursor between revisions. An edit after an undo starts a
new branch: the undone revisions can no longer be redone, but their events stay in the log,
so the audit still shows them and time travel still reaches them.

The snapshots are small JSON-like dicts (a shape's points, a tracing's landmarks), so
keeping all of them in memory is cheaper than replaying edits backwards.
"""

from __future__ import annotations

import copy
from typing import Any

from domain.errors import Conflict, NotFound

Content = dict[str, Any]


class RevisionHistory:
    def __init__(self, first: Content) -> None:
        self._revisions: list[Content] = [copy.deepcopy(first)]
        self._cursor = 0

    @property
    def current(self) -> Content:
        return copy.deepcopy(self._revisions[self._cursor])

    @property
    def revision(self) -> int:
        """1-based number of the revision shown now."""
        return self._cursor + 1

    @property
    def count(self) -> int:
        """Revisions on the current branch, including those that redo can reach."""
        return len(self._revisions)

    def at(self, revision: int) -> Content:
        """Revision ``revision`` (1-based) of the current branch."""
        if not 1 <= revision <= len(self._revisions):
            raise NotFound("revision_not_found", f"no revision {revision}")
        return copy.deepcopy(self._revisions[revision - 1])

    @property
    def can_undo(self) -> bool:
        return self._cursor > 0

    @property
    def can_redo(self) -> bool:
        return self._cursor < len(self._revisions) - 1

    def push(self, content: Content) -> None:
        del self._revisions[self._cursor + 1:]
        self._revisions.append(copy.deepcopy(content))
        self._cursor += 1

    def peek_undo(self) -> Content:
        """What undo would show; refuses with ``nothing_to_undo`` at the first revision."""
        if not self.can_undo:
            raise Conflict("nothing_to_undo", "there is no earlier revision to go back to")
        return copy.deepcopy(self._revisions[self._cursor - 1])

    def peek_redo(self) -> Content:
        if not self.can_redo:
            raise Conflict("nothing_to_redo", "there is no undone revision to go forward to")
        return copy.deepcopy(self._revisions[self._cursor + 1])

    def move(self, step: int) -> None:
        """Apply an undo (-1) or a redo (+1) that the peek allowed."""
        self._cursor = max(0, min(len(self._revisions) - 1, self._cursor + step))
