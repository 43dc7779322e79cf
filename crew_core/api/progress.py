"""A progress bar of jobs done, errors and crashes (tqdm), for ``map`` on a crew or an executor."""

from __future__ import annotations

import sys
import threading
from typing import Any

from crew_core.results import CRASH, ERROR


def check_progress(progress: Any) -> None:
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, not {progress!r}")


def _name(fun: Any) -> str:
    return str(getattr(fun, "__qualname__", type(fun).__name__))


class Progress:
    """Counts finished jobs from any thread; shows a bar on standard error when ``show`` is True,
    or (``show`` None) when standard error is a terminal."""

    def __init__(self, total: int, fun: Any, show: bool | None) -> None:
        from tqdm import tqdm  # only map() pays for importing it

        enabled = sys.stderr.isatty() if show is None else show
        self._bar = tqdm(total=total, desc=_name(fun), unit="job", disable=not enabled, dynamic_ncols=True)
        self._lock = threading.Lock()  # jobs finish in the crew's thread and in users' threads
        self.errors = self.crashes = 0

    def finished(self, status: str, jobs: int = 1) -> None:
        with self._lock:
            self.errors += jobs if status == ERROR else 0
            self.crashes += jobs if status == CRASH else 0
            self._bar.set_postfix(errors=self.errors, crashes=self.crashes, refresh=False)
            self._bar.update(jobs)

    def close(self) -> None:
        with self._lock:
            self._bar.close()
