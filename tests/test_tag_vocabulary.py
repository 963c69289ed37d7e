"""The clinic's tag vocabulary: controlled tags, rename and merge as re-tagging events."""

from __future__ import annotations

from organisation_support import add_image, error_code, ok

from conftest import GALLERY, graphql, register_patient, stored_events
from domain.image import Image
from domain.tag_vocabulary import TagVocabulary

VOCABULARY = """query { tagVocabulary { tags { tag imageCount controlled }
  aliases { source target } } }"""
ADD_TERM = """mutation($tag: String!) { addVocabularyTag(tag: $tag) { tags { tag controlled } } }"""
MERGE = """mutation($input: MergeTagsInput!) { mergeTags(input: $input) {
  source target retagged } }"""
RENAME = """mutation($input: RenameTagInput!) { renameTag(input: $input) {
  source target retagged } }"""
TAG = """mutation($input: TagImageInput!) { tagImage(input: $input) { id tags } }"""
DELETE = """mutation($input: DeleteImageInput!) { deleteImage(input: $input) { id status } }"""


def _tags_of(client, headers, patient_id):
    page = graphql(client, headers, GALLERY, {"id": patient_id, "first": 50})
    return {e["node"]["id"]: sorted(e["node"]["tags"])
            for e in page["data"]["patient"]["images"]["edges"]}


def test_merge_retags_every_image_as_events(client, auth, clinic):
    admin = auth("clinic_admin")
    patient = register_patient(client, admin)
    a = add_image(client, admin, patient, tags="ceph,initial")
    b = add_image(client, admin, patient, tags="ceph,cephalometric")
    c = add_image(client, admin, patient, tags="progress")
    deleted = add_image(client, admin, patient, tags="ceph")
    ok(client, admin, DELETE, {"input": {"imageId": deleted}})
    ok(client, admin, ADD_TERM, {"tag": "Cephalometric"})

    merged = ok(client, admin, MERGE, {"input": {"source": "CEPH", "target": "cephalometric"}})
    assert merged["mergeTags"] == {"source": "ceph", "target": "cephalometric", "retagged": 3}
    assert _tags_of(client, admin, patient) == {
        a: ["cephalometric", "initial"], b: ["cephalometric"], c: ["progress"]}

    # Every change is an ordinary image event, so every read model followed it.
    untagged = {str(e.originator_id) for e in stored_events(client, Image.Untagged)
                if e.tag == "ceph"}
    assert {a, b, deleted} <= untagged
    assert any(e.source == "ceph" and e.target == "cephalometric"
               for e in stored_events(client, TagVocabulary.TagsMerged))

    # The old spelling now lands on the new tag; the vocabulary shows the alias.
    tagged = ok(client, admin, TAG, {"input": {"imageId": c, "tag": "ceph"}})
    assert sorted(tagged["tagImage"]["tags"]) == ["cephalometric", "progress"]
    vocabulary = ok(client, admin, VOCABULARY, {})["tagVocabulary"]
    assert {"source": "ceph", "target": "cephalometric"} in vocabulary["aliases"]
    counts = {t["tag"]: (t["imageCount"], t["controlled"]) for t in vocabulary["tags"]}
    assert counts["cephalometric"] == (3, True)
    assert "ceph" not in counts and counts["initial"] == (1, False)


def test_rename_follows_chains_and_refuses_bad_input(client, auth):
    admin = auth("clinic_admin")
    patient = register_patient(client, admin)
    image = add_image(client, admin, patient, tags="debond")
    ok(client, admin, ADD_TERM, {"tag": "debond"})
    renamed = ok(client, admin, RENAME, {"input": {"old": "debond", "new": "debonding"}})
    assert renamed["renameTag"]["retagged"] == 1
    ok(client, admin, RENAME, {"input": {"old": "debonding", "new": "appliance removal"}})
    assert _tags_of(client, admin, patient)[image] == ["appliance removal"]
    tagged = ok(client, admin, TAG, {"input": {"imageId": image, "tag": "debond"}})
    assert tagged["tagImage"]["tags"] == ["appliance removal"]  # a rename of a rename

    for query, variables, code in [
        (RENAME, {"input": {"old": "x", "new": "x"}}, "same_tag"),
        (RENAME, {"input": {"old": "x", "new": "appliance removal"}}, "tag_exists"),
        (MERGE, {"input": {"source": "", "target": "y"}}, "invalid_tag"),
        (MERGE, {"input": {"source": "y", "target": "y" * 65}}, "invalid_tag"),
        (ADD_TERM, {"tag": "debond"}, "tag_retired"),
    ]:
        assert error_code(client, admin, query, variables) == code, code
    # Managing the vocabulary needs imaging:admin.
    assert error_code(client, auth("doctor"), MERGE, {"input": {
        "source": "a", "target": "b"}}) == "permission_denied"


def test_merge_stays_inside_the_clinic(client, auth):
    mine, theirs = auth("clinic_admin"), auth("clinic_admin", "clinic-other-tags")
    mine_patient = register_patient(client, mine)
    their_patient = register_patient(client, theirs)
    my_image = add_image(client, mine, mine_patient, tags="retainer")
    their_image = add_image(client, theirs, their_patient, tags="retainer")
    assert ok(client, mine, MERGE, {"input": {"source": "retainer", "target": "retention"}})[
        "mergeTags"]["retagged"] == 1
    assert _tags_of(client, mine, mine_patient)[my_image] == ["retention"]
    assert _tags_of(client, theirs, their_patient)[their_image] == ["retainer"]
