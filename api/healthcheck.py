"""Container health checks (``python -m api.healthcheck ...``), exit 0 healthy, 1 not.

* ``http URL``: the API role; healthy when ``URL`` (``/readyz``) answers 200.
* ``jobs``: the job roles (worker, projections, relay, consumers), which serve no HTTP;
  healthy when PostgreSQL answers and, with ``--kafka``, the first
  ``ORTHOVAULT_KAFKA_BOOTSTRAP`` broker accepts a connection (the process itself is the
  container's PID 1: when it dies the container stops). A job that loses its database is
  restarted by its supervisor inside the process; this check tells the orchestrator when
  that does not recover.

Standard library plus psycopg only, and no output on success, so it is cheap to run often.
"""

from __future__ import annotations

import socket
import sys
import urllib.request

TIMEOUT = 4.0


def check_http(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - local
            return None if response.status == 200 else f"{url} answered {response.status}"
    except OSError as error:
        return f"{url}: {error}"


def check_database() -> str | None:
    import psycopg

    from api.settings import Settings

    url = Settings().database_url
    if not url:
        return "ORTHOVAULT_DATABASE_URL is not set"
    try:
        with psycopg.connect(url, connect_timeout=int(TIMEOUT)) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        return f"database: {type(error).__name__}"
    return None


def check_kafka() -> str | None:
    from api.settings import Settings

    bootstrap = Settings().kafka_bootstrap
    if not bootstrap:
        return "ORTHOVAULT_KAFKA_BOOTSTRAP is not set"
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=TIMEOUT).close()
    except (OSError, ValueError) as error:
        return f"kafka {bootstrap}: {error}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "http":
        problems = [check_http(argv[1])]
    elif argv and argv[0] == "jobs" and set(argv[1:]) <= {"--kafka"}:
        problems = [check_database()]
        if "--kafka" in argv:
            problems.append(check_kafka())
    else:
        print("usage: python -m api.healthcheck http URL | jobs [--kafka]", file=sys.stderr)
        return 2
    failed = [p for p in problems if p]
    for problem in failed:
        print(problem, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
