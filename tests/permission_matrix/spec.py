"""What one entry of the permission matrix says, and the world the entries act in.

An entry names the permission(s) an operation needs (classified by hand from the practice's
table in ARCHITECTURE.md) and how to call it. The outcome each role should get is then
computed from ``domain/permissions.py``; the table itself is pinned by hand in
``tests/test_permissions.py``, so neither side can drift unnoticed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from conftest import bearer, graphql, jpeg_bytes, register_patient, token_for, upload
from domain.permissions import ROLES, Grant, Permission, grant

OK = "ok"
Headers = dict[str, str]


@dataclass(frozen=True)
class Outcome:
    """What a caller saw: ``code`` is ``ok`` or the stable error code; ``status`` for HTTP."""

    code: str
    status: int | None = None


def gql_outcome(result: dict[str, Any]) -> Outcome:
    if result.get("errors"):
        return Outcome(result["errors"][0].get("extensions", {}).get("code", "no_code"))
    return Outcome(OK)


def rest_outcome(response: Any) -> Outcome:
    if response.status_code < 400:
        return Outcome(OK, response.status_code)
    try:
        code = response.json().get("code", "no_code")
    except ValueError:
        code = "no_code"
    return Outcome(code, response.status_code)


@dataclass
class World:
    """One clinic with a patient and whatever each area needs, built on first use.

    ``once(name, build)`` caches a resource that operations only read; ``fresh`` callers
    build a new one per call because the operation consumes or changes it.
    """

    client: TestClient
    settings: Any
    clinic: str = field(default_factory=lambda: f"clinic-{uuid.uuid4().hex[:8]}")
    cache: dict[str, Any] = field(default_factory=dict)

    def headers(self, role: str, clinic: str | None = None) -> Headers:
        return bearer(token_for(self.settings, role, clinic or self.clinic,
                                user=f"user-{role}"))

    @property
    def admin(self) -> Headers:
        return self.headers("clinic_admin")

    def once(self, name: str, build: Callable[[World], Any]) -> Any:
        if name not in self.cache:
            self.cache[name] = build(self)
        return self.cache[name]

    def gql(self, headers: Headers, query: str, variables: dict[str, Any] | None = None
            ) -> Outcome:
        return gql_outcome(graphql(self.client, headers, query, variables))

    def setup_gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a setup step as the clinic admin; it must succeed."""
        result = graphql(self.client, self.admin, query, variables)
        assert not result.get("errors"), result
        return result["data"]

    # The resources nearly every area needs.
    @property
    def patient_id(self) -> str:
        return self.once("patient", lambda w: register_patient(w.client, w.admin))

    def new_image(self, patient_id: str | None = None, **fields: str) -> str:
        response = upload(self.client, self.admin, patient_id or self.patient_id,
                          jpeg_bytes(seed=len(self.cache)), fields=fields or None)
        assert response.status_code == 201, response.text
        self.cache[f"image-{uuid.uuid4().hex}"] = response.json()["id"]
        return response.json()["id"]

    @property
    def image_id(self) -> str:
        return self.once("image", lambda w: w.new_image())


@dataclass(frozen=True)
class Operation:
    """One operation of the public surface and what it requires.

    ``name``: ``query <field>``, ``mutation <field>``, ``subscription <field>`` or
    ``<METHOD> <path template>`` exactly as the app routes it.
    ``requires``: permission → the limited grades that still pass (FULL always passes).
    ``overrides``: role → the code a limited grade gets where it is not the generic one.
    ``call(world, headers)``: performs the operation once; builds its own fresh targets
    (as the clinic admin) when the operation consumes them.
    ``takes_id``: it addresses something of one clinic, so another clinic must get 404.
    """

    name: str
    requires: dict[Permission, tuple[Grant, ...]]
    call: Callable[[World, Headers], Outcome]
    overrides: dict[str, str] = field(default_factory=dict)
    takes_id: bool = True
    not_found: str | None = None

    def expected(self, role: str) -> str:
        if role in self.overrides:
            return self.overrides[role]
        for permission, allowed in self.requires.items():
            held = grant(role, permission)
            if held is Grant.FULL or held in allowed:
                continue
            return "approval_required" if held is Grant.WITH_APPROVAL else "permission_denied"
        return OK


def any_role() -> dict[Permission, tuple[Grant, ...]]:
    """For operations every authenticated member of the clinic may use."""
    return {}


__all__ = ["OK", "ROLES", "Headers", "Operation", "Outcome", "World", "any_role",
           "gql_outcome", "rest_outcome"]
