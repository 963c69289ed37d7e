"""What the reports area's entries act on: a patient with a photo and two scans, a rendered
report and a live share link, a VTO and an outcome preview whose worker has finished.

Everything is built as the clinic admin, once per world, in a patient of its own so other
areas' counts are untouched. Rendering and warping happen in background workers: the
builders wait for the finished state (as ``tests/test_reports.py`` and
``tests/test_simulation_api.py`` do) so a permitted download really gets bytes.
"""

from __future__ import annotations

from typing import Any

from conftest import graphql, jpeg_bytes, register_patient, upload, wait_until
from permission_matrix.spec import World

# The tracing of tests/test_simulation_api.py: mm with S at the origin, passed at 0.25 mm/px.
MM_PER_PX = 0.25
TRACING_MM = {
    "S": (0, 0), "N": (70, 0), "Po": (-10, 20), "Or": (60, 28),
    "A": (65, 50), "B": (52, 90), "Pog": (57, 100), "Gn": (55, 110), "Me": (45, 117),
    "Go": (-5, 82), "Ar": (-20, 32), "Co": (-8, 27), "ANS": (74, 47), "PNS": (22, 49),
    "U1": (68, 82), "U1_apex": (58, 52), "L1": (60, 79), "L1_apex": (42, 103),
    "Prn": (95, 45), "Sn": (82, 55), "UL": (84, 72), "LL": (80, 88), "Pog_s": (72, 108),
    "N_s": (78, 2),
}  # fmt: skip
LANDMARKS = [{"code": c, "x": x / MM_PER_PX, "y": y / MM_PER_PX}
             for c, (x, y) in TRACING_MM.items()]
MOVEMENTS = [{"group": "mandible", "dxMm": 2.0}]
# The profile photo is the tracing scaled by 0.5 and shifted by (100, 50) px.
TRACING_CLICKS = [{"x": TRACING_MM[c][0] / MM_PER_PX, "y": TRACING_MM[c][1] / MM_PER_PX}
                  for c in ("S", "N", "Me", "Prn")]
PHOTO_CLICKS = [{"x": p["x"] * 0.5 + 100, "y": p["y"] * 0.5 + 50} for p in TRACING_CLICKS]

REQUEST_REPORT = """mutation($input: RequestReportInput!) {
  requestReport(input: $input) { id status } }"""
REPORT = """query($id: ID!) { report(id: $id) { id status versions { version downloadUrl } } }"""
SHARE = """mutation($input: ShareReportInput!) {
  shareReport(input: $input) { linkId url version } }"""
SIMULATION = """query($id: ID!) { simulation(id: $id) { id status revision
  outputs { name } } }"""
VTO = """mutation($input: VtoInput!) { runVto(input: $input) { id revision status } }"""
PREVIEW = """mutation($input: OutcomePreviewInput!) {
  requestOutcomePreview(input: $input) { id status } }"""


def patient_id(world: World) -> str:
    return world.once("reports:patient", lambda w: register_patient(w.client, w.admin))


def photo_id(world: World) -> str:
    """A frontal extraoral raster photo: the report shows it, smile design and outcome
    previews are drawn on it."""

    def build(w: World) -> str:
        response = upload(w.client, w.admin, patient_id(w), jpeg_bytes(640, 480, seed=11),
                          fields={"view": "EV19", "category": "extraoral"})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    return world.once("reports:photo", build)


# --- reports ---------------------------------------------------------------------------------

def report_input(world: World) -> dict[str, Any]:
    return {"patientId": patient_id(world), "layout": "before_after", "view": "EV19"}


def rendered_report(world: World) -> dict[str, Any]:
    """A report whose first version the renderer has stored (id, downloadUrl)."""

    def build(w: World) -> dict[str, Any]:
        photo_id(w)
        report_id = w.setup_gql(REQUEST_REPORT, {"input": report_input(w)}
                                )["requestReport"]["id"]

        def done() -> dict[str, Any] | None:
            node = graphql(w.client, w.admin, REPORT, {"id": report_id})["data"]["report"]
            assert node["status"] != "failed", node
            return node if node["status"] == "rendered" and node["versions"] else None

        wait_until(done, timeout=90)
        return {"id": report_id, "download": f"/api/v1/reports/{report_id}/download"}

    return world.once("reports:report", build)


def new_share(world: World) -> dict[str, Any]:
    """A fresh link to the rendered report (linkId, url)."""
    report_id = rendered_report(world)["id"]
    return world.setup_gql(SHARE, {"input": {"reportId": report_id}})["shareReport"]


def live_link(world: World) -> str:
    return world.once("reports:link", lambda w: new_share(w)["url"])


# --- simulations -----------------------------------------------------------------------------

def vto_input(world: World) -> dict[str, Any]:
    return {"patientId": patient_id(world), "landmarks": LANDMARKS, "mmPerPixel": MM_PER_PX,
            "movements": MOVEMENTS, "label": "matrix plan"}


def new_vto(world: World) -> dict[str, Any]:
    """A VTO (computed in the request, so completed at once): id and revision."""
    return world.setup_gql(VTO, {"input": vto_input(world)})["runVto"]


def vto_id(world: World) -> str:
    return world.once("reports:vto", lambda w: new_vto(w)["id"])


def preview_input(world: World) -> dict[str, Any]:
    return {"patientId": patient_id(world), "photoImageId": photo_id(world),
            "sourceSimulationId": vto_id(world), "photoPoints": PHOTO_CLICKS,
            "tracingPoints": TRACING_CLICKS}


def finished_preview(world: World) -> str:
    """An outcome preview whose images the simulation worker has recorded."""

    def build(w: World) -> str:
        sim_id = w.setup_gql(PREVIEW, {"input": preview_input(w)})["requestOutcomePreview"]["id"]

        def done() -> dict[str, Any] | None:
            node = graphql(w.client, w.admin, SIMULATION, {"id": sim_id})["data"]["simulation"]
            return node if node["status"] != "pending" else None

        node = wait_until(done, timeout=90)
        assert node["status"] == "completed", node
        assert "preview.jpg" in {o["name"] for o in node["outputs"]}, node
        return sim_id

    return world.once("reports:preview", build)


def stage_meshes(world: World) -> list[bytes]:
    """Two aligner stages of one arch as STL: a sphere moved 0.2 mm between them."""

    def build(_w: World) -> list[bytes]:
        import numpy as np
        import trimesh

        sphere = trimesh.creation.icosphere(subdivisions=2)
        sphere.vertices *= 12.0
        return [trimesh.Trimesh(sphere.vertices + np.array([0.2 * k, 0, 0]), sphere.faces,
                                process=False).export(file_type="stl") for k in range(2)]

    return world.once("reports:meshes", build)


def scan_ids(world: World) -> list[str]:
    """The two stages uploaded as scans into the patient's gallery."""

    def build(w: World) -> list[str]:
        ids = []
        for k, data in enumerate(stage_meshes(w)):
            response = w.client.post(f"/api/v1/patients/{patient_id(w)}/scans",
                                     files={"file": (f"stage{k + 1}.stl", data, "model/stl")},
                                     data={"arch": "upper"}, headers=w.admin)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        return ids

    return world.once("reports:scans", build)
