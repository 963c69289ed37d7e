"""Blue/green rebuild of a read model while the server serves: the live copy answers during
the rebuild, writes keep landing, and after the switch the same queries give the same
answers (plus what was written meanwhile) from the new tables; the running server's
projection carries on into the new copy, exactly once."""

from __future__ import annotations

import psycopg
from click.testing import CliRunner
from fastapi.testclient import TestClient
from installation_support import ALBUM, ALBUM_ADD, GALLERY, add_photo, ok, register

from api.app import create_app
from api.cli import main
from api.projection_rebuild import rebuild
from api.services import Services
from conftest import TEST_MASTER_KEY, TEST_TOKEN_SECRET, bearer, make_settings, token_for


def _tables(database_url: str, prefix: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE %s ORDER BY 1",
            (prefix + "%",))]


def test_rebuild_beside_the_live_read_model_then_switch(database_factory, tmp_path):
    settings = make_settings(database_factory(), tmp_path)
    headers = bearer(token_for(settings, "clinic_admin", "clinic-rebuild"))
    with TestClient(create_app(settings)) as client:
        patients = [register(client, headers, f"RB-{n}", "Ada", f"Rebuild{n}") for n in range(2)]
        photos = [add_photo(client, headers, patients[n % 2], seed=400 + n, view="IV07",
                            category="intraoral") for n in range(5)]
        album = ok(client, headers, ALBUM, {"i": {"name": "Progress"}})["createAlbum"]["id"]
        ok(client, headers, ALBUM_ADD, {"i": {"albumId": album, "imageIds": photos[:3]}})

        def listing() -> dict[str, object]:
            return {p: ok(client, headers, GALLERY, {"id": p})["patient"] for p in patients}

        before = listing()
        during: list[str] = []

        def write_while_rebuilding() -> None:
            # The live copy serves and moves on while the new one is being built.
            assert listing() == before
            during.append(add_photo(client, headers, patients[0], seed=450, view="IV07",
                                    category="intraoral"))

        positions: list[tuple[int, int]] = []
        services = Services.build(settings.model_copy(update={"run_background": False}))
        try:
            report = rebuild(services, "gallery", before_switch=write_while_rebuilding,
                             progress=lambda at, target: positions.append((at, target)))
        finally:
            services.close()
        assert report.name == "gallery_v1" and not report.kept_old
        assert positions and positions[-1][0] >= positions[-1][1] > 0
        assert _tables(settings.database_url, "gallery_v1_next") == []
        assert set(_tables(settings.database_url, "gallery_v1")) == {
            "gallery_v1_images", "gallery_v1_patients", "gallery_v1_tracking"}

        after = listing()
        added = [e for e in after[patients[0]]["images"]["edges"]
                 if e["node"]["id"] in during]
        assert len(added) == 1
        after[patients[0]]["images"]["edges"].remove(added[0])
        assert after == before
        # The running server's projection carries on in the new tables: a new upload
        # shows up (read-your-writes waits on the new tracking table), once.
        late = add_photo(client, headers, patients[1], seed=460, view="IV07",
                         category="intraoral")
        edges = listing()[patients[1]]["images"]["edges"]
        assert [e["node"]["id"] for e in edges].count(late) == 1

        env = {"ORTHOVAULT_DATABASE_URL": settings.database_url,
               "ORTHOVAULT_MASTER_KEY": TEST_MASTER_KEY,
               "ORTHOVAULT_TOKEN_SECRET": TEST_TOKEN_SECRET,
               "ORTHOVAULT_DATA_DIR": str(settings.data_dir)}
        albums_before = ok(client, headers, """query { albums { name imageCount } }""", {})
        result = CliRunner().invoke(main, ["projections", "rebuild", "albums_v1",
                                           "--keep-old"], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "switched over" in result.output
        assert ok(client, headers, """query { albums { name imageCount } }""", {}) == \
            albums_before
        assert "albums_v1_previous_albums" in _tables(settings.database_url, "albums_v1_prev")
        unknown = CliRunner().invoke(main, ["projections", "rebuild", "nonesuch"], env=env)
        assert unknown.exit_code == 2 and "gallery_v1" in unknown.output
