"""Organisation and compliance: albums, tags, search, consent, deletion approval, retention,
legal holds and the audit.

Every target here is this area's own (its own patient and images), never the world's
shared patient or image: a legal hold, a revoked consent or a pending deletion request on
those would change what other areas' operations meet.
"""

from __future__ import annotations

import uuid

from organisation_support import add_image

from conftest import register_patient
from domain.permissions import Grant, Permission
from permission_matrix.spec import Headers, Operation, Outcome, World, rest_outcome

P, G = Permission, Grant
# Metadata-only reads: front desk (thumbnails + metadata) and billing (metadata) pass.
METADATA_VIEW = {P.VIEW: (G.THUMBNAILS, G.METADATA)}
# Organising a gallery is an edit, like tagging: clinical staff's OWN grade edits anyone's.
ORGANISE = {P.ANNOTATE: (G.OWN,)}
ADMIN = {P.ADMIN: ()}


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---- this area's targets (built as the clinic admin) -------------------------------------

def _patient(world: World) -> str:
    return world.once("org:patient", lambda w: register_patient(w.client, w.admin))


def _images(world: World) -> list[str]:
    """Two photos of the area's patient, read-only for every operation."""
    return world.once("org:images", lambda w: [add_image(w.client, w.admin, _patient(w))
                                               for _ in range(2)])


CREATE_ALBUM = """mutation($i: CreateAlbumInput!){ createAlbum(input: $i){ id } }"""
ADD_IMAGES = """mutation($i: AlbumImagesInput!){ addImagesToAlbum(input: $i){ id } }"""


def _new_album(world: World, parent_id: str | None = None, images: bool = False) -> str:
    album_id = world.setup_gql(CREATE_ALBUM, {"i": {"name": _unique("album"),
                                                    "parentId": parent_id}}
                               )["createAlbum"]["id"]
    if images:
        world.setup_gql(ADD_IMAGES, {"i": {"albumId": album_id, "imageIds": _images(world)}})
    return album_id


def _album(world: World) -> str:
    return world.once("org:album", lambda w: _new_album(w, images=True))


def _parent_album(world: World) -> str:
    return world.once("org:parent-album", _new_album)


def _pending_request(world: World, image_id: str) -> None:
    """A doctor asks; the admins then decide (two-person rule: nobody decides their own)."""
    result = world.gql(world.headers("doctor"), REQUEST_DELETION,
                       {"i": {"imageId": image_id, "reason": "duplicate upload"}})
    assert result.code == "ok", result


def _requested_image(world: World) -> str:
    image_id = add_image(world.client, world.admin, _patient(world))
    _pending_request(world, image_id)
    return image_id


def _fresh_patient(world: World) -> str:
    return register_patient(world.client, world.admin)


# ---- albums -------------------------------------------------------------------------------

def _query_album(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """query($id: ID!){ album(id: $id){ id name imageCount
        images(first: 5){ edges { node { id } } } children { id } } }""",
                     {"id": _album(world)})


def _query_albums(world: World, headers: Headers) -> Outcome:
    _album(world)
    return world.gql(headers, "query{ albums { id name imageCount } }")


def _create_album(world: World, headers: Headers) -> Outcome:
    # Under this clinic's album, so the entry also addresses an id of the clinic.
    return world.gql(headers, CREATE_ALBUM, {"i": {"name": _unique("new"),
                                                   "parentId": _parent_album(world)}})


def _add_images(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, ADD_IMAGES, {"i": {"albumId": _new_album(world),
                                                 "imageIds": _images(world)}})


def _remove_image(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """mutation($i: AlbumImageInput!){
        removeImageFromAlbum(input: $i){ id imageCount } }""",
                     {"i": {"albumId": _new_album(world, images=True),
                            "imageId": _images(world)[0]}})


def _archive_album(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """mutation($i: AlbumIdInput!){
        archiveAlbum(input: $i){ id archived } }""", {"i": {"albumId": _new_album(world)}})


def _move_album(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """mutation($i: MoveAlbumInput!){
        moveAlbum(input: $i){ id parentId } }""",
                     {"i": {"albumId": _new_album(world), "parentId": _parent_album(world)}})


def _rename_album(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """mutation($i: RenameAlbumInput!){
        renameAlbum(input: $i){ id name } }""",
                     {"i": {"albumId": _new_album(world), "name": _unique("renamed")}})


def _reorder_album(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """mutation($i: AlbumImagesInput!){
        reorderAlbum(input: $i){ id } }""",
                     {"i": {"albumId": _new_album(world, images=True),
                            "imageIds": list(reversed(_images(world)))}})


# ---- tags and search ----------------------------------------------------------------------

ADD_TERM = """mutation($t: String!){ addVocabularyTag(tag: $t){ tags { tag } } }"""


def _tag_vocabulary(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """query{ tagVocabulary { tags { tag imageCount controlled }
        aliases { source target } } }""")


def _search(world: World, headers: Headers) -> Outcome:
    _images(world)
    return world.gql(headers, """query($q: String!){ search(query: $q, first: 5){
        edges { node { score snippet image { id } } } patients { id name } } }""",
                     {"q": "lovelace"})


def _add_term(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, ADD_TERM, {"t": _unique("term")})


def _remove_term(world: World, headers: Headers) -> Outcome:
    term = _unique("term")
    world.setup_gql(ADD_TERM, {"t": term})
    return world.gql(headers, """mutation($t: String!){
        removeVocabularyTag(tag: $t){ tags { tag } } }""", {"t": term})


def _rename_tag(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """mutation($i: RenameTagInput!){
        renameTag(input: $i){ retagged } }""",
                     {"i": {"old": _unique("old"), "new": _unique("new")}})


def _merge_tags(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """mutation($i: MergeTagsInput!){
        mergeTags(input: $i){ retagged } }""",
                     {"i": {"source": _unique("source"), "target": _unique("target")}})


# ---- consent ------------------------------------------------------------------------------

GRANT = """mutation($i: GrantConsentInput!){ grantConsent(input: $i){ id } }"""


def _grant_consent(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, GRANT, {"i": {"patientId": _patient(world),
                                            "scope": "EDUCATIONAL"}})


def _revoke_consent(world: World, headers: Headers) -> Outcome:
    patient_id = _patient(world)
    world.setup_gql(GRANT, {"i": {"patientId": patient_id, "scope": "MARKETING"}})
    return world.gql(headers, """mutation($i: RevokeConsentInput!){
        revokeConsent(input: $i){ id } }""",
                     {"i": {"patientId": patient_id, "scope": "MARKETING"}})


def _consent_report(world: World, headers: Headers) -> Outcome:
    _patient(world)
    return world.gql(headers, """query{ consentReport(scope: MARKETING, first: 5){
        patients { patientId status photographIds } } }""")


# ---- delete with approval -----------------------------------------------------------------

REQUEST_DELETION = """mutation($i: RequestImageDeletionInput!){
    requestImageDeletion(input: $i){ id status } }"""


def _deletion_request(world: World, headers: Headers) -> Outcome:
    image_id = world.once("org:requested-image", _requested_image)
    return world.gql(headers, """query($id: ID!){ deletionRequest(imageId: $id){
        status round requestedBy } }""", {"id": image_id})


def _pending_requests(world: World, headers: Headers) -> Outcome:
    world.once("org:requested-image", _requested_image)
    return world.gql(headers, "query{ pendingDeletionRequests(first: 5){ imageId status } }")


def _request_deletion(world: World, headers: Headers) -> Outcome:
    image_id = add_image(world.client, world.admin, _patient(world))
    return world.gql(headers, REQUEST_DELETION, {"i": {"imageId": image_id,
                                                       "reason": "wrong patient"}})


def _approve_deletion(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """mutation($i: DecideImageDeletionInput!){
        approveImageDeletion(input: $i){ status } }""",
                     {"i": {"imageId": _requested_image(world)}})


def _decline_deletion(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """mutation($i: DecideImageDeletionInput!){
        declineImageDeletion(input: $i){ status } }""",
                     {"i": {"imageId": _requested_image(world), "note": "keep it"}})


# ---- retention and legal holds ------------------------------------------------------------

PLACE_HOLD = """mutation($i: LegalHoldInput!){ placeLegalHold(input: $i){ active } }"""


def _legal_hold(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """query($id: ID!){ legalHold(subjectId: $id){ active } }""",
                     {"id": _patient(world)})


def _place_hold(world: World, headers: Headers) -> Outcome:
    # A fresh patient per call: a second hold on one subject is a conflict.
    return world.gql(headers, PLACE_HOLD, {"i": {"subjectId": _fresh_patient(world),
                                                 "reason": "litigation"}})


def _release_hold(world: World, headers: Headers) -> Outcome:
    patient_id = _fresh_patient(world)
    world.setup_gql(PLACE_HOLD, {"i": {"subjectId": patient_id, "reason": "litigation"}})
    return world.gql(headers, """mutation($i: LegalHoldInput!){
        releaseLegalHold(input: $i){ active } }""",
                     {"i": {"subjectId": patient_id, "reason": "settled"}})


def _retention_policy(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, "query{ retentionPolicy { recoveryDays ageOfMajority } }")


def _set_retention_policy(world: World, headers: Headers) -> Outcome:
    # The defaults, written explicitly: the clinic's behaviour stays what every area expects.
    return world.gql(headers, """mutation($i: RetentionPolicyInput!){
        setRetentionPolicy(input: $i){ recoveryDays } }""",
                     {"i": {"recoveryDays": 30, "ageOfMajority": 18, "yearsAfterMajority": 7}})


# ---- the audit ----------------------------------------------------------------------------

def _audit_entries(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """query($p: ID){ auditEntries(patientId: $p, first: 5){
        entries { action actorUser } hasNextPage } }""", {"p": _patient(world)})


def _who_viewed(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, """query($p: ID!){ whoViewed(patientId: $p,
        since: "2000-01-01T00:00:00Z", until: "2999-01-01T00:00:00Z"){ userId kind } }""",
                     {"p": _patient(world)})


def _audit_export(world: World, headers: Headers) -> Outcome:
    return rest_outcome(world.client.get("/api/v1/audit/export", headers=headers, params={
        "format": "jsonl", "patientId": _patient(world)}))


OPERATIONS = [
    # Albums: names and counts are metadata; pixels inside follow the gallery's rules.
    Operation("query album", METADATA_VIEW, _query_album, not_found="album_not_found"),
    Operation("query albums", METADATA_VIEW, _query_albums, takes_id=False),
    Operation("mutation createAlbum", ORGANISE, _create_album, not_found="album_not_found"),
    Operation("mutation addImagesToAlbum", ORGANISE, _add_images, not_found="album_not_found"),
    Operation("mutation removeImageFromAlbum", ORGANISE, _remove_image,
        not_found="album_not_found"),
    # Archiving hides an album (its images stay): an edit, not a delete of someone's work.
    Operation("mutation archiveAlbum", ORGANISE, _archive_album, not_found="album_not_found"),
    Operation("mutation moveAlbum", ORGANISE, _move_album, not_found="album_not_found"),
    Operation("mutation renameAlbum", ORGANISE, _rename_album, not_found="album_not_found"),
    Operation("mutation reorderAlbum", ORGANISE, _reorder_album, not_found="album_not_found"),
    # Tags: reading the vocabulary is metadata; shaping it is an admin setting.
    Operation("query tagVocabulary", METADATA_VIEW, _tag_vocabulary, takes_id=False),
    Operation("query search", METADATA_VIEW, _search, takes_id=False),
    Operation("mutation addVocabularyTag", ADMIN, _add_term, takes_id=False),
    Operation("mutation removeVocabularyTag", ADMIN, _remove_term, takes_id=False),
    Operation("mutation renameTag", ADMIN, _rename_tag, takes_id=False),
    Operation("mutation mergeTags", ADMIN, _merge_tags, takes_id=False),
    # Consent forms are collected with the patient's paperwork: front desk's DOCUMENTS
    # capture grade records them (as it registers patients).
    Operation("mutation grantConsent", {P.CAPTURE: (G.DOCUMENTS,)}, _grant_consent,
        not_found="patient_not_found"),
    Operation("mutation revokeConsent", {P.CAPTURE: (G.DOCUMENTS,)}, _revoke_consent,
        not_found="patient_not_found"),
    Operation("query consentReport", ADMIN, _consent_report, takes_id=False),
    # A request's status (no reason text) is metadata of the image, for the requester too.
    Operation("query deletionRequest", METADATA_VIEW, _deletion_request,
        not_found="image_not_found"),
    Operation("query pendingDeletionRequests", ADMIN, _pending_requests, takes_id=False),
    # The doctor's WITH_APPROVAL grade is exactly what a request is for: it succeeds.
    Operation("mutation requestImageDeletion", {P.DELETE: (G.WITH_APPROVAL,)}, _request_deletion,
        not_found="image_not_found"),
    # Deciding is a clinic admin's: admin first, so a doctor is denied, not "approval".
    Operation("mutation approveImageDeletion", {P.ADMIN: (), P.DELETE: ()}, _approve_deletion,
        not_found="image_not_found"),
    Operation("mutation declineImageDeletion", {P.ADMIN: (), P.DELETE: ()}, _decline_deletion,
        not_found="image_not_found"),
    Operation("query legalHold", ADMIN, _legal_hold, not_found="subject_not_found"),
    Operation("mutation placeLegalHold", ADMIN, _place_hold, not_found="subject_not_found"),
    Operation("mutation releaseLegalHold", ADMIN, _release_hold, not_found="subject_not_found"),
    Operation("query retentionPolicy", ADMIN, _retention_policy, takes_id=False),
    Operation("mutation setRetentionPolicy", ADMIN, _set_retention_policy, takes_id=False),
    # The audit: admin-level reads (docs/compliance.md). Filters by patient are filters:
    # another clinic gets its own (empty) trail; whoViewed names its patient, so 404.
    Operation("query auditEntries", ADMIN, _audit_entries, takes_id=False),
    Operation("query whoViewed", ADMIN, _who_viewed, not_found="patient_not_found"),
    Operation("GET /api/v1/audit/export", ADMIN, _audit_export, takes_id=False),
]
