"""Runs an event handler over the imaging log, resuming from its own tracking position.

Like eventsourcing's ProjectionRunner, but on an application the process already has:
workers need that application to record their results, and projections sharing it keep
the process to one connection pool instead of one per runner (eventsourcing's runner
builds its own application, key store pool included, for every projection).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import ApplicationSubscription

Handler = Callable[[Any, Tracking], None]


class WorkerRunner:
    def __init__(
        self,
        app: Application[Any],
        tracking: TrackingRecorder,
        handler: Handler,
        topics: Sequence[str],
        *,
        owns_tracking: bool = True,
    ):
        self.app = app
        self.tracking = tracking
        self._owns_tracking = owns_tracking
        self._handler = handler
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._subscription = ApplicationSubscription(
            app, gt=tracking.max_tracking_id(app.name), topics=topics
        )
        self._thread = threading.Thread(target=self._loop, daemon=True, name="worker")

    def __enter__(self) -> WorkerRunner:
        self._subscription.__enter__()
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            for event, tracking in self._subscription:
                self._handler(event, tracking)
                if self._stopping.is_set():
                    break
        except BaseException as error:
            self._error = error
        finally:
            self._stopping.set()

    def run_forever(self, timeout: float | None = None) -> None:
        if self._stopping.wait(timeout) and self._error is not None:
            error, self._error = self._error, None
            raise error

    @property
    def finished(self) -> bool:
        """Whether its thread has ended: one blocked on a lost database outlives stop()."""
        return not self._thread.is_alive()

    def wait(self, notification_id: int, timeout: float = 10.0) -> None:
        self.tracking.wait(self.app.name, notification_id, timeout=timeout)

    def stop(self) -> None:
        self._stopping.set()
        self._subscription.stop()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._thread.join(timeout=30)
        self._subscription.__exit__(*exc)
        datastore = getattr(self.tracking, "datastore", None)
        shared = getattr(getattr(self.app, "recorder", None), "datastore", None)
        if self._owns_tracking and datastore is not None and datastore is not shared:
            datastore.close()  # a pool made for this run; never the application's own
