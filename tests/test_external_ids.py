"""External patient ids are unique per clinic, and the CLI takes them wherever it takes a
patient."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import date

from conftest import graphql, jpeg_bytes
from domain.errors import Conflict
from domain.values import Actor

REGISTER = """mutation($i: RegisterPatientInput!){ registerPatient(input: $i){ id externalId } }"""


def _register(client, headers, external_id: str) -> dict:
    return graphql(client, headers, REGISTER, {"i": {
        "externalId": external_id, "givenName": "Ada", "familyName": "Lovelace",
        "birthDate": "2013-05-06", "sex": "female"}})


def test_a_second_registration_of_an_external_id_is_refused_naming_the_first(client, auth):
    headers = auth("front_desk")
    first = _register(client, headers, "P-1001")["data"]["registerPatient"]["id"]
    again = _register(client, headers, " P-1001 ")  # as typed: the same id
    [error] = again["errors"]
    assert error["extensions"] == {"code": "external_id_taken", "status": 409}
    assert first in error["message"]
    # Another clinic has its own P-1001.
    assert "errors" not in _register(client, auth("front_desk", "clinic-other-" + first[:8]),
                                     "P-1001")


def test_a_claim_id_cannot_be_computed_from_a_guessed_external_id(client, auth, clinic):
    """A dump of the event table shows claim ids in clear: they must not be a public hash
    of (clinic, external id), or a reader could test every likely chart number."""
    import uuid

    from domain.external_id import claim_id

    services = client.app.state.services
    patient = _register(client, auth("front_desk"), "P-GUESS-7")["data"]["registerPatient"]
    recorder = services.app.recorder
    with recorder.datastore.transaction(commit=False) as curs:
        curs.execute(f"SELECT originator_id FROM {recorder.events_table_name}"
                     " WHERE topic LIKE %s", ("%:ExternalIdClaim.Claimed",))
        stored = {row["originator_id"] for row in curs.fetchall()}
    keyed = claim_id(services.app.external_id_key, clinic, "P-GUESS-7")
    assert keyed in stored  # the claim of this registration
    old_namespace = uuid.UUID("8f1f2c55-0d8e-4f7a-9a51-3c5be0a4e0d2")  # the first design's
    for guess in (claim_id(b"", clinic, "P-GUESS-7"),
                  uuid.uuid5(old_namespace, f"{clinic}\x1fP-GUESS-7")):
        assert guess not in stored
    assert services.app.patient_by_external_id(
        Actor("user-desk", "front_desk", clinic), "P-GUESS-7") == uuid.UUID(patient["id"])


def test_concurrent_registrations_of_one_external_id_have_one_winner(client, clinic):
    services = client.app.state.services
    actor = Actor("user-desk", "front_desk", clinic)
    start = threading.Barrier(6)
    won, refused = [], []

    def register() -> None:
        start.wait()
        try:
            won.append(services.app.register_patient(
                actor, external_id="RACE-1", given_name="Ada", family_name="Lovelace",
                birth_date=date(2013, 5, 6), sex="female").id)
        except Conflict as error:
            refused.append(error.code)

    threads = [threading.Thread(target=register) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and refused == ["external_id_taken"] * 5
    assert services.app.patient_by_external_id(actor, "RACE-1") == won[0]


def _cli_env(shared_settings) -> dict[str, str]:
    return {**os.environ, "ORTHOVAULT_DATABASE_URL": shared_settings.database_url,
            "ORTHOVAULT_MASTER_KEY": shared_settings.master_key.get_secret_value(),
            "ORTHOVAULT_DATA_DIR": str(shared_settings.data_dir)}


def test_import_takes_an_external_id_and_checks_the_patient_first(
        client, auth, clinic, shared_settings, tmp_path):
    headers = auth("doctor")
    patient_id = _register(client, headers, "P-2002")["data"]["registerPatient"]["id"]
    graphql(client, headers, """mutation($i: GrantConsentInput!){ grantConsent(input: $i){
        consents { scope } } }""", {"i": {"patientId": patient_id,
                                           "scope": "CLINICAL_PHOTOGRAPHY"}})
    (tmp_path / "IV07_front.jpg").write_bytes(jpeg_bytes(seed=71))

    def run(patient: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "api.cli", "import", str(tmp_path), "--patient", patient,
             "--clinic", clinic], env=_cli_env(shared_settings), capture_output=True,
            text=True, check=False, timeout=300)

    done = run("P-2002")
    assert done.returncode == 0, done.stderr
    assert "accepted 1, duplicates 0, rejected 0" in done.stdout
    for unknown in ("P-9999", "00000000-0000-4000-8000-000000000000"):
        refused = run(unknown)
        # A usage error (exit 2) naming the patient, before any file is read: no table.
        assert refused.returncode == 2, refused.stderr
        assert f"no patient '{unknown}'" in refused.stderr and "Traceback" not in refused.stderr
        assert "importing" not in refused.stderr
