"""Backup and restore of a populated installation, and backups agreeing with destruction.

A backup is taken while the server serves; a second one transfers only the new blobs; an
image is destroyed after it; the data directory and the database are wiped; the backup is
restored into a new data directory and database; everything acknowledged before the
backup is there (listings, originals and thumbnails byte for byte, albums, annotations,
reports), the audit chain verifies, and the image destroyed after the backup stays
destroyed (the destruction ledger, kept apart with the master key, is re-applied).
"""

from __future__ import annotations

import json
import shutil

import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from installation_support import DESTROY, add_photo, observed, ok, populate

from api.app import create_app
from api.cli import main
from conftest import (
    TEST_MASTER_KEY,
    TEST_TOKEN_SECRET,
    bearer,
    make_settings,
    token_for,
    wait_until,
)

CLINIC = "clinic-backup"


def _cli(settings, *args: str) -> str:
    env = {"ORTHOVAULT_DATABASE_URL": settings.database_url,
           "ORTHOVAULT_MASTER_KEY": TEST_MASTER_KEY, "ORTHOVAULT_TOKEN_SECRET": TEST_TOKEN_SECRET,
           "ORTHOVAULT_DATA_DIR": str(settings.data_dir),
           "ORTHOVAULT_DESTRUCTION_LEDGER": str(settings.destruction_ledger_path)}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _drop(database_url: str) -> None:
    base, name = database_url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def backed_up(database_factory, tmp_path_factory):
    """A populated installation, its backup in DEST (taken twice), then one more image
    destroyed; the installation itself is wiped at the end, as a dead disk would."""
    root = tmp_path_factory.mktemp("backup")
    keys = root / "kept-apart"  # where the operator keeps the master key and the ledger
    settings = make_settings(database_factory(), root / "data",
                             destruction_ledger=keys / "destructions.jsonl")
    dest = root / "dest"
    headers = bearer(token_for(settings, "clinic_admin", CLINIC))
    with TestClient(create_app(settings)) as client:
        made = populate(client, headers)
        first = _cli(settings, "backup", str(dest))  # while the server serves
        assert "key material not included" in first
        manifest = json.loads((dest / "manifest.json").read_text())
        blobs_before = manifest["blobs"]["count"]
        assert manifest["blobs"]["transferred"] == blobs_before > 0
        assert not any(name.startswith("keys/") for name in manifest["files"])
        assert TEST_MASTER_KEY not in (dest / "manifest.json").read_text()

        late = add_photo(client, headers, made.patients[1], seed=300, view="EV01",
                         category="extraoral")
        kept = [*made.photos, *made.dicom, late]
        wait_until(lambda: client.get(f"/api/v1/images/{late}/thumbnail",
                                      headers=headers).status_code == 200, timeout=60)
        _cli(settings, "backup", str(dest))
        second = json.loads((dest / "manifest.json").read_text())
        new_blobs = second["blobs"]["count"] - blobs_before
        assert new_blobs >= 3  # the late photo's original, preview and thumbnail (+ tiles)
        assert second["blobs"]["transferred"] == new_blobs
        before = observed(client, headers, made, kept)

        # Destroyed after the backup: must stay destroyed when the backup is restored.
        after_backup = made.photos[3]  # the second patient's photo
        ok(client, headers, DESTROY, {"i": {"imageId": after_backup, "reason": "erasure"}})
        made.destroyed.append(after_backup)
    _drop(settings.database_url)
    shutil.rmtree(settings.data_dir)
    (keys / "master.key").write_text(TEST_MASTER_KEY)
    return made, before, kept, dest, keys


def test_restore_brings_back_every_acknowledged_write_and_keeps_destructions(
        backed_up, database_factory, tmp_path):
    made, before, kept, dest, keys = backed_up
    settings = make_settings(database_factory(), tmp_path / "new")
    env = {"ORTHOVAULT_DATABASE_URL": settings.database_url,
           "ORTHOVAULT_TOKEN_SECRET": TEST_TOKEN_SECRET}
    refused = CliRunner().invoke(main, ["restore", str(dest), "--data-dir", str(tmp_path / "x"),
                                        "--without-destruction-ledger"], env=env)
    assert refused.exit_code != 0 and "master key" in refused.output
    result = CliRunner().invoke(main, [
        "restore", str(dest), "--data-dir", str(settings.data_dir), "--master-key-file",
        str(keys / "master.key"), "--destruction-ledger", str(keys / "destructions.jsonl")],
        env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "audit chain intact" in result.output
    assert "destructions re-applied: 1" in result.output
    again = CliRunner().invoke(main, [
        "restore", str(dest), "--data-dir", str(settings.data_dir), "--master-key-file",
        str(keys / "master.key"), "--without-destruction-ledger"], env=env)
    assert again.exit_code == 1 and "is not empty" in again.output

    headers = bearer(token_for(settings, "clinic_admin", CLINIC))
    with TestClient(create_app(settings)) as client:
        survivors = [i for i in kept if i not in made.destroyed]
        after = observed(client, headers, made, survivors)
        for name, content in before["bytes"].items():
            if name.split("/")[0] in survivors:
                assert after["bytes"][name] == content, name
        assert after["albums"] == before["albums"]
        assert after["annotations"] == before["annotations"]
        assert after["reports"] == before["reports"]
        for patient, listed in before["patients"].items():
            expected = [e for e in listed["images"]["edges"]
                        if e["node"]["id"] not in made.destroyed]
            assert after["patients"][patient]["images"]["edges"] == expected
            assert {k: v for k, v in after["patients"][patient].items() if k != "images"} == \
                {k: v for k, v in listed.items() if k != "images"}
        for image in made.destroyed:
            response = client.get(f"/api/v1/images/{image}/original", headers=headers)
            assert response.status_code in (404, 410), response.text
            assert not (settings.blob_dir / image[:2] / image).exists()
    audit = CliRunner().invoke(main, ["audit", "verify", "--against-log"], env={
        **env, "ORTHOVAULT_MASTER_KEY": TEST_MASTER_KEY,
        "ORTHOVAULT_DATA_DIR": str(settings.data_dir)}, catch_exceptions=False)
    assert audit.exit_code == 0 and "audit chain intact" in audit.output


def test_a_damaged_backup_is_named_by_verify_and_refused_by_restore(
        backed_up, database_factory, tmp_path):
    _made, _before, _kept, dest, keys = backed_up
    verified = CliRunner().invoke(main, ["backup", "verify", str(dest)])
    assert verified.exit_code == 0 and "intact" in verified.output
    manifest = json.loads((dest / "manifest.json").read_text())
    blob = next(n for n in manifest["files"] if n.startswith("blobs/"))
    table = next(n for n in manifest["files"] if n.endswith("/subject_keys.copy"))
    for damage, name in (("flip", blob), ("remove", table)):
        copy = tmp_path / damage
        shutil.copytree(dest, copy)
        if damage == "flip":
            data = bytearray((copy / name).read_bytes())
            data[len(data) // 2] ^= 0x01
            (copy / name).write_bytes(bytes(data))
        else:
            (copy / name).unlink()
        result = CliRunner().invoke(main, ["backup", "verify", str(copy)])
        assert result.exit_code == 1
        assert name in result.output
        database = database_factory()
        restored = CliRunner().invoke(main, [
            "restore", str(copy), "--data-dir", str(tmp_path / f"new-{damage}"),
            "--master-key-file", str(keys / "master.key"), "--without-destruction-ledger"],
            env={"ORTHOVAULT_DATABASE_URL": database})
        assert restored.exit_code != 0
        assert "restore refused" in restored.output and name in restored.output
        assert not (tmp_path / f"new-{damage}").exists()
