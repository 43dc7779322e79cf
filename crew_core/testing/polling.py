"""Deadline-based waiting for tests: poll a condition instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from crew_core.plugin.processes import process_alive

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.01, what: str = "") -> T:
    """Return the first truthy value of ``condition()``; fail the test after ``timeout`` seconds.

    The timeout is a generous ceiling for slow machines, not a performance assertion.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


def process_gone(pid: int) -> bool:
    """True once process ``pid`` has exited (for :func:`wait_for`)."""
    return not process_alive(pid)
