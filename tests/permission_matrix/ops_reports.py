"""Reports (collages, share links) and treatment simulations: the reports area's operations.

How the table's "reports" column is read. It gives every role some "view" of reports, while
``imaging:export`` ("export images and reports") is held by admins, doctors and clinical
staff only. So:
- producing or handing out a report (request, share, revoke a share) and every simulation
  export are ``imaging:export``;
- a report's record (status, versions, shares) is metadata: every view grade sees it;
- a report's rendered file is the patients' full-resolution pictures (radiographs too, in
  ``ceph_pano``), so downloading it is viewing originals: full ``imaging:view``. Read-only
  users may look at it; front desk (thumbnails only, no radiographs) and billing (no pixels)
  may not. It is not an export: the file stays inside the practice's signed-in users.
"""

from __future__ import annotations

from typing import Any

from domain.permissions import Grant, Permission
from permission_matrix import reports_targets as t
from permission_matrix.spec import Headers, Operation, Outcome, World, any_role, rest_outcome

P, G = Permission, Grant

REPORT = "query($id: ID!){ report(id: $id){ id status versions { version } } }"
REPORTS = "query($p: ID!){ reports(patientId: $p){ id status } }"
LAYOUTS = "{ reportLayouts { name parameters } }"
REVOKE = """mutation($r: ID!, $l: String!){ revokeReportShare(reportId: $r, linkId: $l){
  shares { linkId revoked } } }"""
SIMULATION = "query($id: ID!){ simulation(id: $id){ id status result } }"
SIMULATIONS = "query($p: ID!){ simulations(patientId: $p){ id kind status } }"
GROWTH = "mutation($i: GrowthForecastInput!){ runGrowthForecast(input: $i){ id status } }"
REVISE = "mutation($i: ReviseVtoInput!){ reviseVto(input: $i){ id revision } }"
SMILE = "mutation($i: SmileDesignInput!){ runSmileDesign(input: $i){ id status } }"
ANALYSE = "mutation($i: SetupFromScansInput!){ analyseSetup(input: $i){ id status } }"


def _pt(x: float, y: float) -> dict[str, float]:
    return {"x": x, "y": y}


# Clicks on the frontal smile photo (as in tests/test_simulation_api.py).
SMILE_CLICKS: dict[str, Any] = {
    "glabella": _pt(320, 50), "subnasale": _pt(320, 200), "chin": _pt(320, 420),
    "dentalMidline": _pt(322, 300),
    "incisalEdges": [_pt(290, 300), _pt(305, 305), _pt(322, 308), _pt(339, 305),
                     _pt(354, 300)],
    "lowerLip": [_pt(285, 320), _pt(322, 335), _pt(359, 320)],
    "rightContacts": [_pt(306, 300), _pt(296, 300), _pt(290, 300)],
    "leftContacts": [_pt(338, 300), _pt(348, 300), _pt(354, 300)],
}


def _get(world: World, headers: Headers, path: str) -> Outcome:
    return rest_outcome(world.client.get(path, headers=headers))


# --- reports ---------------------------------------------------------------------------------

def _report(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, REPORT, {"id": t.rendered_report(world)["id"]})


def _reports(world: World, headers: Headers) -> Outcome:
    t.rendered_report(world)  # a listing with a report in it, not an empty one
    return world.gql(headers, REPORTS, {"p": t.patient_id(world)})


def _layouts(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, LAYOUTS)


def _request_report(world: World, headers: Headers) -> Outcome:
    t.photo_id(world)
    return world.gql(headers, t.REQUEST_REPORT, {"input": t.report_input(world)})


def _share_report(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, t.SHARE, {"input": {"reportId": t.rendered_report(world)["id"]}})


def _revoke_share(world: World, headers: Headers) -> Outcome:
    link = t.new_share(world)  # fresh: every role meets a live link
    return world.gql(headers, REVOKE, {"r": t.rendered_report(world)["id"],
                                       "l": link["linkId"]})


def _download(world: World, headers: Headers) -> Outcome:
    return _get(world, headers, t.rendered_report(world)["download"])


def _by_link(world: World, headers: Headers) -> Outcome:
    # The signature is the authority: the bearer token sent along is ignored.
    return _get(world, headers, t.live_link(world))


# --- simulations -----------------------------------------------------------------------------

def _simulation(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, SIMULATION, {"id": t.vto_id(world)})


def _simulations(world: World, headers: Headers) -> Outcome:
    t.vto_id(world)
    return world.gql(headers, SIMULATIONS, {"p": t.patient_id(world)})


def _run_vto(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, t.VTO, {"input": t.vto_input(world)})


def _revise_vto(world: World, headers: Headers) -> Outcome:
    plan = t.new_vto(world)  # fresh: a revision consumes the expected revision
    return world.gql(headers, REVISE, {"i": {
        "simulationId": plan["id"], "expectedRevision": plan["revision"],
        "movements": [{"group": "mandible", "dxMm": 3.0}]}})


def _growth(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, GROWTH, {"i": {
        "patientId": t.patient_id(world), "landmarks": t.LANDMARKS,
        "mmPerPixel": t.MM_PER_PX, "years": 2, "age": 9}})


def _outcome_preview(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, t.PREVIEW, {"input": t.preview_input(world)})


def _smile_design(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, SMILE, {"i": {
        "patientId": t.patient_id(world), "photoImageId": t.photo_id(world), **SMILE_CLICKS}})


def _analyse_setup(world: World, headers: Headers) -> Outcome:
    upper = t.scan_ids(world)
    return world.gql(headers, ANALYSE, {"i": {
        "patientId": t.patient_id(world),
        "stages": [{"number": k + 1, "upperImageId": i} for k, i in enumerate(upper)]}})


def _import_setup(world: World, headers: Headers) -> Outcome:
    files = [(f"stage_{k + 1}_upper", (f"stage{k + 1}.stl", data, "model/stl"))
             for k, data in enumerate(t.stage_meshes(world))]
    return rest_outcome(world.client.post(
        f"/api/v1/patients/{t.patient_id(world)}/setups", files=files,
        data={"label": "matrix set-up"}, headers=headers))


def _output(world: World, headers: Headers) -> Outcome:
    return _get(world, headers,
                f"/api/v1/simulations/{t.finished_preview(world)}/outputs/preview.jpg")


def _export(world: World, headers: Headers) -> Outcome:
    return _get(world, headers,
                f"/api/v1/simulations/{t.finished_preview(world)}/export/preview.jpg")


def _csv(world: World, headers: Headers) -> Outcome:
    return _get(world, headers, f"/api/v1/simulations/{t.vto_id(world)}/report.csv")


def _pdf(world: World, headers: Headers) -> Outcome:
    return _get(world, headers, f"/api/v1/simulations/{t.vto_id(world)}/report.pdf")


def _overlay(world: World, headers: Headers) -> Outcome:
    return _get(world, headers, f"/api/v1/simulations/{t.vto_id(world)}/overlay.png")


METADATA = {P.VIEW: (G.THUMBNAILS, G.METADATA)}
# Simulation exports read the simulation (full view) and hand it out (export).
SIM_EXPORT = {P.VIEW: (), P.EXPORT: ()}

OPERATIONS = [
    # A report's record is metadata (the table: every role "views" reports).
    Operation("query report", METADATA, _report, not_found="report_not_found"),
    Operation("query reports", METADATA, _reports, not_found="patient_not_found"),
    # The catalogue of layouts: no clinic's data at all.
    Operation("query reportLayouts", any_role(), _layouts, takes_id=False),
    Operation("mutation requestReport", {P.EXPORT: ()}, _request_report,
              not_found="patient_not_found"),
    Operation("mutation shareReport", {P.EXPORT: ()}, _share_report,
              not_found="report_not_found"),
    Operation("mutation revokeReportShare", {P.EXPORT: ()}, _revoke_share,
              not_found="report_not_found"),
    # Judgement call (module docstring): the rendered file is full pictures, so full view.
    Operation("GET /api/v1/reports/{report_id}/download", {P.VIEW: ()}, _download,
              not_found="report_not_found"),
    # A signed public link: no sign-in, the same for everyone who holds it; it names one
    # clinic's report inside the signature (forgery, tampering, expiry, revocation and
    # another clinic's report: tests/test_reports.py, tests/test_permission_matrix_reports.py).
    Operation("GET /api/v1/report-links/{token}", any_role(), _by_link, takes_id=False),
    # Simulations are clinical analyses of cephs and photos, not image metadata: reading one,
    # or the list, needs full view (the limited grades see none; docs/simulation.md).
    Operation("query simulation", {P.VIEW: ()}, _simulation, not_found="simulation_not_found"),
    Operation("query simulations", {P.VIEW: ()}, _simulations, not_found="patient_not_found"),
    Operation("mutation runGrowthForecast", {P.CEPHALOMETRIC: ()}, _growth,
              not_found="patient_not_found"),
    Operation("mutation runVto", {P.CEPHALOMETRIC: ()}, _run_vto,
              not_found="patient_not_found"),
    Operation("mutation reviseVto", {P.CEPHALOMETRIC: ()}, _revise_vto,
              not_found="simulation_not_found"),
    Operation("mutation requestOutcomePreview", {P.CEPHALOMETRIC: ()}, _outcome_preview,
              not_found="patient_not_found"),
    # Smile design guides are an annotation layer on a photo.
    Operation("mutation runSmileDesign", {P.ANNOTATE: (G.OWN,)}, _smile_design,
              not_found="patient_not_found"),
    # A set-up brings 3D models in: capture (meshes are no document, so not the front desk's
    # limited grade) and 3D viewing.
    Operation("mutation analyseSetup", {P.CAPTURE: (), P.VIEW_3D: ()}, _analyse_setup,
              not_found="patient_not_found"),
    Operation("POST /api/v1/patients/{patient_id}/setups", {P.CAPTURE: (), P.VIEW_3D: ()},
              _import_setup, not_found="patient_not_found"),
    # A warped photo is clinical content: full view.
    Operation("GET /api/v1/simulations/{simulation_id}/outputs/{name}", {P.VIEW: ()}, _output,
              not_found="simulation_not_found"),
    Operation("GET /api/v1/simulations/{simulation_id}/export/{name}", SIM_EXPORT, _export,
              not_found="simulation_not_found"),
    Operation("GET /api/v1/simulations/{simulation_id}/report.csv", SIM_EXPORT, _csv,
              not_found="simulation_not_found"),
    Operation("GET /api/v1/simulations/{simulation_id}/report.pdf", SIM_EXPORT, _pdf,
              not_found="simulation_not_found"),
    Operation("GET /api/v1/simulations/{simulation_id}/overlay.png", SIM_EXPORT, _overlay,
              not_found="simulation_not_found"),
]
