"""Encryption in transit: `serve` terminates TLS 1.2+ with HSTS; Postgres honours libpq's
TLS settings (PGSSLMODE and friends)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import subprocess
import sys

import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import make_settings, wait_until

pytestmark = pytest.mark.slow


def _self_signed(folder) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(settings, **extra: str) -> dict[str, str]:
    return {**os.environ, "ORTHOVAULT_DATABASE_URL": settings.database_url,
            "ORTHOVAULT_MASTER_KEY": settings.master_key.get_secret_value(),
            "ORTHOVAULT_TOKEN_SECRET": settings.token_secret.get_secret_value(),
            "ORTHOVAULT_DATA_DIR": str(settings.data_dir), **extra}


def test_serve_speaks_tls_12_or_newer_with_hsts(database_factory, tmp_path):
    settings = make_settings(database_factory(), tmp_path)
    certfile, keyfile = _self_signed(tmp_path)
    port = _port()
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        env=_env(settings, ORTHOVAULT_TLS_CERTFILE=certfile, ORTHOVAULT_TLS_KEYFILE=keyfile),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trusted = ssl.create_default_context(cafile=certfile)
    url = f"https://localhost:{port}/healthz"
    try:
        def up() -> httpx.Response | None:
            try:
                return httpx.get(url, verify=trusted, timeout=2)
            except httpx.HTTPError:
                return None

        answer = wait_until(up, timeout=60, interval=0.3)
        assert answer.status_code == 200
        assert answer.headers["strict-transport-security"].startswith("max-age=31536000")

        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(certfile)
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT@SECLEVEL=0")
        with pytest.raises((ssl.SSLError, OSError)), \
                socket.create_connection(("localhost", port)) as raw, \
                old.wrap_socket(raw, server_hostname="localhost"):
            pass
        with socket.create_connection(("localhost", port)) as raw, \
                trusted.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://localhost:{port}/healthz", timeout=2)  # no plain HTTP
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_serve_refuses_half_a_tls_configuration(database_factory, tmp_path):
    settings = make_settings(database_factory(), tmp_path)
    certfile, _keyfile = _self_signed(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(_port())],
        env=_env(settings, ORTHOVAULT_TLS_CERTFILE=certfile), capture_output=True, text=True,
        timeout=120)
    assert done.returncode != 0
    assert "needs both ORTHOVAULT_TLS_CERTFILE and ORTHOVAULT_TLS_KEYFILE" in done.stderr


def test_database_connections_honour_libpq_tls_settings(database_factory, tmp_path):
    """PGSSLMODE=require: a server without TLS is refused rather than spoken to in clear."""
    settings = make_settings(database_factory(), tmp_path)
    with psycopg.connect(settings.database_url) as conn:
        server_tls = conn.execute("SHOW ssl").fetchone()[0] == "on"
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "audit", "verify"],
        env=_env(settings, PGSSLMODE="require"), capture_output=True, text=True, timeout=120)
    if server_tls:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode != 0
        assert "SSL" in done.stderr
