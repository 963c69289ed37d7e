"""The audit's tail is anchored (issue 17): cutting the last entries and moving the
tracking row back is caught against the event log (naming the missing positions) and
against the signed head file published outside the database; a forged head file is
refused."""

from __future__ import annotations

import json

import psycopg
from click.testing import CliRunner
from fastapi.testclient import TestClient

from adapters.audit_head import (
    EVENT_TYPE,
    AuditHead,
    HeadRefused,
    head_key,
    head_record,
    read_head,
    write_head,
)
from api.app import create_app
from api.cli import main as cli
from api.services import Services, audit_head_path
from conftest import TEST_MASTER_KEY, bearer, make_settings, register_patient, token_for
from projections.audit import verify_against_head, verify_chain, verify_tail

CUT = 5


def _cli(settings, *args: str):
    env = {"ORTHOVAULT_DATABASE_URL": settings.database_url,
           "ORTHOVAULT_MASTER_KEY": TEST_MASTER_KEY,
           "ORTHOVAULT_DATA_DIR": str(settings.data_dir)}
    return CliRunner().invoke(cli, ["audit", "verify", *args], env=env)


def test_a_cut_tail_with_a_rolled_back_tracking_row_is_caught(database_factory, tmp_path):
    settings = make_settings(database_factory(), tmp_path)
    with TestClient(create_app(settings)) as client:
        headers = bearer(token_for(settings, "clinic_admin", "c1"))
        for _ in range(4):
            register_patient(client, headers)  # a registration and a consent each
        services: Services = client.app.state.services
        log_head = services.app.recorder.max_notification_id()
        services.audit.wait(services.app.name, log_head, timeout=30)
    # Shut down: the last head is published in the secrets folder, signed.
    head_file = audit_head_path(settings)
    published = json.loads(head_file.read_text())
    assert published["position"] == log_head
    assert set(published) == {"position", "entry_hash", "published_at", "signature"}

    intact = _cli(settings, "--against-log", "--against-head", str(head_file))
    assert intact.exit_code == 0, intact.output
    assert f"head position {log_head}" in intact.output

    # The attacker with database write access: the last five entries go, and the
    # tracking row is moved back to the new end, so the chain itself looks whole.
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        positions = [row[0] for row in conn.execute(
            "SELECT position FROM audit_v1_entries ORDER BY position DESC LIMIT %s", (CUT,))]
        conn.execute("DELETE FROM audit_v1_entries WHERE position = ANY(%s)", (positions,))
        new_end = conn.execute("SELECT max(position) FROM audit_v1_entries").fetchone()[0]
        conn.execute("DELETE FROM audit_v1_tracking WHERE notification_id > %s", (new_end,))
        conn.execute("INSERT INTO audit_v1_tracking (application_name, notification_id)"
                     " VALUES ('imaging', %s) ON CONFLICT DO NOTHING", (new_end,))
    first, last = min(positions), max(positions)
    gap = f"positions {first}-{last} missing ({CUT} events)"

    services = Services.build(make_settings(settings.database_url, tmp_path,
                                            run_background=False))
    try:
        assert verify_chain(services.audit).ok  # the old check alone is fooled
        tail = verify_tail(services.audit, services.app, patience=0.5)
        assert not tail.ok and tail.first_broken_position == first and gap in tail.reason
        anchored = verify_against_head(services.audit, (log_head, published["entry_hash"]))
        assert not anchored.ok and anchored.first_broken_position == first
        assert f"positions {first}-{log_head} were removed" in anchored.reason
    finally:
        services.close()

    for args in ((), ("--against-log",), ("--against-head", str(head_file))):
        broken = _cli(settings, *args)
        assert broken.exit_code == 1, (args, broken.output)
        assert gap in broken.output, args

    # A head file not signed by this installation is refused, not trusted.
    forged = tmp_path / "forged_head.json"
    forged.write_text(json.dumps({**published, "position": new_end}))
    refused = _cli(settings, "--against-head", str(forged))
    assert refused.exit_code == 1 and "REFUSED" in refused.output
    write_head(forged, AuditHead(new_end, "0" * 64), head_key(b"x" * 32))  # not our key
    refused = _cli(settings, "--against-head", str(forged))
    assert refused.exit_code == 1 and "REFUSED" in refused.output


def test_the_head_file_and_its_cloudevent_hold_the_head_only(tmp_path):
    key = head_key(b"m" * 32)
    path = tmp_path / "secrets" / "audit_head.json"
    write_head(path, AuditHead(42, "ab" * 32), key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_head(path, key) == AuditHead(42, "ab" * 32)
    try:
        read_head(path, head_key(b"n" * 32))
        raise AssertionError("a head signed with another key was accepted")
    except HeadRefused:
        pass
    record = head_record(AuditHead(42, "ab" * 32))
    assert json.loads(record.value) == {"position": 42, "entryHash": "ab" * 32}
    assert dict(record.headers)["ce_type"].decode() == EVENT_TYPE
