"""Secrets kept in the data directory in embedded mode (master key, token signing key).

Each is created once with owner-only permissions and never rewritten: losing the master
key loses every patient's data, so back it up apart from the data (docs/deploy.md).
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path


def _read_or_create(path: Path, make: bytes) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(handle, "wb") as out:
        out.write(make)
        out.flush()
        os.fsync(out.fileno())
    return make


def master_key(data_dir: Path) -> str:
    """Base64 of a 32-byte AES key."""
    made = base64.b64encode(secrets.token_bytes(32))
    return _read_or_create(data_dir / "secrets" / "master.key", made).decode()


def token_signing_key(data_dir: Path) -> str:
    made = secrets.token_urlsafe(48).encode()
    return _read_or_create(data_dir / "secrets" / "token.key", made).decode()


class NoInstallation(Exception):
    """The data directory holds no installation's secrets."""


def existing_token_signing_key(data_dir: Path) -> str:
    """The key a server on ``data_dir`` signs with; never creates one (a fresh key would
    mint tokens that server rejects)."""
    path = data_dir / "secrets" / "token.key"
    try:
        return path.read_bytes().strip().decode()
    except FileNotFoundError:
        raise NoInstallation(
            f"no orthovault installation in {data_dir.resolve()} (no secrets/token.key): "
            "pass the server's --data-dir (or ORTHOVAULT_DATA_DIR), or start `orthovault "
            "serve` there once") from None
