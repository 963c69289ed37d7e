"""DICOM: DICOMweb (STOW/QIDO/WADO), reconciliation of held objects, CBCT volumes and scans.

Classification (the practice's table):
- STOW and scan uploads are captures; DICOM objects are clinical images, never documents,
  so the front desk's limited grade gets ``capture_limited``.
- Reconciliation shows what a header claimed about a patient and filing an item is a capture:
  the full capture grant throughout (the front desk may not file radiographs).
- QIDO and /metadata are metadata (every view grade); thumbnails follow the thumbnail grade;
  instances, frames and renderings are pixels (full view only).
- glTF models, CBCT planes and their GraphQL details are 3D (``imaging:3d_view``).
The DICOMweb targets are an XC photograph, the one kind the front desk may see at all;
``tests/test_permission_matrix_dicom.py`` shows radiographs hidden from it on every route.
"""

from __future__ import annotations

from collections.abc import Callable

from domain.permissions import Grant, Permission
from permission_matrix.dicom_targets import (
    Study,
    chart,
    held_item,
    matching,
    photo_study,
    scan_id,
    shared_item,
    stow,
    stow_outcome,
    upload_scan,
    volume_id,
)
from permission_matrix.spec import Headers, Operation, Outcome, World, rest_outcome

P, G = Permission, Grant
METADATA = {P.VIEW: (G.THUMBNAILS, G.METADATA)}
THUMBNAIL = {P.VIEW: (G.THUMBNAILS,)}
PIXELS = {P.VIEW: ()}
CAPTURE = {P.CAPTURE: ()}
VIEW_3D = {P.VIEW: (), P.VIEW_3D: ()}

ITEM_FIELDS = "id status reasons patientId header { patientId patientName }"
ITEMS = f"{{ dicomReconciliations {{ {ITEM_FIELDS} }} }}"
ITEM = f"query($id: ID!){{ dicomReconciliation(id: $id){{ {ITEM_FIELDS} }} }}"
RESOLVE = "mutation($id: ID!){ resolveDicomReconciliation(id: $id){ status imageId } }"
REASSIGN = """mutation($id: ID!, $p: ID!){
  reassignDicomReconciliation(id: $id, patientId: $p){ status imageId } }"""
REJECT = """mutation($id: ID!){
  rejectDicomReconciliation(id: $id, reason: "not this practice's film"){ status } }"""
CBCT = "query($id: ID!){ cbctVolume(imageId: $id){ sliceCount dimensions views } }"
MESH = "query($id: ID!){ meshScan(imageId: $id){ format stats } }"

RECONCILIATIONS = "/api/v1/dicom/reconciliations"


# ---- DICOMweb ----------------------------------------------------------------------------


def _get(url: Callable[[Study], str], **headers: str
         ) -> Callable[[World, Headers], Outcome]:
    def call(world: World, auth: Headers) -> Outcome:
        return rest_outcome(world.client.get(url(photo_study(world)),
                                             headers={**auth, **headers}))
    return call


def _store(world: World, headers: Headers) -> Outcome:
    # A panoramic for the chart: filed at once for every role that may capture DICOM.
    return stow_outcome(stow(world, headers, matching(world)))


def _dicomweb(path: str, url: Callable[[Study], str], requires, *, takes_id: bool = True,
              **headers: str) -> Operation:
    return Operation(f"GET /dicomweb/studies{path}", requires, _get(url, **headers),
                     takes_id=takes_id)


DICOMWEB = [
    Operation("POST /dicomweb/studies", {P.CAPTURE: (G.DOCUMENTS,)}, _store,
              overrides={"front_desk": "capture_limited"}, takes_id=False),
    # QIDO searches: a study or series UID in the path is a matching key, not an address;
    # another clinic's UID matches nothing (an empty result, as for an unknown UID), which
    # tests/test_permission_matrix_dicom.py checks for each of them.
    _dicomweb("", lambda s: "/dicomweb/studies", METADATA, takes_id=False),
    _dicomweb("/{study}/series", lambda s: f"{s.url}/series", METADATA, takes_id=False),
    _dicomweb("/{study}/instances", lambda s: f"{s.url}/instances", METADATA,
              takes_id=False),
    _dicomweb("/{study}/series/{series}/instances", lambda s: f"{s.series_url}/instances",
              METADATA, takes_id=False),
    # WADO: metadata, thumbnails, then pixels.
    _dicomweb("/{study}/metadata", lambda s: f"{s.url}/metadata", METADATA),
    _dicomweb("/{study}/series/{series}/metadata", lambda s: f"{s.series_url}/metadata",
              METADATA),
    _dicomweb("/{study}/series/{series}/instances/{sop}/metadata",
              lambda s: f"{s.instance_url}/metadata", METADATA),
    _dicomweb("/{study}/thumbnail", lambda s: f"{s.url}/thumbnail", THUMBNAIL),
    _dicomweb("/{study}/series/{series}/thumbnail", lambda s: f"{s.series_url}/thumbnail",
              THUMBNAIL),
    _dicomweb("/{study}/series/{series}/instances/{sop}/thumbnail",
              lambda s: f"{s.instance_url}/thumbnail", THUMBNAIL),
    _dicomweb("/{study}", lambda s: s.url, PIXELS),
    _dicomweb("/{study}/series/{series}", lambda s: s.series_url, PIXELS),
    _dicomweb("/{study}/series/{series}/instances/{sop}", lambda s: s.instance_url, PIXELS),
    _dicomweb("/{study}/series/{series}/instances/{sop}/frames/{frame_list}",
              lambda s: f"{s.instance_url}/frames/1", PIXELS),
    _dicomweb("/{study}/series/{series}/instances/{sop}/rendered",
              lambda s: f"{s.instance_url}/rendered", PIXELS),
    _dicomweb("/{study}/series/{series}/instances/{sop}/frames/{frame}/rendered",
              lambda s: f"{s.instance_url}/frames/1/rendered", PIXELS),
    # Root-level QIDO (matching keys only, no id), rendered studies and series, bulk data.
    Operation("GET /dicomweb/series", METADATA, _get(lambda s: "/dicomweb/series"),
              takes_id=False),
    Operation("GET /dicomweb/instances", METADATA, _get(lambda s: "/dicomweb/instances"),
              takes_id=False),
    _dicomweb("/{study}/rendered", lambda s: f"{s.url}/rendered", PIXELS),
    _dicomweb("/{study}/series/{series}/rendered", lambda s: f"{s.series_url}/rendered",
              PIXELS),
    _dicomweb("/{study}/series/{series}/instances/{sop}/bulkdata/{path}",
              lambda s: f"{s.instance_url}/bulkdata/7FE00010", PIXELS),
]


# ---- reconciliation ----------------------------------------------------------------------


def _list_items(world: World, headers: Headers) -> Outcome:
    shared_item(world)
    return world.gql(headers, ITEMS)


def _item(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, ITEM, {"id": shared_item(world)})


def _resolve(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, RESOLVE, {"id": held_item(world)})


def _reassign(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, REASSIGN, {"id": held_item(world),
                                         "p": chart(world).patient_id})


def _reject(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, REJECT, {"id": held_item(world)})


def _rest_list(world: World, headers: Headers) -> Outcome:
    shared_item(world)
    return rest_outcome(world.client.get(RECONCILIATIONS, headers=headers))


def _rest_item(world: World, headers: Headers) -> Outcome:
    return rest_outcome(world.client.get(f"{RECONCILIATIONS}/{shared_item(world)}",
                                         headers=headers))


def _rest_resolve(world: World, headers: Headers) -> Outcome:
    return rest_outcome(world.client.post(f"{RECONCILIATIONS}/{held_item(world)}/resolve",
                                          headers=headers))


def _rest_reassign(world: World, headers: Headers) -> Outcome:
    return rest_outcome(world.client.post(
        f"{RECONCILIATIONS}/{held_item(world)}/reassign", headers=headers,
        json={"patientId": chart(world).patient_id}))


def _rest_reject(world: World, headers: Headers) -> Outcome:
    return rest_outcome(world.client.post(
        f"{RECONCILIATIONS}/{held_item(world)}/reject", headers=headers,
        json={"reason": "not this practice's film"}))


RECONCILIATION = [
    # Clinic-wide lists; another clinic's list being empty is checked in test_graphql_dicom
    # and test_dicom_ingest.
    Operation("query dicomReconciliations", CAPTURE, _list_items, takes_id=False),
    Operation("GET /api/v1/dicom/reconciliations", CAPTURE, _rest_list, takes_id=False),
    Operation("query dicomReconciliation", CAPTURE, _item),
    Operation("GET /api/v1/dicom/reconciliations/{item_id}", CAPTURE, _rest_item),
    Operation("mutation resolveDicomReconciliation", CAPTURE, _resolve),
    Operation("mutation reassignDicomReconciliation", CAPTURE, _reassign),
    Operation("mutation rejectDicomReconciliation", CAPTURE, _reject),
    Operation("POST /api/v1/dicom/reconciliations/{item_id}/resolve", CAPTURE, _rest_resolve),
    Operation("POST /api/v1/dicom/reconciliations/{item_id}/reassign", CAPTURE,
              _rest_reassign),
    Operation("POST /api/v1/dicom/reconciliations/{item_id}/reject", CAPTURE, _rest_reject),
]


# ---- 3D ----------------------------------------------------------------------------------


def _upload_scan(world: World, headers: Headers) -> Outcome:
    return rest_outcome(upload_scan(world, headers))


def _model(world: World, headers: Headers) -> Outcome:
    return rest_outcome(world.client.get(f"/api/v1/images/{scan_id(world)}/model.glb",
                                         headers=headers))


def _plane(world: World, headers: Headers) -> Outcome:
    return rest_outcome(world.client.get(
        f"/api/v1/images/{volume_id(world)}/volume/mip_coronal", headers=headers))


def _cbct(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, CBCT, {"id": volume_id(world)})


def _mesh(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, MESH, {"id": scan_id(world)})


THREE_D = [
    # A scan is a clinical capture, not a document: the front desk's grade is refused.
    Operation("POST /api/v1/patients/{patient_id}/scans", CAPTURE, _upload_scan,
              overrides={"front_desk": "capture_limited"}),
    Operation("GET /api/v1/images/{image_id}/model.glb", VIEW_3D, _model),
    Operation("GET /api/v1/images/{image_id}/volume/{view}", VIEW_3D, _plane),
    Operation("query cbctVolume", {P.VIEW_3D: ()}, _cbct),
    Operation("query meshScan", {P.VIEW_3D: ()}, _mesh),
]

OPERATIONS = DICOMWEB + RECONCILIATION + THREE_D
