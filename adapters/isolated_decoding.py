"""Running a pure decode function in a bounded child process.

DICOM pixel data is decoded by C and Rust libraries (openjpeg, libjpeg, CharLS, pylibjpeg's
plugins). A crafted file that makes one of them segfault, abort or allocate without bound
would take the whole server down if decoded in-process; in a child it takes only the child.

- Children come from the "forkserver" context, never "fork": the server has threads and a
  database pool, which a forked child would inherit half-locked.
- At most ``processes`` calls run at once; further callers wait for a free child before
  their clock starts, so a queue never eats into anyone's timeout.
- Each child's address space is capped (RLIMIT_AS): a memory bomb raises MemoryError there,
  which ``render_dicom`` (or ``render_dicom_isolated``) turns into ``dicom_too_large``.
- A child that dies breaks its pool: the pool is replaced and the call fails with
  ``dicom_decoder_crashed`` (422). A call running past ``timeout_seconds`` has its pool's
  children killed and fails with ``dicom_decode_timeout`` (422). A call that was only
  running beside the culprit is retried once, alone, on the new pool.
- Children exit by themselves when the server process ends, however it ends.

The function, its arguments, its result and its exceptions cross the process boundary by
pickle: module-level functions, bytes, arrays and ``OrthovaultError`` (see its
``__reduce__``).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import connection
from typing import Any, ParamSpec, TypeVar

import numpy as np
import structlog
from pydicom.dataset import Dataset

from adapters import dicom_codec
from domain.errors import TooLarge, Unprocessable

DECODER_CRASHED = "dicom_decoder_crashed"
DECODE_TIMEOUT = "dicom_decode_timeout"

log = structlog.get_logger("orthovault.isolated_decoding")

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class DecoderLimits:
    processes: int = 2
    memory_limit_mb: int = 4096
    timeout_seconds: float = 120.0


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        connection.wait([parent.sentinel])  # ready once the server process has ended
        os._exit(0)


def _limit_child(memory_limit_bytes: int) -> None:
    """Initializer, run in each child before its first call."""
    # Ctrl-C reaches the whole process group; stopping the children is the parent's job
    # (it shuts the pool down), not a traceback from every idle child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A child waiting for work never notices the server is gone (it holds its own queue's
    # write end), and it keeps the forkserver alive: after a server killed outright, exit.
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    ceiling = memory_limit_bytes if hard == resource.RLIM_INFINITY else min(
        memory_limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))


def _kill_children(pool: ProcessPoolExecutor) -> None:
    # Python 3.11's executor has no public way to stop a running call: kill its processes
    # (the executor then marks itself broken and reaps them).
    processes = getattr(pool, "_processes", None) or {}
    for _ in range(3):  # the manager thread may change the dict while it is copied
        try:
            children = list(processes.values())
            break
        except RuntimeError:
            continue
    else:
        children = []
    for child in children:
        child.kill()


class IsolatedRunner:
    """A lazily started pool of decoder children, replaced whenever one dies."""

    def __init__(self, limits: DecoderLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()  # guards _pool: created, replaced, shut down
        self._slots = threading.BoundedSemaphore(limits.processes)
        self._retry_lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def run(self, fn: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """``fn(*args, **kwargs)`` in a child; its exceptions are re-raised here."""
        with self._slots:
            try:
                return self._attempt(fn, args, kwargs)
            except BrokenProcessPool:
                pass
        # A dying child fails every call in flight on its pool, not just the one that killed
        # it. Each of them is retried once, alone on the new pool: a bystander then goes
        # through, while a crashing input crashes again without taking anyone with it.
        with self._alone():
            try:
                return self._attempt(fn, args, kwargs)
            except BrokenProcessPool:
                log.warning("decoder_crashed", function=getattr(fn, "__qualname__", "?"))
                raise Unprocessable(
                    DECODER_CRASHED, "Decoding the DICOM pixel data crashed the decoder."
                ) from None

    @contextmanager
    def _alone(self) -> Iterator[None]:
        """Hold every slot: no other call runs meanwhile."""
        with self._retry_lock:  # one collector at a time, or two could each hold some slots
            for _ in range(self.limits.processes):
                self._slots.acquire()
        try:
            yield
        finally:
            for _ in range(self.limits.processes):
                self._slots.release()

    def shutdown(self) -> None:
        """Stop the children after the calls in flight; the next call starts a new pool."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _attempt(self, fn: Callable[..., _R], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> _R:
        with self._lock:
            if self._pool is None:
                self._pool = self._new_pool()
            pool = self._pool
            try:
                future: Future[_R] = pool.submit(fn, *args, **kwargs)
            except BrokenProcessPool:
                self._pool = None
                pool.shutdown(wait=False)
                raise
        if not wait([future], timeout=self.limits.timeout_seconds).done:
            self._discard(pool, kill=True)
            log.warning("decode_timeout", function=getattr(fn, "__qualname__", "?"),
                        timeout_seconds=self.limits.timeout_seconds)
            raise Unprocessable(
                DECODE_TIMEOUT,
                f"Decoding the DICOM pixel data took longer than "
                f"{self.limits.timeout_seconds:g} s.",
            )
        try:
            return future.result()
        except BrokenProcessPool:
            self._discard(pool, kill=False)
            raise

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            max_workers=self.limits.processes,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_limit_child,
            initargs=(self.limits.memory_limit_mb * 1024 * 1024,),
        )
        # Start every child with the pool. Python 3.11 spawns non-fork children on demand,
        # and its manager thread only watches the children it knew when it last woke: a
        # child spawned meanwhile could die unnoticed until the next result (or timeout).
        pool._safe_to_dynamically_spawn_children = False  # type: ignore[attr-defined]
        return pool

    def _discard(self, pool: ProcessPoolExecutor, *, kill: bool) -> None:
        with self._lock:
            if self._pool is pool:  # another thread may have replaced it already
                self._pool = None
        if kill:
            _kill_children(pool)
        # Calls still in flight on it fail with BrokenProcessPool (and retry), never with
        # a cancellation nobody handles.
        pool.shutdown(wait=False)


# One runner per process, configured from Settings by api/services.Services.build.
_runner = IsolatedRunner(DecoderLimits())
_runner_lock = threading.Lock()


def configure(limits: DecoderLimits) -> DecoderLimits:
    """Use ``limits`` from now on; returns the previous ones (a no-op when unchanged)."""
    global _runner
    with _runner_lock:
        old = _runner
        if old.limits == limits:
            return limits
        _runner = IsolatedRunner(limits)
    old.shutdown()
    return old.limits


def shutdown() -> None:
    """Stop the children (Services.close); a later call starts them again."""
    _runner.shutdown()


def run_isolated(fn: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """``fn(*args, **kwargs)`` in a bounded child process (see the module docstring)."""
    return _runner.run(fn, *args, **kwargs)


def render_dicom_isolated(
    data: bytes, frame: int = 0, *, max_pixels: int = dicom_codec.DEFAULT_MAX_PIXELS,
    window: tuple[float, float, str] | None = None,
) -> np.ndarray:
    """``dicom_codec.render_dicom`` in a child process: same result, same error codes."""
    try:
        return run_isolated(dicom_codec.render_dicom, data, frame, max_pixels=max_pixels,
                            window=window)
    except MemoryError:
        # Out of memory outside render_dicom's own mapping (say while sending the frame
        # back): the same refusal as a frame too large to decode.
        raise TooLarge(dicom_codec.TOO_LARGE, "The frame is too large to decode.") from None


def _rendered_shape(data: bytes, frame: int, max_pixels: int) -> tuple[int, ...]:
    return dicom_codec.render_dicom(data, frame, max_pixels=max_pixels).shape


def check_renders_isolated(
    data: bytes, frame: int = 0, *, max_pixels: int = dicom_codec.DEFAULT_MAX_PIXELS
) -> tuple[int, ...]:
    """Render one frame in a child to prove it can be shown; only its shape comes back.

    The upload check needs no pixels: not sending them back halves what crosses the pipe.
    """
    try:
        return run_isolated(_rendered_shape, data, frame, max_pixels)
    except MemoryError:
        raise TooLarge(dicom_codec.TOO_LARGE, "The frame is too large to decode.") from None


def _pixel_array(ds: Dataset) -> np.ndarray:
    return ds.pixel_array


def pixel_array_isolated(ds: Dataset) -> np.ndarray:
    """``ds.pixel_array`` decoded in a child process (the dataset crosses by pickle)."""
    try:
        return run_isolated(_pixel_array, ds)
    except MemoryError:
        raise TooLarge(dicom_codec.TOO_LARGE, "The pixel data is too large to decode.") from None


def pixel_fingerprint_isolated(data: bytes) -> str:
    """``dicom_codec.pixel_fingerprint`` in a child process."""
    try:
        return run_isolated(dicom_codec.pixel_fingerprint, data)
    except MemoryError:
        raise TooLarge(dicom_codec.TOO_LARGE, "The pixel data is too large to decode.") from None
