"""End-to-end import of 100 photos of 24 megapixels: stored, encrypted, recorded, and
processed (preview, thumbnail, quality, categorisation), then tiled (DeepZoom pyramid), on
this machine's 2 cores.

Needs PostgreSQL on 127.0.0.1:5432 (a throw-away database is created and dropped).
Baselines: a naive single pass over the same files (Pillow full decode + 1600 px resize),
and the machine's raw limit for anything that touches every pixel (one full decode per
photo, on both cores).
"""

from __future__ import annotations

import base64
import io
import secrets
import time
from datetime import date
from pathlib import Path

import numpy as np
import psycopg
from PIL import Image

PHOTOS = 100
TARGET_PER_SECOND = 8.0
SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def _photos(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:4000, 0:6000]
    base = np.stack([x * 255 // 5999, y * 255 // 3999, (x + y) % 256], axis=-1)
    pixels = np.clip(base + rng.integers(-12, 12, size=base.shape), 0, 255).astype("uint8")
    paths = []
    for index in range(PHOTOS):
        pixels[:64, :64] = index  # a distinct file each time (no exact duplicates)
        path = folder / f"photo_{index:03d}.jpg"
        Image.fromarray(pixels).save(path, "JPEG", quality=88)
        paths.append(path)
    return paths


def _naive(paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths[:10]:
        image = Image.open(path)
        image.load()
        image.thumbnail((1600, 1600))
        image.save(io.BytesIO(), "JPEG")
    return 10 / (time.perf_counter() - started)


def _full_decodes(paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths[:10]:
        Image.open(path).load()
    return 10 / (time.perf_counter() - started)


def run(tmp: Path) -> dict:
    from api.folder_import import import_path
    from api.services import Services
    from api.settings import Settings
    from domain.patient import ConsentScope
    from domain.values import Actor

    paths = _photos(tmp)
    name = f"ov_bench_{secrets.token_hex(4)}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        settings = Settings(
            data_dir=tmp / "data", database_url=SERVER.rsplit("/", 1)[0] + "/" + name,
            master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
            token_secret="bench-" + "x" * 40,
        )
        services = Services.build(settings)
        services.start_background()
        actor = Actor("bench", "clinic_admin", "bench-clinic")
        patient = services.app.register_patient(
            actor, external_id="B-1", given_name="Bench", family_name="Mark",
            birth_date=date(2010, 1, 1), sex="female")
        services.app.grant_consent(actor, patient.id, ConsentScope.CLINICAL_PHOTOGRAPHY)
        started = time.perf_counter()
        results = import_path(services, actor, patient.id, tmp, None)
        stored = time.perf_counter() - started
        accepted = sum(r.status == "accepted" for r in results)

        def processed() -> int:
            page = services.gallery.images_of_patient("bench-clinic", patient.id, first=200)
            return sum(i.has_derivatives for i in page.images)

        while processed() < accepted and time.perf_counter() - started < 1800:
            time.sleep(0.2)
        total = time.perf_counter() - started
        ids = [r.image_id for r in results if r.status == "accepted"]
        while (sum(services.app.repository.get(i).tiles is not None for i in ids) < accepted
               and time.perf_counter() - started < 1800):
            time.sleep(1.0)
        tiled = time.perf_counter() - started
        services.close()
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    naive = _naive(paths)
    limit = 2 * _full_decodes(paths)
    rate = accepted / total
    return {
        "title": f"Import of {PHOTOS} photos of 24 MP, end to end (stored + processed)",
        "columns": ["stage", "photos", "seconds", "photos/s", "vs target 8/s",
                    "vs naive decode+resize"],
        "rows": [
            ["stored (hash, check, encrypt, event)", accepted, f"{stored:.1f}",
             f"{accepted / stored:.2f}", "", ""],
            ["in the gallery (preview, thumbnail, quality, category)", accepted,
             f"{total:.1f}", f"{rate:.2f}", f"{rate / TARGET_PER_SECOND:.2f}x",
             f"{rate / naive:.2f}x"],
            ["and tiled (DeepZoom pyramid, full resolution)", accepted, f"{tiled:.1f}",
             f"{accepted / tiled:.2f}", f"{accepted / tiled / TARGET_PER_SECOND:.2f}x",
             f"{accepted / tiled / naive:.2f}x"],
            ["baseline: naive Pillow decode + resize only", 10, "", f"{naive:.2f}", "",
             "1.00x"],
            ["machine limit: one full decode per photo on 2 cores", 10, "", f"{limit:.2f}",
             f"{limit / TARGET_PER_SECOND:.2f}x", f"{limit / naive:.2f}x"],
        ],
        "notes": "One process: the import stores on the main thread while projections, the "
                 "photo worker and the tiles worker run in background threads. Previews come "
                 "from a DCT-scaled decode; the pyramid needs a full decode and ~500 tile "
                 "encodes, so it runs as its own worker after the photo is in the gallery.",
        "summary": [{
            "what": f"Import to gallery, {PHOTOS} x 24 MP (stored + preview, thumbnail, "
                    "quality, category)",
            "ours": f"{rate:.2f} photos/s",
            "baseline": f"machine limit {limit:.1f}/s (one full decode per photo on 2 cores); "
                        f"naive decode + resize {naive:.2f}/s",
            "ratio": f"{rate / limit:.2f}x limit; {rate / naive:.2f}x naive",
            "target": f"{TARGET_PER_SECOND:.0f}/s (issue 3): "
                      f"{'met' if rate >= TARGET_PER_SECOND else 'NOT met'}",
        }, {
            "what": f"Import until tiled (DeepZoom pyramid too), {PHOTOS} x 24 MP",
            "ours": f"{accepted / tiled:.2f} photos/s",
            "baseline": f"machine limit {limit:.1f}/s",
            "ratio": f"{accepted / tiled / limit:.2f}x",
            "target": "none of its own (pyramids follow the gallery)",
        }],
    }
