"""A joblib backend named ``"crew"``, registered when this module is imported.

>>> import crew_core.api.joblib  # doctest: +SKIP
>>> with joblib.parallel_config(backend="crew", n_jobs=4):  # doctest: +SKIP
...     GridSearchCV(model, grid).fit(X, y)  # scikit-learn's fits run on crew workers

Keyword arguments of ``parallel_config`` go to :class:`CrewBackend`: ``crew=`` sends to a crew
of yours; otherwise ``store``, ``worker_class``, ``tags`` and further options make the backend's
own :class:`~crew_core.CrewExecutor` of ``n_jobs`` workers. As with joblib's default (loky), the
workers stay warm between ``Parallel`` calls and leave after ``idle_timeout`` seconds idle
(they come back when work does); they end with the interpreter.

Calls go in joblib's automatic batches, as with loky: joblib sizes them from how long each took,
so that a batch of tiny calls costs one crew job (``parallel_config(batch_size=...)`` fixes it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from joblib.parallel import AutoBatchingMixin, ParallelBackendBase, register_parallel_backend

from crew_core.api.crew import Crew
from crew_core.api.executor import CrewExecutor

#: Seconds a warm worker of the backend's own executor waits for work before leaving.
IDLE_TIMEOUT = 300.0

_lock = threading.Lock()
_executors: dict[tuple[Any, ...], CrewExecutor] = {}  # the backend's own, by what they were asked for
_users: dict[tuple[Any, ...], int] = {}  # Parallel calls using each now


def _take_executor(key: tuple[Any, ...], make: Callable[[], CrewExecutor]) -> CrewExecutor:
    """An executor of the backend's own for ``key``: the warm one if there is, else a new one.

    An executor no running call uses is shut down when a call asks for a different one, so that
    at most one idles; one in use by another call (another thread) is never touched.
    """
    with _lock:
        for other in [k for k, users in _users.items() if not users and k != key]:
            _executors.pop(other).shutdown(wait=False)
            del _users[other]
        executor = _executors.get(key)
        if executor is None or executor._shared.shut:
            executor = _executors[key] = make()
        _users[key] = _users.get(key, 0) + 1
        return executor


def _give_back(key: tuple[Any, ...]) -> None:
    with _lock:
        if _users.get(key):
            _users[key] -= 1


class CrewBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]  # joblib ships no types
    """Runs joblib's batches of calls as crew jobs (see the module's docstring)."""

    supports_retrieve_callback = True
    default_n_jobs = 1

    def __init__(
        self,
        crew: Crew | None = None,
        *,
        store: Any = None,
        worker_class: Any = None,
        tags: Any = None,
        idle_timeout: float | None = IDLE_TIMEOUT,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads)
        if crew is not None and not isinstance(crew, Crew):
            raise TypeError(f"crew must be a Crew, not {type(crew).__name__}")
        self._crew = crew
        self._tags = tags
        self._options = {"store": store, "worker_class": worker_class, "idle_timeout": idle_timeout, **options}
        self._executor: CrewExecutor | None = None
        self._futures: set[Future[Any]] = set()  # this backend's calls not done yet
        self._key: tuple[Any, ...] | None = None  # of the shared executor this backend uses now

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        if self._crew is not None:
            return max(1, len(self._crew.workers))
        if n_jobs is None:
            n_jobs = self.default_n_jobs
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs < 0:  # -1: one per CPU, -2: all but one, ... as joblib counts
            n_jobs = max((os.cpu_count() or 1) + 1 + n_jobs, 1)
        return int(n_jobs)

    def configure(self, n_jobs: int = 1, parallel: Any = None, **backend_kwargs: Any) -> int:
        n_jobs = self.effective_n_jobs(n_jobs)
        self.parallel = parallel
        self.terminate()  # configured again without terminate(): let go of the last executor first
        if self._crew is not None:
            self._executor = CrewExecutor(crew=self._crew, tags=self._tags)
        else:
            options = dict(self._options)
            key = (n_jobs, repr(self._tags), tuple(sorted((k, repr(v)) for k, v in options.items())))
            self._executor = _take_executor(key, lambda: CrewExecutor(n_jobs, tags=self._tags, **options))
            self._key = key
        return n_jobs

    def terminate(self) -> None:
        """The Parallel call ended: its executor stays warm for the next call that asks for it."""
        if self._key is not None:
            _give_back(self._key)
            self._key = None

    def submit(self, func: Any, callback: Any = None) -> Future[Any]:
        assert self._executor is not None, "configure() comes first"
        future = self._executor.submit(func)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def retrieve_result_callback(self, out: Future[Any]) -> Any:
        return out.result()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """A call failed: the batches not started yet are cancelled; running ones finish."""
        for future in list(self._futures):
            future.cancel()


register_parallel_backend("crew", CrewBackend)
