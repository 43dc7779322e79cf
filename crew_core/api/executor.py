""":class:`CrewExecutor`: a :class:`concurrent.futures.Executor` whose calls run on a crew's workers.

Each ``submit`` is one crew job whose result goes to a standard :class:`~concurrent.futures.Future`
(a *claim* on the job, so :meth:`Crew.receive` never sees it). The future turns RUNNING when its
job goes to a worker; until then ``Future.cancel()`` takes the job out of the crew.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, InvalidStateError
from concurrent.futures import wait as wait_for
from typing import Any

from crew_core.api.checks import job_timeout as check_job_timeout
from crew_core.api.crew import Crew
from crew_core.api.progress import Progress, check_progress
from crew_core.chunks import call_chunk
from crew_core.config import CREW_DEFAULTS
from crew_core.deprecation import DEFAULT, Default, renamed
from crew_core.engine.ledger import Job
from crew_core.errors import WorkerCrashedError
from crew_core.plugin.worker import as_tags
from crew_core.results import CRASH, ERROR, SUCCESS, Result

#: Keyword arguments that go to :class:`Crew` (the rest go to the worker class, via ``recruit``).
_CREW_ARGUMENTS = frozenset(CREW_DEFAULTS) | {"name", "store_options", "plugins", "worker_classes"}

_executors: weakref.WeakSet[_Shared] = weakref.WeakSet()
_exiting = False


def _at_exit() -> None:
    """As with the standard executors, the interpreter exits once submitted calls have finished.

    Registered after the crew's own hook, so it runs before it, while crews still work.
    """
    global _exiting
    _exiting = True
    for shared in list(_executors):
        shared.finish_at_exit()


threading._register_atexit(_at_exit)  # type: ignore[attr-defined]
os.register_at_fork(after_in_child=_executors.clear)  # a forked process's copies are not its executors (see open_crews)


class _FutureClaim:
    """Takes one job's result into its future (see ``ledger.Claim``)."""

    __slots__ = ("_told", "future", "job", "shared")
    raises_errors = False  # Future.result() does not ask the crew: a store gone for good is its result

    def __init__(self, future: Future[Any], shared: _Shared) -> None:
        self.future = future
        self.shared = shared
        self.job: Job | None = None
        self._told = threading.Lock()  # held for good once the future was told it runs or is cancelled

    def _tell(self) -> None:
        """``set_running_or_notify_cancel``, once: a second call would log at CRITICAL and raise."""
        if self._told.acquire(blocking=False):
            self.future.set_running_or_notify_cancel()

    def started(self) -> None:
        self._tell()  # a cancelled one is told so (wait() and as_completed() see it); its job runs anyway

    def finished(self, result: Result) -> None:
        future = self.future
        error = result.error
        try:
            if error is None:
                future.set_result(result.value)
            else:
                if result.traceback and result.worker is not None:
                    error.add_note(f"(raised on crew worker {result.worker}:)\n{result.traceback.rstrip()}")
                future.set_exception(error)
        except InvalidStateError:  # cancelled in the same instant: its result goes nowhere
            self._tell()

    def done(self, future: Future[Any]) -> None:
        """The future's first done-callback: forget it, and withdraw the job of a cancelled one."""
        self.shared.forget(future)
        if future.cancelled() and self.job is not None and self.shared.crew._manager.withdraw(self.job):
            self._tell()


class _Shared:
    """What an executor and its :meth:`CrewExecutor.options` views share."""

    def __init__(self, crew: Crew, owns: bool) -> None:
        self.crew = crew
        self.owns = owns
        self.lock = threading.Lock()
        self.pending: dict[Future[Any], None] = {}  # in submission order; done ones are forgotten
        self.shut = False
        self._closed = False
        self._closing = threading.Lock()

    def forget(self, future: Future[Any]) -> None:
        with self.lock:
            self.pending.pop(future, None)

    def unfinished(self) -> list[Future[Any]]:
        with self.lock:
            return [future for future in self.pending if not future.cancelled()]

    def close_crew(self) -> None:
        with self._closing:  # a second caller (the exit hook) waits until the crew is closed
            if self._closed or not self.owns:
                return
            self.crew.close()
            self._closed = True

    def finish_at_exit(self) -> None:
        try:
            wait_for(self.unfinished())
        finally:
            self.close_crew()  # only one it made


class CrewExecutor(Executor):
    """A :class:`concurrent.futures.Executor` that runs calls on a crew's workers.

    >>> with CrewExecutor(max_workers=2) as executor:
    ...     executor.submit(pow, 2, 10).result()
    1024

    Without ``crew`` it makes its own crew (``store``; further keyword arguments are
    :class:`Crew` settings such as ``max_tries`` or ``name``, or options of ``worker_class``) with
    ``max_workers`` workers (default: the number of CPUs) carrying ``tags``, and closes it at
    :meth:`shutdown`. With ``crew=`` it sends to that crew's workers and leaves it open.
    ``tags`` are the jobs' tags; :meth:`options` gives a view with other ones. ``initializer``
    and ``initargs`` are ``ProcessPoolExecutor``'s: ``initializer(*initargs)`` runs in each of
    its workers' launches before the first call (see :meth:`Crew.recruit`).

    Futures are standard ones: ``as_completed``, ``wait``, ``asyncio.wrap_future`` and
    done-callbacks work. A callback runs in the thread that collected the result and must not
    wait for other results of the crew.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        crew: Crew | None = None,
        store: Any = None,
        worker_class: Any = None,
        tags: str | Iterable[str] | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        **settings: Any,
    ) -> None:
        job_tags = as_tags(tags)
        if crew is not None:
            if not isinstance(crew, Crew):
                raise TypeError(f"crew must be a Crew, not {type(crew).__name__}")
            given = [name for name, value in (("max_workers", max_workers), ("store", store),
                     ("worker_class", worker_class), ("initializer", initializer)) if value is not None]
            given += ["initargs"] * (initargs != ()) + sorted(settings)  # fmt: skip
            if given:
                raise TypeError(
                    f"CrewExecutor(crew=...) sends to the crew's own workers; {', '.join(given)} would make a "
                    "new crew: recruit workers on the crew instead"
                )
            crew._check_runnable(job_tags)
            shared = _Shared(crew, owns=False)
            self._max_workers = len(crew.workers)
        else:
            if max_workers is None:
                max_workers = os.cpu_count() or 1
            if isinstance(max_workers, bool) or not isinstance(max_workers, int):
                raise TypeError(f"max_workers must be an integer or None, not {max_workers!r}")
            if max_workers <= 0:
                raise ValueError("max_workers must be greater than 0")
            crew_settings = {key: value for key, value in settings.items() if key in _CREW_ARGUMENTS}
            options = {key: value for key, value in settings.items() if key not in _CREW_ARGUMENTS}
            if "timeout" in options:  # recruit's old keyword, as the workers' idle timeout (None: the default)
                renamed("CrewExecutor(timeout=)", "CrewExecutor(idle_timeout=)")
                idle = options.pop("timeout")
                if idle is not None:
                    options.setdefault("idle_timeout", idle)
            new = Crew(store=store, **crew_settings)
            try:
                missing = max_workers - len(new.workers)  # a resumed named crew has its workers back
                if missing > 0:
                    new.recruit(workers=missing, worker_class=worker_class, tags=job_tags, initializer=initializer,
                                initargs=initargs, **options)  # fmt: skip
            except BaseException:
                new.close()
                raise
            shared = _Shared(new, owns=True)
            self._max_workers = max_workers
        self._shared = shared
        self._tags = job_tags
        self._job_timeout: float | Default | None = DEFAULT
        _executors.add(shared)

    @property
    def crew(self) -> Crew:
        """The crew the calls run on."""
        return self._shared.crew

    def options(
        self,
        *,
        tags: str | Iterable[str] | None = None,
        job_timeout: float | Default | None = DEFAULT,
        timeout: float | None = None,
    ) -> CrewExecutor:
        """This executor with other job options: ``executor.options(tags="gpu", job_timeout=60).submit(...)``.

        ``job_timeout``: seconds each call may run (omitted: the crew's ``job_timeout``; None or
        ``math.inf``: no limit; see :meth:`Crew.send`); a call past it raises
        :class:`JobTimeoutError`, a ``TimeoutError``. The view shares the crew, the pending futures
        and :meth:`shutdown` with this executor. (``timeout=`` is the deprecated name of
        ``job_timeout=``.)
        """
        if timeout is not None:  # the old keyword: None was the crew's default
            renamed("CrewExecutor.options(timeout=)", "CrewExecutor.options(job_timeout=)")
            if job_timeout is DEFAULT:
                job_timeout = timeout
        job_tags = as_tags(tags)
        self._shared.crew._check_runnable(job_tags)
        if job_timeout is not DEFAULT:
            check_job_timeout(job_timeout)
        view = object.__new__(CrewExecutor)
        view._shared, view._tags, view._max_workers = self._shared, job_tags, self._max_workers
        view._job_timeout = job_timeout
        return view

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` as a crew job; return its :class:`~concurrent.futures.Future`."""
        shared = self._shared
        future: Future[Any] = Future()
        claim = _FutureClaim(future, shared)
        with shared.lock:
            if shared.shut:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if _exiting:
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            shared.pending[future] = None  # before it is sent: its result may come back at once
            try:
                claim.job = shared.crew._send(fn, args, kwargs, self._tags, claim, self._job_timeout)
            except BaseException:
                del shared.pending[future]
                raise
        future.add_done_callback(claim.done)
        return future

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        progress: bool | None = None,
    ) -> Iterator[Any]:
        """Like the built-in ``map``, calls run as crew jobs; results come in input order.

        All calls are sent at once. Iterating raises ``TimeoutError`` if a result is not there
        ``timeout`` seconds after this call, and a call's error when its result is reached;
        calls not reached then are cancelled. ``chunksize`` items travel as one job (fewer,
        larger jobs); ``progress`` shows a bar (done, errors, crashes) as for :meth:`Crew.map`.
        """
        if isinstance(chunksize, bool) or not isinstance(chunksize, int):
            raise TypeError(f"chunksize must be an integer, not {chunksize!r}")
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        check_progress(progress)
        deadline = None if timeout is None else time.monotonic() + timeout
        calls = zip(*iterables, strict=False)
        futures: list[Future[Any]] = []
        sizes: list[int] = []
        failure: BaseException | None = None
        with self._shared.crew.batch():  # a named crew writes them all at once
            try:  # as the standard map: calls sent before an input fails still run
                for chunk in _chunks(calls, chunksize):
                    if chunksize == 1:
                        futures.append(self.submit(fn, *chunk[0]))
                    else:
                        futures.append(self.submit(call_chunk, fn, chunk))
                    sizes.append(len(chunk))
            except BaseException as exc:
                failure = exc
        if failure is not None:
            raise failure
        bar = _watch(futures, sizes, fn, progress)
        return _in_order(futures, deadline, chunksize > 1, bar)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more calls; ``cancel_futures`` cancels those not started; ``wait`` waits for the rest.

        An executor that made its crew closes it once its calls are done (at once with ``wait``,
        in the background without); one given ``crew=`` leaves the crew open.
        """
        shared = self._shared
        with shared.lock:
            shared.shut = True
            pending = list(shared.pending)
        if cancel_futures:
            if not shared.crew._closed:  # calls a worker can take now go to it; the rest are cancelled
                shared.crew._manager.sync()
            for future in pending:  # in submission order: each leaves the front of the backlog
                future.cancel()
        if wait:
            wait_for(shared.unfinished())
            shared.close_crew()
        elif shared.owns:
            threading.Thread(target=shared.finish_at_exit, name="crew-executor-shutdown", daemon=True).start()

    def __repr__(self) -> str:
        shared = self._shared
        state = " shut down" if shared.shut else ""
        return f"<CrewExecutor crew={shared.crew.id} workers={self._max_workers} pending={len(shared.pending)}{state}>"


def _chunks(calls: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    while chunk := list(itertools.islice(calls, size)):
        yield chunk


def _watch(futures: list[Future[Any]], sizes: list[int], fn: Any, show: bool | None) -> Progress | None:
    """A progress bar counting the calls of ``futures`` (``sizes`` calls each) as they finish."""
    import sys

    if not futures or not (sys.stderr.isatty() if show is None else show):
        return None
    bar = Progress(sum(sizes), fn, True)

    def count(future: Future[Any], calls: int) -> None:
        if not future.cancelled():
            error = future.exception()
            bar.finished(SUCCESS if error is None else CRASH if isinstance(error, WorkerCrashedError) else ERROR, calls)

    for future, calls in zip(futures, sizes, strict=True):
        future.add_done_callback(functools.partial(count, calls=calls))
    return bar


def _take(futures: list[Future[Any]], deadline: float | None) -> Any:
    """The last future's result (it leaves ``futures``); a timeout cancels it."""
    future = futures.pop()
    try:
        return future.result(None if deadline is None else max(0.0, deadline - time.monotonic()))
    finally:
        future.cancel()  # a finished one stays as it is
        del future


def _in_order(futures: list[Future[Any]], deadline: float | None, chunked: bool, bar: Progress | None) -> Iterator[Any]:
    """Yield results in order, holding no reference to one already yielded; cancel the rest on exit."""
    futures.reverse()
    try:
        while futures:
            if chunked:
                yield from _take(futures, deadline)
            else:
                yield _take(futures, deadline)  # no local name: the caller may drop the value at once
    finally:
        for future in reversed(futures):  # in submission order
            future.cancel()
        if bar is not None:
            bar.close()
