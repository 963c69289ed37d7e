"""The practice's role and permission table, kept as data in this one place.

Everything else asks :func:`grant` or :func:`require`; nothing compares role names.
"""

from __future__ import annotations

from enum import StrEnum

from domain.errors import PermissionDenied
from domain.values import Actor


class Permission(StrEnum):
    CAPTURE = "imaging:capture"
    VIEW = "imaging:view"
    ANNOTATE = "imaging:annotate"
    DELETE = "imaging:delete"
    EXPORT = "imaging:export"
    ADMIN = "imaging:admin"
    CEPHALOMETRIC = "imaging:cephalometric"
    VIEW_3D = "imaging:3d_view"


class Role(StrEnum):
    SUPER_ADMIN = "super_admin"
    CLINIC_ADMIN = "clinic_admin"
    DOCTOR = "doctor"
    CLINICAL_STAFF = "clinical_staff"
    FRONT_DESK = "front_desk"
    BILLING = "billing"
    READ_ONLY = "read_only"


class Grant(StrEnum):
    """How much of a permission a role has.

    FULL: everything. NONE: nothing. The limited grades say exactly what is left:
    - THUMBNAILS (view, front desk): thumbnails and metadata; no originals, no radiographs.
    - METADATA (view, billing): metadata only, no pixels at all.
    - DOCUMENTS (capture, front desk): photos into an open capture session or documents;
      never radiographs.
    - OWN (annotate, clinical staff): edit anyone's annotations, delete only their own.
    - WITH_APPROVAL (delete, doctor): a request that a clinic admin must approve.
    """

    FULL = "full"
    NONE = "none"
    THUMBNAILS = "thumbnails"
    METADATA = "metadata"
    DOCUMENTS = "documents"
    OWN = "own"
    WITH_APPROVAL = "with_approval"


_F, _N = Grant.FULL, Grant.NONE
P = Permission

# One row per role: capture, view, annotate, delete, export, admin, cephalometric, 3d_view.
_TABLE: dict[Role, dict[Permission, Grant]] = {
    Role.SUPER_ADMIN: {p: _F for p in Permission},
    Role.CLINIC_ADMIN: {p: _F for p in Permission},
    Role.DOCTOR: {
        P.CAPTURE: _F, P.VIEW: _F, P.ANNOTATE: _F, P.DELETE: Grant.WITH_APPROVAL,
        P.EXPORT: _F, P.ADMIN: _N, P.CEPHALOMETRIC: _F, P.VIEW_3D: _F,
    },
    Role.CLINICAL_STAFF: {
        P.CAPTURE: _F, P.VIEW: _F, P.ANNOTATE: Grant.OWN, P.DELETE: _N,
        P.EXPORT: _F, P.ADMIN: _N, P.CEPHALOMETRIC: _N, P.VIEW_3D: _F,
    },
    Role.FRONT_DESK: {
        P.CAPTURE: Grant.DOCUMENTS, P.VIEW: Grant.THUMBNAILS, P.ANNOTATE: _N, P.DELETE: _N,
        P.EXPORT: _N, P.ADMIN: _N, P.CEPHALOMETRIC: _N, P.VIEW_3D: _N,
    },
    Role.BILLING: {
        P.CAPTURE: _N, P.VIEW: Grant.METADATA, P.ANNOTATE: _N, P.DELETE: _N,
        P.EXPORT: _N, P.ADMIN: _N, P.CEPHALOMETRIC: _N, P.VIEW_3D: _N,
    },
    Role.READ_ONLY: {
        P.CAPTURE: _N, P.VIEW: _F, P.ANNOTATE: _N, P.DELETE: _N,
        P.EXPORT: _N, P.ADMIN: _N, P.CEPHALOMETRIC: _N, P.VIEW_3D: _N,
    },
}

ROLES: tuple[str, ...] = tuple(r.value for r in Role)


def grant(role: str, permission: Permission) -> Grant:
    """The grant a role holds for a permission; unknown roles hold nothing."""
    try:
        return _TABLE[Role(role)][permission]
    except ValueError:
        return Grant.NONE


def require(actor: Actor, permission: Permission, *allowed: Grant) -> Grant:
    """Raise 403 unless the actor holds FULL or one of the ``allowed`` limited grades."""
    held = grant(actor.role, permission)
    if held is Grant.FULL or (held is not Grant.NONE and held in allowed):
        return held
    if held is Grant.WITH_APPROVAL:
        raise PermissionDenied(
            "approval_required",
            f"{permission.value}: this role may only request it for a clinic admin's approval",
        )
    raise PermissionDenied("permission_denied", f"missing permission {permission.value}")
