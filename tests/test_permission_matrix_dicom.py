"""What the DICOM matrix entries cannot show by themselves.

QIDO searches take no id (a UID in their path is a matching key), so the matrix does not ask
another clinic for a 404: here another clinic's searches find none of this clinic's objects,
exactly as for a UID nobody stored. And the matrix's DICOMweb targets are a photograph, the
one kind the front desk may see: here a radiograph is hidden from it on every route its
grade otherwise opens, while billing's metadata grade still finds it.
"""

from __future__ import annotations

import pytest
from permission_matrix.dicom_targets import Study, photo_study, radiograph_study, upload_scan
from permission_matrix.spec import World

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def world(client, shared_settings) -> World:
    return World(client, shared_settings)


def _searches(study: Study) -> list[str]:
    return [f"/dicomweb/studies?StudyInstanceUID={study.study}", f"{study.url}/series",
            f"{study.url}/instances", f"{study.series_url}/instances"]


def _found(world: World, headers: dict[str, str], url: str) -> list[dict]:
    response = world.client.get(url, headers=headers)
    assert response.status_code == 200, (url, response.text)
    return response.json()


def test_another_clinics_searches_find_none_of_this_clinics_objects(world: World) -> None:
    study = photo_study(world)
    foreign = world.headers("super_admin", clinic=f"other-{world.clinic}")
    for url in _searches(study):
        assert _found(world, world.admin, url), url  # this clinic finds it
        assert _found(world, foreign, url) == [], url
    assert _found(world, foreign, "/dicomweb/studies") == []
    # Indistinguishable from a UID never stored anywhere.
    missing = Study("1.2.3.4", "1.2.3.5", "1.2.3.6")
    assert [_found(world, world.admin, url) for url in _searches(missing)] == [[]] * 4


def test_front_desk_sees_no_radiograph_on_any_dicomweb_route(world: World) -> None:
    xray, photo = radiograph_study(world), photo_study(world)
    front_desk, billing = world.headers("front_desk"), world.headers("billing")
    for url in _searches(xray):
        assert _found(world, front_desk, url) == [], url
        assert _found(world, billing, url), url  # metadata grade: radiographs included
    assert _found(world, front_desk, f"/dicomweb/studies?StudyInstanceUID={photo.study}")

    # Metadata and thumbnails of a radiograph: not found, as if it did not exist (the
    # searches hide it, so a 403 would only confirm what they hide).
    for path, code in (("/metadata", "study_not_found"), ("/thumbnail", "study_not_found")):
        for base, what in ((xray.url, "study"), (xray.series_url, "series"),
                           (xray.instance_url, "instance")):
            response = world.client.get(base + path, headers=front_desk)
            assert response.status_code == 404, (base + path, response.text)
            assert response.json()["code"] == code.replace("study", what)
        ok = world.client.get(photo.instance_url + path, headers=front_desk)
        assert ok.status_code == 200, ok.text
    assert world.client.get(f"{xray.url}/metadata", headers=billing).status_code == 200


DELETE = """mutation($i: DeleteImageInput!){ deleteImage(input: $i){ status } }"""
MESH = "query($id: ID!){ meshScan(imageId: $id){ format } }"


def test_a_soft_deleted_scan_is_gone_for_3d_viewers_without_full_delete(world: World) -> None:
    """GraphQL's 3D details follow the REST rule (``api/rest_scans._image_3d``): only a role
    that may restore a soft-deleted image still sees it."""
    response = upload_scan(world, world.admin)
    assert response.status_code in (200, 201), response.text
    image_id = response.json()["id"]
    world.setup_gql(DELETE, {"i": {"imageId": image_id, "reason": "wrong patient"}})
    doctor = world.headers("doctor")
    assert world.gql(doctor, MESH, {"id": image_id}).code == "image_not_found"
    model = world.client.get(f"/api/v1/images/{image_id}/model.glb", headers=doctor)
    assert (model.status_code, model.json()["code"]) == (404, "image_not_found")
    assert world.gql(world.admin, MESH, {"id": image_id}).code == "ok"
