"""Every operation the app serves, for every role, and every id-taking one from another clinic.

The catalogue lives in ``tests/permission_matrix/ops_*.py`` (one module per area, each entry
classified by hand); the expected outcome per role is computed from the permission table.
A new GraphQL field or route that nobody classified fails ``test_catalogue_covers_…``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from permission_matrix.spec import ROLES, Operation, World

from api.graphql_schema import build_schema

AREAS = sorted(p.stem for p in (Path(__file__).parent / "permission_matrix").glob("ops_*.py"))
# Routes anyone may call without a token: probes, metrics, the API description.
UNAUTHENTICATED = {"GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json",
                   "GET /docs", "GET /docs/oauth2-redirect"}


def _load(area: str) -> list[tuple[str, Operation]]:
    module = importlib.import_module(f"permission_matrix.{area}")
    return [(area, op) for op in module.OPERATIONS]


CATALOGUE: list[tuple[str, Operation]] = [entry for area in AREAS for entry in _load(area)]


def _id(entry: tuple[str, Operation]) -> str:
    area, op = entry
    return f"{area.removeprefix('ops_')}:{op.name}"


def served_operations(app) -> set[str]:
    schema = build_schema(introspection=True)._schema
    names = set()
    for kind in ("query", "mutation", "subscription"):
        root = getattr(schema, f"{kind}_type")
        names |= {f"{kind} {field}" for field in (root.fields if root else {})}
    # The OpenAPI description lists every REST and DICOMweb route (none is hidden from it).
    for path, methods in app.openapi()["paths"].items():
        names |= {f"{method.upper()} {path}" for method in methods}
    return {name for name in names if " /graphql" not in name} - UNAUTHENTICATED


def test_catalogue_covers_every_operation(client):
    catalogued = [op.name for _, op in CATALOGUE]
    assert len(catalogued) == len(set(catalogued)), "an operation is catalogued twice"
    served = served_operations(client.app)
    assert sorted(served - set(catalogued)) == [], "served but not classified"
    assert sorted(set(catalogued) - served) == [], "classified but not served"


@pytest.fixture(scope="module")
def world(client, shared_settings) -> World:
    return World(client, shared_settings)


@pytest.mark.parametrize("entry", CATALOGUE, ids=_id)
def test_each_role_gets_what_the_table_grants(world, entry):
    _, op = entry
    seen = {role: op.call(world, world.headers(role)).code for role in ROLES}
    assert seen == {role: op.expected(role) for role in ROLES}


@pytest.mark.parametrize("entry", [e for e in CATALOGUE if e[1].takes_id], ids=_id)
def test_another_clinic_gets_not_found(world, entry):
    """A super admin of another clinic holds every permission, and still sees nothing."""
    _, op = entry
    outcome = op.call(world, world.headers("super_admin", clinic=f"other-{world.clinic}"))
    if op.not_found:
        assert outcome.code == op.not_found
    else:
        assert outcome.code.endswith("not_found"), outcome
    assert outcome.status in (None, 404), outcome
