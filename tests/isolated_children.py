"""Functions tests/test_isolated_decoding.py runs in decoder child processes.

A module of their own, importing nothing heavy: a child imports it to unpickle the function,
and a test module (with conftest and the whole app behind it) would take seconds.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def abort() -> None:
    os.abort()


def sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def pid() -> int:
    return os.getpid()


def pid_then_sleep(marker: str, seconds: float) -> str:
    """Announce this child's pid in ``marker``, then stay busy for ``seconds``."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


def sleep_then_kill(seconds: float) -> None:
    """Crash only after ``seconds``: long enough for a neighbour to be mid-call."""
    time.sleep(seconds)
    os.kill(os.getpid(), signal.SIGKILL)
