"""Every role against every operation, cross-clinic invisibility, and token checks.

The expected outcomes are written out here by hand from the practice's permission table
(ARCHITECTURE.md), not derived from domain/permissions.py, so a wrong table fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import (
    TEST_TOKEN_SECRET,
    bearer,
    graphql,
    jpeg_bytes,
    register_patient,
    token_for,
    upload,
    wait_until,
)

ROLES = ["super_admin", "clinic_admin", "doctor", "clinical_staff", "front_desk", "billing",
         "read_only"]
OK = "ok"

# operation -> role -> expected outcome ("ok" or the stable error code)
EXPECTED = {
    "register_patient": {"super_admin": OK, "clinic_admin": OK, "doctor": OK,
                         "clinical_staff": OK, "front_desk": OK, "billing": "permission_denied",
                         "read_only": "permission_denied"},
    "upload_photo": {"super_admin": OK, "clinic_admin": OK, "doctor": OK, "clinical_staff": OK,
                     "front_desk": "capture_limited", "billing": "permission_denied",
                     "read_only": "permission_denied"},
    "upload_document": {"super_admin": OK, "clinic_admin": OK, "doctor": OK,
                        "clinical_staff": OK, "front_desk": OK, "billing": "permission_denied",
                        "read_only": "permission_denied"},
    "gallery": {role: OK for role in ROLES},
    "thumbnail": {"super_admin": OK, "clinic_admin": OK, "doctor": OK, "clinical_staff": OK,
                  "front_desk": OK, "billing": "permission_denied", "read_only": OK},
    "preview": {"super_admin": OK, "clinic_admin": OK, "doctor": OK, "clinical_staff": OK,
                "front_desk": "permission_denied", "billing": "permission_denied",
                "read_only": OK},
    "original": {"super_admin": OK, "clinic_admin": OK, "doctor": OK, "clinical_staff": OK,
                 "front_desk": "permission_denied", "billing": "permission_denied",
                 "read_only": OK},
    "tag": {"super_admin": OK, "clinic_admin": OK, "doctor": OK, "clinical_staff": OK,
            "front_desk": "permission_denied", "billing": "permission_denied",
            "read_only": "permission_denied"},
    "delete": {"super_admin": OK, "clinic_admin": OK, "doctor": "approval_required",
               "clinical_staff": "permission_denied", "front_desk": "permission_denied",
               "billing": "permission_denied", "read_only": "permission_denied"},
    "destroy": {"super_admin": OK, "clinic_admin": OK, "doctor": "approval_required",
                "clinical_staff": "permission_denied", "front_desk": "permission_denied",
                "billing": "permission_denied", "read_only": "permission_denied"},
}

REGISTER = """mutation($i: RegisterPatientInput!){ registerPatient(input: $i){ id } }"""
TAG = """mutation($i: TagImageInput!){ tagImage(input: $i){ id tags } }"""
DELETE = """mutation($i: DeleteImageInput!){ deleteImage(input: $i){ id status } }"""
RESTORE = """mutation($i: RestoreImageInput!){ restoreImage(input: $i){ id status } }"""
DESTROY = """mutation($i: DestroyImageInput!){ destroyImage(input: $i){ id } }"""
IMAGES = """query($id: ID!){ patient(id: $id){ images(first: 10){ edges { node {
    id category thumbnailUrl previewUrl originalUrl } } } } }"""
IMAGE = """query($id: ID!){ image(id: $id){ id } }"""
PATIENT = """query($id: ID!){ patient(id: $id){ id givenName } }"""


def _gql_outcome(result):
    if result.get("errors"):
        return result["errors"][0]["extensions"]["code"]
    return OK


def _rest_outcome(response):
    return OK if response.status_code in (200, 201) else response.json()["code"]


@pytest.fixture
def setting(client, auth):
    """A patient with a photo (derivatives ready) in this test's clinic."""
    admin = auth("clinic_admin")
    patient_id = register_patient(client, admin)
    image_id = upload(client, admin, patient_id, jpeg_bytes()).json()["id"]
    wait_until(lambda: graphql(client, admin, IMAGES, {"id": patient_id})["data"]["patient"]
               ["images"]["edges"][0]["node"]["thumbnailUrl"])
    return patient_id, image_id


def _fresh_image(client, auth, patient_id):
    return upload(client, auth("clinic_admin"), patient_id, jpeg_bytes(seed=5)).json()["id"]


@pytest.mark.parametrize("role", ROLES)
def test_every_role_against_every_operation(client, auth, setting, role):
    patient_id, image_id = setting
    headers = auth(role)
    outcomes = {}
    outcomes["register_patient"] = _gql_outcome(graphql(client, headers, REGISTER, {"i": {
        "externalId": "E1", "givenName": "A", "familyName": "B", "birthDate": "2010-01-01",
        "sex": "male"}}))
    outcomes["upload_photo"] = _rest_outcome(upload(client, headers, patient_id, jpeg_bytes()))
    outcomes["upload_document"] = _rest_outcome(
        upload(client, headers, patient_id, jpeg_bytes(), fields={"category": "document"}))
    gallery = graphql(client, headers, IMAGES, {"id": patient_id})
    outcomes["gallery"] = _gql_outcome(gallery)
    for kind in ("thumbnail", "preview", "original"):
        outcomes[kind] = _rest_outcome(client.get(f"/api/v1/images/{image_id}/{kind}",
                                                  headers=headers))
    outcomes["tag"] = _gql_outcome(graphql(client, headers, TAG,
                                           {"i": {"imageId": image_id, "tag": "t"}}))
    victim = _fresh_image(client, auth, patient_id)
    outcomes["delete"] = _gql_outcome(graphql(client, headers, DELETE, {"i": {"imageId": victim}}))
    victim = _fresh_image(client, auth, patient_id)
    outcomes["destroy"] = _gql_outcome(graphql(client, headers, DESTROY,
                                               {"i": {"imageId": victim, "reason": "test"}}))
    assert outcomes == {op: EXPECTED[op][role] for op in EXPECTED}

    # Limited view grades see less, not nothing.
    node = gallery["data"]["patient"]["images"]["edges"][0]["node"]
    if role == "billing":
        assert node["thumbnailUrl"] is None and node["originalUrl"] is None
    if role == "front_desk":
        assert node["thumbnailUrl"] and node["originalUrl"] is None


def test_front_desk_never_sees_radiographs(client, auth):
    admin = auth("clinic_admin")
    patient_id = register_patient(client, admin)
    xray = upload(client, admin, patient_id, jpeg_bytes(), fields={"category": "radiograph"})
    photo = upload(client, admin, patient_id, jpeg_bytes(seed=2))
    front = auth("front_desk")
    ids = [e["node"]["id"] for e in graphql(client, front, IMAGES, {"id": patient_id})
           ["data"]["patient"]["images"]["edges"]]
    assert ids == [photo.json()["id"]]
    assert graphql(client, front, IMAGE, {"id": xray.json()["id"]})["errors"][0][
        "extensions"]["code"] == "image_not_found"
    wait_until(lambda: client.get(f"/api/v1/images/{xray.json()['id']}/thumbnail",
                                  headers=admin).status_code == 200)
    r = client.get(f"/api/v1/images/{xray.json()['id']}/thumbnail", headers=front)
    assert r.status_code == 403 and r.json()["code"] == "radiographs_restricted"


def test_delete_and_restore(client, auth):
    admin = auth("clinic_admin")
    patient_id = register_patient(client, admin)
    image_id = upload(client, admin, patient_id, jpeg_bytes()).json()["id"]
    deleted = graphql(client, admin, DELETE, {"i": {"imageId": image_id, "reason": "blurred"}})
    assert deleted["data"]["deleteImage"]["status"] == "deleted"
    assert graphql(client, admin, IMAGES, {"id": patient_id})["data"]["patient"]["images"][
        "edges"] == []
    assert _gql_outcome(graphql(client, admin, TAG, {"i": {"imageId": image_id, "tag": "x"}})) \
        == "image_deleted"
    assert _gql_outcome(graphql(client, admin, DELETE, {"i": {"imageId": image_id}})) \
        == "image_deleted"
    restored = graphql(client, admin, RESTORE, {"i": {"imageId": image_id}})
    assert restored["data"]["restoreImage"]["status"] == "active"
    assert _gql_outcome(graphql(client, admin, RESTORE, {"i": {"imageId": image_id}})) \
        == "image_not_deleted"


def test_another_clinics_data_is_invisible(client, auth, setting):
    patient_id, image_id = setting
    outsider = auth("super_admin", clinic_id="some-other-clinic")
    assert _gql_outcome(graphql(client, outsider, PATIENT, {"id": patient_id})) \
        == "patient_not_found"
    assert _gql_outcome(graphql(client, outsider, IMAGE, {"id": image_id})) == "image_not_found"
    for kind in ("thumbnail", "preview", "original"):
        r = client.get(f"/api/v1/images/{image_id}/{kind}", headers=outsider)
        assert (r.status_code, r.json()["code"]) == (404, "image_not_found")
    r = upload(client, outsider, patient_id, jpeg_bytes())
    assert (r.status_code, r.json()["code"]) == (404, "patient_not_found")
    for query, variables, code in [
        (TAG, {"i": {"imageId": image_id, "tag": "x"}}, "image_not_found"),
        ("""mutation($i: TagImageInput!){ untagImage(input: $i){ id } }""",
         {"i": {"imageId": image_id, "tag": "x"}}, "image_not_found"),
        (DELETE, {"i": {"imageId": image_id}}, "image_not_found"),
        (RESTORE, {"i": {"imageId": image_id}}, "image_not_found"),
        (DESTROY, {"i": {"imageId": image_id, "reason": "x"}}, "image_not_found"),
        ("""mutation($i: GrantConsentInput!){ grantConsent(input: $i){ id } }""",
         {"i": {"patientId": patient_id, "scope": "MARKETING"}}, "patient_not_found"),
        ("""mutation($i: RevokeConsentInput!){ revokeConsent(input: $i){ id } }""",
         {"i": {"patientId": patient_id, "scope": "MARKETING"}}, "patient_not_found"),
    ]:
        assert _gql_outcome(graphql(client, outsider, query, variables)) == code
    # And the owner still sees everything untouched.
    owner = auth("clinic_admin")
    assert graphql(client, owner, IMAGE, {"id": image_id})["data"]["image"]["id"] == image_id


def _forged(claims, key=TEST_TOKEN_SECRET, algorithm="HS256"):
    base = {"sub": "u", "clinic": "c", "role": "doctor", "iss": "orthovault",
            "aud": "orthovault", "iat": int(time.time()), "exp": int(time.time()) + 600}
    base.update(claims)
    base = {name: value for name, value in base.items() if value is not None}
    if algorithm == "HS256" and isinstance(key, bytes):
        # PyJWT refuses to HMAC with a PEM key (its own confusion guard); an attacker's
        # library would not, so sign by hand.
        header = {"alg": "HS256", "typ": "JWT"}
        signing_input = b".".join(base64.urlsafe_b64encode(json.dumps(part).encode())
                                  .rstrip(b"=") for part in (header, base))
        signature = hmac.new(key, signing_input, hashlib.sha256).digest()
        return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")
                ).decode()
    return jwt.encode(base, key, algorithm=algorithm)


# HS/RS confusion: a server that also took RS256 would verify with its public key; an
# attacker then HMACs a token with that public key. We take HS256 with our secret only.
_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_RSA_PUBLIC_PEM = _RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("token", [
    None, "", "garbage", _forged({}, key="wrong-key-" + "y" * 32),
    _forged({"exp": int(time.time()) - 10}), _forged({"role": "janitor"}),
    _forged({"aud": "someone-else"}), _forged({"clinic": ""}),
    jwt.encode({"sub": "u", "clinic": "c", "role": "doctor"}, None, algorithm="none"),
    _forged({}, key=_RSA_KEY, algorithm="RS256"),
    _forged({}, key=_RSA_PUBLIC_PEM, algorithm="HS256"),
    _forged({}, algorithm="HS512"),
    _forged({"iss": "someone-else"}),
    _forged({"nbf": int(time.time()) + 3600}),
    _forged({"exp": None}),
], ids=["missing", "empty", "garbage", "wrong-signature", "expired", "unknown-role",
        "wrong-audience", "no-clinic", "alg-none", "rs256", "hs-keyed-with-rsa-public-key",
        "hs512-right-secret", "wrong-issuer", "not-yet-valid", "no-expiry"])
def test_bad_tokens_get_401(client, token):
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    r = client.get("/api/v1/images/00000000-0000-4000-8000-000000000000/thumbnail",
                   headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["code"] in {"missing_token", "invalid_token", "invalid_token_signature",
                                "token_expired"}
    g = client.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    assert g.status_code == 401


def test_valid_token_works(client, shared_settings):
    headers = bearer(token_for(shared_settings, "doctor", "c9"))
    assert client.post("/graphql", json={"query": "{ __typename }"},
                       headers=headers).status_code == 200
