"""Keeps projection runners and workers alive inside one process.

A runner that fails (a bug on one event, the database gone for a moment) is logged and
restarted after a growing pause; it resumes from its tracking position, so nothing is
skipped and nothing is applied twice. Repeated failures stay visible in /metrics.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

log = structlog.get_logger("orthovault.supervisor")


class Runner(Protocol):
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> Any: ...
    def run_forever(self, timeout: float | None = None) -> None: ...
    def stop(self) -> None: ...


@dataclass
class Job:
    name: str
    start: Callable[[], Runner]
    restarts: int = 0
    running: bool = False
    last_error: str | None = None
    current: Runner | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, max_backoff: float = 30.0):
        self.jobs: dict[str, Job] = {}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._max_backoff = max_backoff
        self._periodic: list[Callable[[], None]] = []
        self._start_lock = threading.Lock()

    def add(self, name: str, start: Callable[[], Runner]) -> None:
        self.jobs[name] = Job(name, start)

    def every(self, seconds: float, task: Callable[[], None]) -> None:
        """Run a small task periodically while the supervisor runs (errors are logged)."""

        def loop() -> None:
            while not self._stopping.wait(seconds):
                try:
                    task()
                except Exception as error:
                    log.warning("periodic_task_failed", error=type(error).__name__)

        self._periodic.append(loop)

    def start(self) -> None:
        for job in self.jobs.values():
            thread = threading.Thread(target=self._keep_alive, args=(job,), daemon=True,
                                      name=f"job-{job.name}")
            thread.start()
            self._threads.append(thread)
        for loop in self._periodic:
            thread = threading.Thread(target=loop, daemon=True, name="periodic")
            thread.start()
            self._threads.append(thread)

    def _keep_alive(self, job: Job) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                # Runners create their tables as they start: one at a time, or concurrent
                # DDL on the same objects fails ("tuple concurrently updated").
                with self._start_lock:
                    runner = job.start()
                with runner:
                    job.current, job.running = runner, True
                    if self._stopping.is_set():
                        break  # stop() came while this runner was being built: it never ran
                    log.info("job_started", job=job.name, restarts=job.restarts)
                    backoff = 0.5
                    runner.run_forever()
                if self._stopping.is_set():
                    break
            except Exception as error:
                job.last_error = type(error).__name__
                log.error("job_failed", job=job.name, error=type(error).__name__,
                          detail=str(error)[:300])
            finally:
                job.running, job.current = False, None
            if self._stopping.wait(backoff):
                break
            job.restarts += 1
            backoff = min(backoff * 2, self._max_backoff)

    def stop(self) -> None:
        self._stopping.set()
        for job in self.jobs.values():
            if job.current is not None:
                job.current.stop()
        for thread in self._threads:
            thread.join(timeout=30)
