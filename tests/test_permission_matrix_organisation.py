"""Organisation's clinic-wide operations (``takes_id=False`` in the permission matrix) show
another clinic none of this clinic's data, and its clinic-wide changes leave this one alone.

The matrix skips its 404 check for these (they address no id); here one clinic marks every
list with a unique word and ids, and another clinic's super admin must find none of them.
"""

from __future__ import annotations

import uuid

from organisation_support import add_image, error_code, ok

from conftest import bearer, graphql, register_patient, token_for

CREATE_ALBUM = """mutation($i: CreateAlbumInput!){ createAlbum(input: $i){ id } }"""
ADD_TERM = """mutation($t: String!){ addVocabularyTag(tag: $t){ tags { tag } } }"""
REMOVE_TERM = """mutation($t: String!){ removeVocabularyTag(tag: $t){ tags { tag } } }"""
RENAME = """mutation($i: RenameTagInput!){ renameTag(input: $i){ retagged } }"""
MERGE = """mutation($i: MergeTagsInput!){ mergeTags(input: $i){ retagged } }"""
REQUEST = """mutation($i: RequestImageDeletionInput!){ requestImageDeletion(input: $i){ id } }"""
POLICY = """mutation($i: RetentionPolicyInput!){ setRetentionPolicy(input: $i){
    recoveryDays } }"""
IMAGE_TAGS = """query($id: ID!){ image(id: $id){ tags } }"""
VOCABULARY = """query{ tagVocabulary { tags { tag } aliases { source target } } }"""
READ_POLICY = """query{ retentionPolicy { recoveryDays } }"""

# Every clinic-wide read of the area, as the matrix calls them (whole answers compared).
LISTS = {
    "albums": ("query{ albums(includeArchived: true){ id name } }", {}),
    "tagVocabulary": (VOCABULARY, {}),
    "consentReport": ("""query{ consentReport(scope: MARKETING, first: 100){
        patients { patientId externalId photographIds } } }""", {}),
    "pendingDeletionRequests": ("query{ pendingDeletionRequests(first: 100){ id imageId } }",
                                {}),
    "auditEntries": ("""query{ auditEntries(first: 100){ entries { aggregateId patientId
        imageId actorUser } } }""", {}),
}


def test_another_clinic_sees_nothing_of_this_one(client, auth, clinic, shared_settings):
    mine = auth("clinic_admin")
    marker = f"zq{uuid.uuid4().hex[:10]}"
    patient = register_patient(client, mine, family_name=marker.capitalize())
    image = add_image(client, mine, patient, tags=marker)
    album = ok(client, mine, CREATE_ALBUM, {"i": {"name": marker}})["createAlbum"]["id"]
    ok(client, mine, ADD_TERM, {"t": f"{marker}-term"})
    doctor = bearer(token_for(shared_settings, "doctor", clinic, user="dr-wide"))
    request = ok(client, doctor, REQUEST, {"i": {"imageId": image, "reason": marker}})
    ok(client, mine, POLICY, {"i": {"recoveryDays": 7}})
    traces = [marker, patient, image, album, request["requestImageDeletion"]["id"]]

    theirs = auth("super_admin", clinic_id=f"{clinic}-elsewhere")
    ok(client, theirs, ADD_TERM, {"t": "their-own-term"})  # their vocabulary is not empty
    for name, (query, variables) in LISTS.items():
        seen = str(ok(client, theirs, query, variables))
        assert not [t for t in traces if t in seen], name
    found = ok(client, theirs, """query($q: String!){ search(query: $q){
        edges { node { image { id } } } patients { id } corrections { terms } } }""",
               {"q": marker})
    assert not [t for t in traces if t in str(found)]
    assert ok(client, theirs, READ_POLICY, {})["retentionPolicy"]["recoveryDays"] == 30
    exported = client.get("/api/v1/audit/export", headers=theirs, params={"format": "csv"})
    assert exported.status_code == 200
    assert not [t for t in traces if t in exported.text]

    # Their clinic-wide changes touch their clinic only.
    assert ok(client, theirs, RENAME, {"i": {"old": marker, "new": "renamed"}})[
        "renameTag"]["retagged"] == 0
    assert ok(client, theirs, MERGE, {"i": {"source": f"{marker}-term", "target": "x"}})[
        "mergeTags"]["retagged"] == 0
    assert error_code(client, theirs, REMOVE_TERM, {"t": f"{marker}-term"}) == \
        "tag_not_in_vocabulary"
    ok(client, theirs, POLICY, {"i": {"recoveryDays": 90}})
    assert ok(client, mine, IMAGE_TAGS, {"id": image})["image"]["tags"] == [marker]
    vocabulary = ok(client, mine, VOCABULARY, {})["tagVocabulary"]
    assert vocabulary == {"tags": [{"tag": f"{marker}-term"}, {"tag": marker}],
                          "aliases": []}
    assert ok(client, mine, READ_POLICY, {})["retentionPolicy"]["recoveryDays"] == 7
    # And this clinic still sees its own: the checks above would notice a leak.
    assert marker in str(ok(client, mine, *LISTS["albums"]))
    assert image in str(graphql(client, mine, *LISTS["pendingDeletionRequests"]))
