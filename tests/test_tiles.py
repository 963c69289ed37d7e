"""DeepZoom tiles for large images: the real 21-megapixel ceph film opens tile by tile."""

from __future__ import annotations

import io
from pathlib import Path
from xml.etree import ElementTree

from PIL import Image

from conftest import graphql, jpeg_bytes, register_patient, stored_events, upload, wait_until
from domain.access import AccessRecord

CEPH = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "ceph" / "B1893L12.jpg"
NODE = """query($id: ID!){ image(id: $id){ thumbnailUrl } }"""


def test_large_images_get_a_tile_pyramid(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    image_id = upload(client, headers, patient_id, CEPH.read_bytes(),
                      fields={"category": "radiograph"}).json()["id"]
    base = f"/api/v1/images/{image_id}/tiles"
    dzi = wait_until(lambda: (r := client.get(f"{base}/image.dzi", headers=headers))
                     .status_code == 200 and r, timeout=60)
    size = ElementTree.fromstring(dzi.text).find("{http://schemas.microsoft.com/deepzoom/2008}Size")
    assert (size.get("Width"), size.get("Height")) == ("4096", "5120")
    top = client.get(f"{base}/image_files/13/0_0.jpg", headers=headers)
    assert top.status_code == 200
    assert Image.open(io.BytesIO(top.content)).size == (255, 255)  # 254 + 1 px overlap
    corner = client.get(f"{base}/image_files/13/16_20.jpg", headers=headers)
    assert corner.status_code == 200
    single = Image.open(io.BytesIO(client.get(f"{base}/image_files/0/0_0.jpg",
                                              headers=headers).content))
    assert single.size == (1, 1)
    for bad in ("13/99_99.jpg", "13/../../x.jpg", "99/0_0.jpg"):
        assert client.get(f"{base}/image_files/{bad}", headers=headers).status_code == 404
    kinds = [r.kind for r in stored_events(client, AccessRecord.Recorded)
             if str(r.image_id) == image_id]
    assert "tiles" in kinds
    front = client.get(f"{base}/image.dzi", headers=auth("front_desk"))
    assert front.status_code in (403, 404)


def test_small_images_have_no_pyramid(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    image_id = upload(client, headers, patient_id, jpeg_bytes(seed=71)).json()["id"]
    wait_until(lambda: graphql(client, headers, NODE, {"id": image_id})["data"]["image"][
        "thumbnailUrl"])
    r = client.get(f"/api/v1/images/{image_id}/tiles/image.dzi", headers=headers)
    assert (r.status_code, r.json()["code"]) == (404, "no_tiles")
