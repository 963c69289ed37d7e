from conftest import GALLERY, graphql, jpeg_bytes, register_patient, upload, wait_until


def test_upload_to_thumbnail(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    response = upload(client, headers, patient_id, jpeg_bytes(), fields={"view": "IV07"})
    assert response.status_code == 201, response.text
    image_id = response.json()["id"]

    def thumbnail_url():
        page = graphql(client, headers, GALLERY, {"id": patient_id, "first": 10})
        node = page["data"]["patient"]["images"]["edges"][0]["node"]
        return node["thumbnailUrl"]

    url = wait_until(thumbnail_url)
    assert url == f"/api/v1/images/{image_id}/thumbnail"
    got = client.get(url, headers=headers)
    assert got.status_code == 200
    assert got.content[:3] == b"\xff\xd8\xff"
