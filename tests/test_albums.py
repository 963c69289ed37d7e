"""Albums: create, rename, nest, add/remove/reorder images, as events; clinic-scoped."""

from __future__ import annotations

from organisation_support import add_image, error_code, ok

from conftest import register_patient, stored_events
from domain.album import Album

CREATE = """mutation($input: CreateAlbumInput!) {
  createAlbum(input: $input) { id name parentId imageCount } }"""
ADD = """mutation($input: AlbumImagesInput!) {
  addImagesToAlbum(input: $input) { id imageCount images(first: 10) {
    edges { node { id } } pageInfo { hasNextPage endCursor } } } }"""
REORDER = """mutation($input: AlbumImagesInput!) {
  reorderAlbum(input: $input) { images(first: 10) { edges { node { id } } } } }"""
REMOVE = """mutation($input: AlbumImageInput!) {
  removeImageFromAlbum(input: $input) { imageCount
    images(first: 10) { edges { node { id } } } } }"""
RENAME = """mutation($input: RenameAlbumInput!) { renameAlbum(input: $input) { id name } }"""
MOVE = """mutation($input: MoveAlbumInput!) { moveAlbum(input: $input) { id parentId } }"""
ALBUM = """query($id: ID!, $after: String) { album(id: $id) { name imageCount
  images(first: 2, after: $after) { edges { node { id category } }
  pageInfo { hasNextPage endCursor } } children { name } } }"""
ALBUMS = """query { albums { name imageCount } }"""
DESTROY = """mutation($input: DestroyImageInput!) { destroyImage(input: $input) { id } }"""


def _ids(album: dict) -> list[str]:
    return [e["node"]["id"] for e in album["images"]["edges"]]


def test_album_life_cycle_as_events(client, auth):
    staff = auth("clinical_staff")
    patient = register_patient(client, staff)
    images = [add_image(client, staff, patient) for _ in range(3)]
    album = ok(client, staff, CREATE, {"input": {"name": "  Debond   smiles "}})["createAlbum"]
    assert album["name"] == "Debond smiles" and album["imageCount"] == 0
    added = ok(client, staff, ADD, {"input": {"albumId": album["id"], "imageIds": images}})
    assert _ids(added["addImagesToAlbum"]) == images
    # Adding again is harmless: no duplicate, no event.
    again = ok(client, staff, ADD, {"input": {"albumId": album["id"], "imageIds": images[:1]}})
    assert again["addImagesToAlbum"]["imageCount"] == 3

    order = [images[2], images[0], images[1]]
    reordered = ok(client, staff, REORDER, {"input": {"albumId": album["id"], "imageIds": order}})
    assert _ids(reordered["reorderAlbum"]) == order

    removed = ok(client, staff, REMOVE, {"input": {"albumId": album["id"], "imageId": images[0]}})
    assert removed["removeImageFromAlbum"]["imageCount"] == 2
    assert _ids(removed["removeImageFromAlbum"]) == [images[2], images[1]]

    renamed = ok(client, staff, RENAME, {"input": {"albumId": album["id"], "name": "Debond"}})
    assert renamed["renameAlbum"]["name"] == "Debond"

    # Cursor pagination follows the album's order.
    first = ok(client, staff, ALBUM, {"id": album["id"]})["album"]
    assert first["images"]["pageInfo"]["hasNextPage"] is False
    assert _ids(first) == [images[2], images[1]]

    mine = [e for e in stored_events(client, Album.ImageAdded) if e.originator_id.hex ==
            album["id"].replace("-", "")]
    assert len(mine) == 3  # the repeated add recorded nothing
    assert any(str(e.originator_id) == album["id"] for e in stored_events(client, Album.Reordered))


def test_nesting_and_cycles(client, auth):
    staff = auth("doctor")
    parent = ok(client, staff, CREATE, {"input": {"name": "Case studies"}})["createAlbum"]
    child = ok(client, staff, CREATE, {"input": {"name": "Class II",
                                                 "parentId": parent["id"]}})["createAlbum"]
    assert child["parentId"] == parent["id"]
    listed = ok(client, staff, ALBUM, {"id": parent["id"]})["album"]
    assert listed["children"] == [{"name": "Class II"}]
    assert ok(client, staff, ALBUMS, {})["albums"] == [{"name": "Case studies", "imageCount": 0}]
    assert error_code(client, staff, MOVE, {"input": {"albumId": parent["id"],
                                                      "parentId": child["id"]}}) == "album_cycle"
    moved = ok(client, staff, MOVE, {"input": {"albumId": child["id"], "parentId": None}})
    assert moved["moveAlbum"]["parentId"] is None


def test_bad_input_and_permissions(client, auth):
    staff = auth("clinical_staff")
    patient = register_patient(client, staff)
    image = add_image(client, staff, patient)
    album = ok(client, staff, CREATE, {"input": {"name": "Progress"}})["createAlbum"]
    cases = [
        (CREATE, {"input": {"name": "   "}}, "invalid_album_name"),
        (CREATE, {"input": {"name": "x" * 121}}, "invalid_album_name"),
        (ADD, {"input": {"albumId": album["id"], "imageIds": []}}, "no_images"),
        (ADD, {"input": {"albumId": album["id"], "imageIds": [image, image]}},
         "duplicate_images"),
        (ADD, {"input": {"albumId": "not-a-uuid", "imageIds": [image]}}, "invalid_id"),
        (ADD, {"input": {"albumId": album["id"],
                         "imageIds": ["00000000-0000-4000-8000-000000000000"]}},
         "image_not_found"),
        (REORDER, {"input": {"albumId": album["id"], "imageIds": [image]}}, "invalid_order"),
        (REMOVE, {"input": {"albumId": album["id"], "imageId": image}}, "image_not_in_album"),
        (ALBUM, {"id": album["id"], "after": "garbage"}, "invalid_cursor"),
    ]
    for query, variables, code in cases:
        assert error_code(client, staff, query, variables) == code, (variables, code)
    # Nothing half-stored: the album is still empty and the server keeps serving.
    assert ok(client, staff, ALBUM, {"id": album["id"]})["album"]["imageCount"] == 0
    # Roles without annotate may not organise.
    for role in ("front_desk", "billing", "read_only"):
        assert error_code(client, auth(role), CREATE, {"input": {"name": "x"}}) == \
            "permission_denied"


def test_another_clinics_album_and_images_are_not_found(client, auth):
    mine, theirs = auth("doctor"), auth("doctor", "clinic-other-albums")
    patient = register_patient(client, mine)
    image = add_image(client, mine, patient)
    album = ok(client, mine, CREATE, {"input": {"name": "Mine"}})["createAlbum"]
    their_album = ok(client, theirs, CREATE, {"input": {"name": "Theirs"}})["createAlbum"]
    assert error_code(client, theirs, ALBUM, {"id": album["id"]}) == "album_not_found"
    assert error_code(client, theirs, ADD, {"input": {"albumId": album["id"],
                                                      "imageIds": [image]}}) == "album_not_found"
    # Their album cannot take my image either (my image does not exist for them).
    assert error_code(client, theirs, ADD, {"input": {"albumId": their_album["id"],
                                                      "imageIds": [image]}}) == "image_not_found"
    assert "Mine" not in str(ok(client, theirs, ALBUMS, {}))


def test_front_desk_sees_no_radiographs_in_albums(client, auth):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    photo = add_image(client, doctor, patient)
    xray = add_image(client, doctor, patient, category="radiograph")
    album = ok(client, doctor, CREATE, {"input": {"name": "Records"}})["createAlbum"]
    ok(client, doctor, ADD, {"input": {"albumId": album["id"], "imageIds": [photo, xray]}})
    seen = ok(client, auth("front_desk"), ALBUM, {"id": album["id"]})["album"]
    assert [e["node"]["id"] for e in seen["images"]["edges"]] == [photo]


def test_destroyed_image_leaves_its_albums(client, auth):
    admin = auth("clinic_admin")
    patient = register_patient(client, admin)
    keep, destroy = add_image(client, admin, patient), add_image(client, admin, patient)
    album = ok(client, admin, CREATE, {"input": {"name": "Short-lived"}})["createAlbum"]
    ok(client, admin, ADD, {"input": {"albumId": album["id"], "imageIds": [keep, destroy]}})
    ok(client, admin, DESTROY, {"input": {"imageId": destroy, "reason": "retention ended"}})
    seen = ok(client, admin, ALBUM, {"id": album["id"]})["album"]
    assert seen["imageCount"] == 1 and [e["node"]["id"] for e in seen["images"]["edges"]] == [keep]
    # Ordering what is left works (the destroyed image is dropped from the album first),
    # and the count stays right.
    ok(client, admin, REORDER, {"input": {"albumId": album["id"], "imageIds": [keep]}})
    assert ok(client, admin, ALBUM, {"id": album["id"]})["album"]["imageCount"] == 1


def test_racing_additions_all_land(client, auth, clinic):
    """Two clinicians adding to one album at once: the loser re-runs on the fresh album."""
    from concurrent.futures import ThreadPoolExecutor
    from uuid import UUID

    from domain.values import Actor

    staff = auth("clinical_staff")
    patient = register_patient(client, staff)
    images = [add_image(client, staff, patient) for _ in range(8)]
    album = ok(client, staff, CREATE, {"input": {"name": "Race"}})["createAlbum"]
    services = client.app.state.services
    album_id = UUID(album["id"])

    def add(index: int) -> int:
        actor = Actor(f"user-{index % 2}", "clinical_staff", clinic)
        return services.app.add_to_album(actor, album_id, [UUID(images[index])]).position

    with ThreadPoolExecutor(max_workers=2) as pool:
        positions = list(pool.map(add, range(len(images))))
    assert services.wait_for_read_models(max(positions), services.albums)
    assert sorted(map(str, services.app.album(Actor("u", "doctor", clinic), album_id)
                      .image_ids)) == sorted(images)
    seen = ok(client, staff, ALBUM, {"id": album["id"]})["album"]
    assert seen["imageCount"] == len(images)
