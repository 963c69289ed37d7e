"""The shape every per-image worker shares: look at the image, work, record, or say why not.

Idempotent by construction: the image's own state says whether anything is left to do
(destroyed, already processed, or already failed means nothing), so replaying an event after
a crash records nothing twice. Losing an optimistic-concurrency race (someone tagged the
image meanwhile) reloads it and tries again. A file the worker cannot handle is recorded as
``ProcessingFailed`` with a code; the runner never stops on one bad file. A full disk is
not a bad file: it stops the runner, and the supervisor retries until space is freed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

import structlog
from eventsourcing.persistence import IntegrityError

from domain.errors import Gone, StorageFull
from domain.image import Image, ImageStatus
from domain.imaging import Imaging
from domain.values import Actor

log = structlog.get_logger("orthovault.workers")
Result = TypeVar("Result")
ATTEMPTS = 3


def process_image(
    app: Imaging,
    image_id: UUID,
    *,
    worker: str,
    stage: str,
    wanted: Callable[[Image], bool],
    compute: Callable[[Image], Result],
    record: Callable[[Actor, UUID, Result], Any],
    failure_code: Callable[[Exception], str],
    failures: tuple[type[Exception], ...] = (Exception,),
    done: Callable[[Image], bool] | None = None,
    record_failure: Callable[[Actor, UUID, str], Any] | None = None,
) -> None:
    """``done`` says the stage already happened (default: derivatives or a failure exist);
    ``record_failure`` records a stage's failure (default: ``ProcessingFailed``)."""
    finished = done or _processed
    for _attempt in range(ATTEMPTS):
        try:
            image: Image = app.repository.get(image_id)
        except Gone:
            return  # destroyed before we got to it
        if image.status == ImageStatus.DESTROYED.value or finished(image) or not wanted(image):
            return
        actor = Actor(user_id=worker, role="system", clinic_id=image.clinic_id)
        try:
            result = compute(image)
        except Gone:
            return
        except StorageFull:
            # Not this file's fault: the runner stops, the supervisor restarts it with a
            # growing pause (visible in /metrics), and the image is redone once space is free.
            raise
        except failures as error:
            code = failure_code(error)
            log.warning("processing_failed", worker=worker, image_id=str(image.id), code=code,
                        error=type(error).__name__)
            try:
                if record_failure is not None:
                    record_failure(actor, image.id, code)
                else:
                    app.record_processing_failure(actor, image.id, stage, code)
            except IntegrityError:
                continue
            return
        try:
            record(actor, image.id, result)
        except IntegrityError:
            continue  # the image changed meanwhile; look again
        return


def _processed(image: Image) -> bool:
    return bool(image.derivatives or image.processing_failure)
