"""Treatment phases: milestones by hand, images phased by link, session and date."""

from __future__ import annotations

from organisation_support import add_image, error_code, ok

from conftest import register_patient, stored_events
from domain.treatment import TreatmentPlan

RECORD = """mutation($input: RecordMilestoneInput!) {
  recordMilestone(input: $input) { id kind label occurredOn source } }"""
LINK = """mutation($input: LinkImageInput!) { linkImageToMilestone(input: $input) { id } }"""
UNLINK = """mutation($input: UnlinkImageInput!) {
  unlinkImageFromMilestone(input: $input) { id } }"""
OPEN = """mutation($input: OpenCaptureSessionInput!) { openCaptureSession(input: $input) { id } }"""
TIMELINE = """query($id: ID!, $n: Int) { treatmentTimeline(patientId: $id, imagesPerPhase: $n) {
  phases { milestone { id kind label occurredOn source } imageCount
           images { linkedBy image { id } } } } }"""


def _phases(client, headers, patient):
    timeline = ok(client, headers, TIMELINE, {"id": patient})["treatmentTimeline"]
    return {(p["milestone"] or {}).get("label"): {i["image"]["id"]: i["linkedBy"]
                                                  for i in p["images"]}
            for p in timeline["phases"]}


def _at(day: str) -> dict[str, str]:
    return {"capturedAt": f"{day}T10:00:00+00:00"}


def test_timeline_by_date_session_and_link(client, auth):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    early = add_image(client, doctor, patient, **_at("2026-01-05"))
    initial = add_image(client, doctor, patient, **_at("2026-02-01"))
    progress = add_image(client, doctor, patient, **_at("2026-04-10"))
    later = add_image(client, doctor, patient, **_at("2026-06-01"))
    for kind, day, ident in [("initial_records", "2026-02-01", "tp-1"),
                             ("progress", "2026-04-01", "tp-2"),
                             ("progress", "2026-05-15", "tp-3"),
                             ("retention", "2026-09-01", "tp-4")]:
        recorded = ok(client, doctor, RECORD, {"input": {
            "patientId": patient, "kind": kind, "occurredOn": day, "milestoneId": ident}})
        assert recorded["recordMilestone"]["source"] == "manual"
    # An image taken today in a "progress" session belongs to the nearest progress
    # milestone, not to retention (which the date alone would pick).
    session = ok(client, doctor, OPEN, {"input": {"patientId": patient,
                                                  "milestone": "progress"}})
    in_session = add_image(client, doctor, patient, view="IV07",
                           session_id=session["openCaptureSession"]["id"])
    phases = _phases(client, doctor, patient)
    assert phases[None] == {early: "none"}
    assert phases["Initial records"] == {initial: "date"}
    assert phases["Progress 1"] == {progress: "date"}
    assert phases["Progress 2"] == {later: "date", in_session: "session"}
    assert phases["Retention"] == {}

    # A clinician's link wins; unlinking returns the image to its dated phase.
    ok(client, doctor, LINK, {"input": {"imageId": early, "milestoneId": "tp-4"}})
    assert _phases(client, doctor, patient)["Retention"] == {early: "link"}
    ok(client, doctor, UNLINK, {"input": {"imageId": early}})
    assert _phases(client, doctor, patient)[None] == {early: "none"}

    # A corrected date (same milestone id) re-phases at once; a repeat records nothing.
    ok(client, doctor, RECORD, {"input": {"patientId": patient, "kind": "progress",
                                          "occurredOn": "2026-06-01", "milestoneId": "tp-3"}})
    before = len(stored_events(client, TreatmentPlan.MilestoneRecorded))
    ok(client, doctor, RECORD, {"input": {"patientId": patient, "kind": "progress",
                                          "occurredOn": "2026-06-01", "milestoneId": "tp-3"}})
    assert len(stored_events(client, TreatmentPlan.MilestoneRecorded)) == before
    phases = _phases(client, doctor, patient)
    assert phases["Progress 1"] == {progress: "date"}
    assert phases["Progress 2"] == {later: "date", in_session: "session"}


def test_bad_input_other_clinics_and_roles(client, auth):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    image = add_image(client, doctor, patient)
    base = {"patientId": patient, "occurredOn": "2026-03-01"}
    cases = [
        (RECORD, {"input": {**base, "kind": "braces-on"}}, "invalid_milestone"),
        (RECORD, {"input": {**base, "kind": "debond", "milestoneId": " "}},
         "invalid_milestone_id"),
        (RECORD, {"input": {**base, "kind": "debond", "label": "x" * 121}}, "invalid_label"),
        (RECORD, {"input": {**base, "kind": "debond", "patientId": "nope"}}, "invalid_id"),
        (LINK, {"input": {"imageId": image, "milestoneId": "missing"}}, "milestone_not_found"),
        (UNLINK, {"input": {"imageId": image}}, "image_not_linked"),
        (TIMELINE, {"id": patient, "n": 500}, "invalid_page_size"),
    ]
    for query, variables, code in cases:
        assert error_code(client, doctor, query, variables) == code, code
    other = auth("doctor", "clinic-other-phases")
    assert error_code(client, other, TIMELINE, {"id": patient}) == "patient_not_found"
    assert error_code(client, other, RECORD, {"input": {**base, "kind": "debond"}}) == \
        "patient_not_found"
    assert error_code(client, auth("billing"), RECORD, {"input": {**base, "kind": "debond"}}) \
        == "permission_denied"
    # Nothing was half-stored: the timeline has no milestone.
    timeline = ok(client, doctor, TIMELINE, {"id": patient})["treatmentTimeline"]
    assert [p["milestone"] for p in timeline["phases"]] == [None]
