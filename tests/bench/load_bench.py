"""Load: a mixed clinical workload against a real `orthovault serve` on this machine.

Gallery queries (GraphQL), thumbnail reads and photo uploads at a fixed concurrency from a
bounded asyncio client in its own process, for a fixed time. Reports sustained requests per
second, p50/p95 latency per kind and the error count (anything but the expected status).
Baseline, run side by side: the same client against ``/healthz`` — the server stack's own
limit on this machine (HTTP parsing, routing, no database, no crypto).

Needs PostgreSQL on 127.0.0.1:5432 (a throw-away database is created and dropped).
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psycopg
from PIL import Image

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
CONCURRENCY = 16
SECONDS = 20.0
MIX = (("gallery", 0.6), ("thumbnail", 0.3), ("upload", 0.1))
GALLERY = """query($id: ID!){ patient(id: $id){ images(first: 24){
  edges { node { id category view tags thumbnailUrl } } } } }"""


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(480, 640, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=85)
    return out.getvalue()


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _token(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "api.cli", "token", "--user", "load",
                           "--clinic", "load-clinic", "--role", "clinic_admin"],
                          env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


async def _drive(base: str, headers: dict[str, str], pick, seconds: float,
                 ) -> tuple[dict[str, list[float]], int, int]:
    latencies: dict[str, list[float]] = {}
    errors = 0
    done = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:

        async def user(number: int) -> None:
            nonlocal errors, done
            rng = random.Random(number)
            while time.perf_counter() < deadline:
                kind, request, expected = pick(rng)
                started = time.perf_counter()
                answer = await request(http)
                latencies.setdefault(kind, []).append(time.perf_counter() - started)
                done += 1
                if answer.status_code != expected or (
                        kind == "gallery" and "errors" in answer.json()):
                    errors += 1

        await asyncio.gather(*(user(n) for n in range(CONCURRENCY)))
    return latencies, done, errors


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else 0.0


def run(tmp: Path) -> dict:
    name = f"ov_load_{secrets.token_hex(4)}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "ORTHOVAULT_DATABASE_URL": SERVER.rsplit("/", 1)[0] + "/" + name,
           "ORTHOVAULT_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
           "ORTHOVAULT_TOKEN_SECRET": "load-" + "x" * 40,
           "ORTHOVAULT_DATA_DIR": str(tmp / "data"), "ORTHOVAULT_LOG_LEVEL": "WARNING"}
    port = _port()
    server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {_token(env)}"}
        patient, image_ids = _seed(base, headers)
        uploads = iter(range(10_000, 10**9))

        def mixed(rng: random.Random):
            kind = rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
            if kind == "gallery":
                return kind, lambda http: http.post("/graphql", headers=headers, json={
                    "query": GALLERY, "variables": {"id": patient}}), 200
            if kind == "thumbnail":
                image = rng.choice(image_ids)
                return kind, lambda http: http.get(f"/api/v1/images/{image}/thumbnail",
                                                   headers=headers), 200
            data = _jpeg(next(uploads))
            return kind, lambda http: http.post(
                f"/api/v1/patients/{patient}/images", headers=headers,
                files={"file": ("p.jpg", data, "image/jpeg")}), 201

        def health(_rng: random.Random):
            return "healthz", lambda http: http.get("/healthz"), 200

        base_lat, base_done, base_errors = asyncio.run(_drive(base, headers, health, 5.0))
        latencies, done, errors = asyncio.run(_drive(base, headers, mixed, SECONDS))
    finally:
        server.terminate()
        server.wait(timeout=60)
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    raw = base_done / 5.0
    every = [v for values in latencies.values() for v in values]
    rate = done / SECONDS
    rows = [["mixed workload (all)", f"{rate:.1f}", "", "", errors, f"{rate / raw:.3f}x"]]
    for kind, values in sorted(latencies.items()):
        rows.append([kind, f"{len(values) / SECONDS:.1f}", f"{_p(values, 50):.0f}",
                     f"{_p(values, 95):.0f}", "", ""])
    rows.append(["baseline: /healthz (server stack limit)", f"{raw:.1f}",
                 f"{_p(base_lat['healthz'], 50):.0f}", f"{_p(base_lat['healthz'], 95):.0f}",
                 base_errors, "1.000x"])
    return {
        "title": f"Load: mixed workload at concurrency {CONCURRENCY} for {SECONDS:.0f} s",
        "columns": ["request kind", "requests/s", "p50 ms", "p95 ms", "errors",
                    "vs /healthz"],
        "rows": rows,
        "notes": "One `orthovault serve` process (API, projections and workers together) on "
                 "the embedded-default settings against the machine's PostgreSQL; the "
                 "client (httpx, asyncio) runs beside it on the same 2 cores. Mix: 60 % "
                 "gallery page of 24 images, 30 % thumbnail, 10 % 640x480 photo upload. "
                 "Errors: any unexpected status or GraphQL error (must be 0).",
        "summary": [{
            "what": f"Load: mixed gallery / thumbnail / upload, concurrency {CONCURRENCY}, "
                    f"{SECONDS:.0f} s",
            "ours": f"{rate:.1f} req/s, p95 {_p(every, 95):.0f} ms, {errors} errors",
            "baseline": f"/healthz {raw:.1f} req/s, p95 {_p(base_lat['healthz'], 95):.0f} ms "
                        "(server stack limit)",
            "ratio": f"{rate / raw:.2f}x",
            "target": f"0 errors (issue 11): {'met' if errors == 0 else 'NOT met'}; "
                      "no rate target",
        }],
    }


def _seed(base: str, headers: dict[str, str]) -> tuple[str, list[str]]:
    register = """mutation($input: RegisterPatientInput!){ registerPatient(input: $input){ id } }"""
    grant = """mutation($input: GrantConsentInput!){ grantConsent(input: $input){ id } }"""
    with httpx.Client(base_url=base, timeout=60, headers=headers) as http:
        patient = http.post("/graphql", json={"query": register, "variables": {"input": {
            "externalId": "LOAD-1", "givenName": "Load", "familyName": "Test",
            "birthDate": "2011-02-03", "sex": "female"}}}).json()["data"]["registerPatient"]["id"]
        http.post("/graphql", json={"query": grant, "variables": {"input": {
            "patientId": patient, "scope": "CLINICAL_PHOTOGRAPHY"}}})
        ids = [http.post(f"/api/v1/patients/{patient}/images",
                         files={"file": ("p.jpg", _jpeg(seed), "image/jpeg")}).json()["id"]
               for seed in range(24)]
        for _ in range(600):
            if all(http.get(f"/api/v1/images/{i}/thumbnail").status_code == 200 for i in ids):
                break
            time.sleep(0.5)
    return patient, ids
