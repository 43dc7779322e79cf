"""The :class:`Crew` controller: recruit workers, send jobs, receive results, shut down.

The controller owns every decision: which worker runs which job, when a worker is launched,
stopped, declared dead or restarted. It talks to workers only through the store (see
``protocol.py``), and it makes progress whenever one of its methods is called.
"""

from __future__ import annotations

import atexit
import math
import os
import time
import uuid
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import protocol
from .backlog import Backlog
from .errors import (
    CorruptObjectError,
    CrewError,
    KeyNotFoundError,
    NoWorkersError,
    PluginError,
    UnknownTagError,
    WorkerCrashedError,
    WorkerLaunchError,
    WorkerLostError,
)
from .plugins import Plugins, default_plugins, store_spec
from .results import CRASH, ERROR, Job, Result
from .runtime import WorkerSettings
from .serialize import dump_call, load_outcome
from .store import Store
from .worker import Launch, Worker, as_tags

#: A batch of jobs of known duration is filled up to about this many seconds of work.
BATCH_SECONDS = 0.02
#: Never more jobs than this in one batch.
MAX_BATCH = 1000
#: Jobs estimated shorter than this may be queued on a worker behind its current batch.
PIPELINE_SECONDS = 0.005
#: A worker gets a second batch behind its current one only once this many jobs wait: sending
#: one job at a time to a busy worker would cost a store round trip per job.
PIPELINE_MIN_JOBS = 16
#: Seconds before an automatic restart that failed to launch is tried again.
RESTART_RETRY = 5.0

_open_crews: weakref.WeakSet[Crew] = weakref.WeakSet()


@atexit.register
def _close_open_crews() -> None:  # no worker outlives the interpreter that launched it
    for crew in list(_open_crews):
        try:
            crew.close()
        except Exception:
            pass


@dataclass(eq=False)
class _WorkerState:
    """What the controller knows about one worker (one incarnation at a time)."""

    up: bool = False
    incarnation: int = 0
    prefix: str = ""
    channel: str = ""
    next_seq: int = 1
    outstanding: dict[int, list[Job]] = field(default_factory=dict)  # task seq -> its jobs
    held: list[Job] = field(default_factory=list)  # jobs kept while the worker is stuck
    pipelined: bool = False  # the last batch was short enough to queue another behind it
    stop_requested: float | None = None
    restart_after: float = 0.0  # an automatic restart that failed is retried after this time
    beat: int = 0
    beat_changed: float = 0.0
    beat_read: float = 0.0
    beat_seen: bool = False


class Crew:
    """A pool of semi-persistent workers fed through a store.

    >>> with Crew(store="local", worker_classes=["subprocess"]) as crew:
    ...     crew.recruit(workers=2)
    ...     job = crew.send(pow, args=(2, 10))
    ...     crew.receive().value
    1024

    ``store`` is a store name (``"local"``), a URL or path, or a :class:`Store`; ``worker_classes``
    are names or :class:`Worker` subclasses, the first being the default of :meth:`recruit`.
    Keyword settings (``max_tries``, ``heartbeat_interval``, ``heartbeat_timeout``,
    ``stop_grace``, ``auto_restart``) override the defaults that plugins set in ``crew_configure``.
    """

    def __init__(
        self,
        store: str | Store | None = None,
        worker_classes: Iterable[str | type[Worker]] | None = None,
        *,
        store_options: dict[str, Any] | None = None,
        plugins: Plugins | None = None,
        **settings: Any,
    ) -> None:
        self._plugins = plugins or default_plugins()
        config = dict(self._plugins.config["crew"])
        for key, value in settings.items():
            if key not in config or key in ("store", "worker_classes"):
                raise TypeError(f"Crew() got an unknown setting {key!r}; known: {sorted(config)}")
            config[key] = value
        self.max_tries: int = int(config["max_tries"])
        self.stop_grace: float = float(config["stop_grace"])
        self.auto_restart: bool = bool(config["auto_restart"])
        if self.max_tries < 1:
            raise ValueError("max_tries must be at least 1")

        self.id = uuid.uuid4().hex[:12]
        self.store, self._owns_store = self._make_store(store or config.get("store"), store_options or {})
        # Heartbeats are store writes: a store whose requests cost money asks for fewer of them.
        self.heartbeat_interval: float = float(config["heartbeat_interval"] or self.store.heartbeat_interval)
        self.heartbeat_timeout: float = float(config["heartbeat_timeout"] or max(60.0, 10 * self.heartbeat_interval))
        self._store_spec = store_spec(self.store)
        names = worker_classes if worker_classes is not None else config.get("worker_classes")
        if names is None:
            names = self._plugins.workers.names()
        self.worker_classes: list[type[Worker]] = [self._worker_class(n) for n in names]

        self.workers: dict[str, Worker] = {}
        self._states: dict[str, _WorkerState] = {}
        self._backlog = Backlog()
        self._pending: dict[int, Job] = {}  # every job sent and not yet answered
        self._results: deque[Result] = deque()
        self._durations: dict[str, float] = {}  # job kind -> running mean of seconds
        self._next_job = 1
        self._next_worker = 1
        self._channel = protocol.controller_channel(self.id)
        low, high = self.store.poll_interval
        self._poll_bounds = (low, high)  # notifications end waits early; polls back off regardless
        self._poll_pause = self._poll_bounds[0]
        self._next_store_poll = 0.0
        self._next_status = 0.0
        self._class_due: dict[type[Worker], float] = {}  # when each worker class is next asked
        self._closed = False
        self.store.wait(self._channel, 0)  # listen before any worker can ring
        _open_crews.add(self)

    # ------------------------------------------------------------------ construction helpers
    def _make_store(self, store: str | Store | None, options: dict[str, Any]) -> tuple[Store, bool]:
        if isinstance(store, Store):
            return store, False
        if not store:
            raise PluginError("no store given and no plugin sets a default one: pip install crew-local")
        if "://" in store:
            cls = self._plugins.store_class_for_scheme(store.split("://", 1)[0])
            merged = {**self._plugins.config[cls.name], **options}
            return cls.from_url(store, **merged), True
        if store in self._plugins.stores:
            cls = self._plugins.store_class(store)
            return cls(**{**self._plugins.config[cls.name], **options}), True
        if store.startswith(("/", ".", "~")) or os.sep in store:
            cls = self._plugins.store_class_for_scheme("file")
            return cls.from_url(store, **{**self._plugins.config[cls.name], **options}), True
        self._plugins.store_class(store)  # raises PluginError listing the known stores
        raise AssertionError("unreachable")

    def _worker_class(self, spec: str | type[Worker]) -> type[Worker]:
        if isinstance(spec, type) and issubclass(spec, Worker):
            return spec
        if isinstance(spec, str):
            return self._plugins.workers.get(spec)
        raise TypeError(f"a worker class is a registered name or a Worker subclass, not {spec!r}")

    # ------------------------------------------------------------------ recruiting
    def recruit(
        self,
        workers: int = 1,
        worker_class: str | type[Worker] | None = None,
        *,
        tags: str | Iterable[str] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> list[Worker]:
        """Add ``workers`` workers (not started yet) and return them.

        ``timeout`` is each worker's idle timeout in seconds (None: until shut down); ``tags``
        are the tags it carries; other keyword ``options`` go to the worker class (on top of
        defaults set by ``crew_configure``).
        """
        self._check_open()
        if workers < 0:
            raise ValueError("workers must be zero or more")
        cls = self._worker_class(worker_class) if worker_class is not None else self._default_worker_class()
        merged = {**self._plugins.config[cls.worker_class], **options}
        recruited = []
        for _ in range(workers):
            name = f"{cls.worker_class or cls.__name__.lower()}-{self._next_worker}"
            try:
                worker = cls(name, tags=tags, timeout=timeout, **merged)
            except TypeError as exc:
                raise TypeError(f"worker class {cls.worker_class!r} rejected its options: {exc}") from exc
            self._next_worker += 1
            worker._crew = self
            self.workers[name] = worker
            self._states[name] = _WorkerState()
            recruited.append(worker)
        return recruited

    def _default_worker_class(self) -> type[Worker]:
        if not self.worker_classes:
            raise PluginError("this crew has no worker classes: install crew-local or pass worker_classes=")
        return self.worker_classes[0]

    # ------------------------------------------------------------------ jobs in and out
    def send(
        self,
        fun: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        tags: str | Iterable[str] | None = None,
    ) -> int:
        """Queue ``fun(*args, **kwargs)`` and return the job's id; never blocks.

        The job runs on a worker that carries every tag in ``tags``. It starts at once on an idle
        worker, or launches a matching worker that is down, or waits in the backlog until a
        matching worker frees up.
        """
        self._check_open()
        job_tags = as_tags(tags)
        self._check_runnable(job_tags)
        payload = dump_call(fun, tuple(args), dict(kwargs or {}))
        kind = f"{getattr(fun, '__module__', '')}.{getattr(fun, '__qualname__', type(fun).__qualname__)}"
        job = Job(self._next_job, payload, job_tags, kind)
        self._next_job += 1
        self._pending[job.id] = job
        self._backlog.push(job)
        try:
            self._poll()
        except Exception as exc:
            if self._backlog.remove(job):  # nothing half-created: the job was never accepted
                del self._pending[job.id]
                raise
            # The job is with a worker; the failure concerns other work and will surface again.
            warnings.warn(f"job {job.id} was sent, but the crew then hit an error: {exc}", stacklevel=2)
        return job.id

    def receivable(self, tags: str | Iterable[str] | None = None) -> bool:
        """True when :meth:`receive` would return a result at once (for jobs with ``tags``)."""
        self._check_open()
        self._poll()
        wanted = as_tags(tags)
        return any(wanted <= result.tags for result in self._results)

    def receive(self, timeout: float | None = None, tags: str | Iterable[str] | None = None) -> Result | None:
        """Return the next finished job's :class:`Result`, waiting up to ``timeout`` seconds.

        Returns None when the timeout passes, or at once when no job (with ``tags``) is in flight.
        """
        self._check_open()
        wanted = as_tags(tags)
        deadline = None if timeout is None else time.monotonic() + timeout
        wait = 0.0
        while True:
            self._poll(wait)
            result = self._pop_result(wanted)
            if result is not None:
                return result
            if not self._waiting_on(wanted):
                return None
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return None
            wait = max(0.0, min(self._next_store_poll, self._next_status) - now)
            if deadline is not None:
                wait = min(wait, deadline - now)

    def results(self, timeout: float | None = None) -> Iterator[Result]:
        """Yield results as they finish until nothing is in flight (or ``timeout`` passes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            result = self.receive(timeout=left)
            if result is None:
                return
            yield result

    def sendable(self, tags: str | Iterable[str] | None = None) -> bool:
        """True when a job with ``tags`` sent now would start at once instead of waiting."""
        self._check_open()
        self._poll()
        wanted = as_tags(tags)
        for worker in self.workers.values():
            state = self._states[worker.name]
            if not wanted <= worker.tags:
                continue
            if state.up and state.stop_requested is None and not state.outstanding:
                return True
            if not state.up and not state.held:
                return True
        return False

    def _pop_result(self, wanted: frozenset[str]) -> Result | None:
        if not wanted:
            return self._results.popleft() if self._results else None
        for index, result in enumerate(self._results):
            if wanted <= result.tags:
                del self._results[index]
                return result
        return None

    def _waiting_on(self, wanted: frozenset[str]) -> bool:
        """True while a job with ``wanted`` tags may still finish without the user's help.

        Not so for jobs held by stuck workers, nor for waiting jobs that only stuck workers could
        run: with ``auto_restart`` off they wait for :meth:`restart`.
        """
        stuck = [w for w in self.workers.values() if self._is_stuck(self._states[w.name])]
        if not stuck or self.auto_restart:  # with auto_restart, stuck workers are relaunched
            return any(wanted <= job.tags for job in self._pending.values()) if wanted else bool(self._pending)
        held = {job.id for w in stuck for job in self._states[w.name].held}
        free = [w.tags for w in self.workers.values() if not self._is_stuck(self._states[w.name])]
        waiting = {job.id for job in self._backlog}
        for job in self._pending.values():
            if not wanted <= job.tags or job.id in held:
                continue
            if job.id not in waiting or any(job.tags <= tags for tags in free):
                return True
        return False

    @staticmethod
    def _is_stuck(state: _WorkerState) -> bool:
        return not state.up and bool(state.held)

    def _check_runnable(self, tags: frozenset[str]) -> None:
        if not self.workers:
            raise NoWorkersError("the crew has no workers: call crew.recruit() before crew.send()")
        if any(tags <= worker.tags for worker in self.workers.values()):
            return
        carried = set().union(*(worker.tags for worker in self.workers.values()))
        missing = sorted(tags - carried)
        if missing:
            raise UnknownTagError(f"no worker carries the tag(s) {', '.join(map(repr, missing))}")
        raise UnknownTagError(f"no single worker carries all of the tags {', '.join(map(repr, sorted(tags)))}")

    # ------------------------------------------------------------------ worker control
    def launch(self, workers: int | None = None, tags: str | Iterable[str] | None = None) -> list[Worker]:
        """Start up to ``workers`` down workers carrying ``tags`` (all of them by default)."""
        self._check_open()
        chosen = [w for w in self._select(tags) if not self._states[w.name].up and not self._states[w.name].held]
        chosen = chosen if workers is None else chosen[:workers]
        self._launch_many(chosen)  # one backend call per class: job arrays, batched submissions
        return chosen

    def shutdown(self, tags: str | Iterable[str] | None = None, idle_only: bool = True) -> list[Worker]:
        """Ask workers carrying ``tags`` to stop (only idle ones by default); returns them.

        The request goes through the store; a worker that does not answer within ``stop_grace``
        seconds is killed. Jobs a stopped worker had not started go back to the backlog.
        """
        self._check_open()
        self._poll()
        chosen = []
        for worker in self._select(tags):
            state = self._states[worker.name]
            if state.up and state.stop_requested is None and not (idle_only and state.outstanding):
                self._request_stop(worker)
                chosen.append(worker)
        return chosen

    def dismiss(self, tags: str | Iterable[str] | None = None) -> list[Worker]:
        """Stop workers carrying ``tags`` now and remove them from the crew.

        Jobs they held go to the remaining workers; a job that no remaining worker can run comes
        back as an error result (:class:`WorkerLostError`).
        """
        self._check_open()
        chosen = list(self._select(tags))
        self._stop_now(chosen)
        for worker in chosen:
            state = self._states.pop(worker.name)
            self._backlog.push_front(state.held)
            del self.workers[worker.name]
            worker.close()
            worker._crew = None

        def runnable(job: Job) -> bool:
            return any(job.tags <= w.tags for w in self.workers.values())

        for job in self._backlog.drain(runnable):
            error = WorkerLostError(
                f"job {job.id} needs tags {sorted(job.tags)} but the workers that carry them were dismissed"
            )
            self._finish(job, Result(job.id, ERROR, error=error, tags=job.tags, tries=job.tries))
        return chosen

    def restart(self) -> list[Worker]:
        """Relaunch every stuck worker (down while holding jobs) so its jobs run again."""
        self._check_open()
        self._poll()
        restarted = []
        for worker in list(self.workers.values()):
            if self._worker_stuck(worker):
                self._restart_worker(worker)
                restarted.append(worker)
        return restarted

    def close(self) -> None:
        """Shut every worker down (killing those that do not stop) and clean the store up."""
        if self._closed:
            return
        try:
            self._stop_now(list(self.workers.values()))
        finally:
            self._closed = True
            _open_crews.discard(self)
            for worker in self.workers.values():
                worker.close()
            try:
                self.store.delete_prefix(f"{self.id}/")
            except Exception as exc:  # the store may be the thing that is broken
                warnings.warn(f"crew {self.id} could not clean its store objects: {exc}", stacklevel=2)
            if self._owns_store:
                self.store.close()

    def __enter__(self) -> Crew:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        up = sum(state.up for state in self._states.values())
        return (
            f"<Crew {self.id} store={self.store.describe()} workers={len(self.workers)} up={up}"
            f" backlog={len(self._backlog)} pending={len(self._pending)} results={len(self._results)}>"
        )

    def _select(self, tags: str | Iterable[str] | None) -> Iterator[Worker]:
        wanted = as_tags(tags)
        if wanted and not any(wanted <= w.tags for w in self.workers.values()):
            raise UnknownTagError(f"no worker carries all of the tags {', '.join(map(repr, sorted(wanted)))}")
        return (w for w in list(self.workers.values()) if wanted <= w.tags)

    def _check_open(self) -> None:
        if self._closed:
            raise CrewError("this crew is closed; create a new Crew")

    # ------------------------------------------------------------------ per-worker verbs
    def _worker_up(self, worker: Worker) -> bool:
        self._poll()
        return self._states[worker.name].up

    def _worker_busy(self, worker: Worker) -> bool:
        state = self._states[worker.name]
        return bool(state.outstanding or state.held)

    def _worker_stuck(self, worker: Worker) -> bool:
        self._poll()
        state = self._states[worker.name]
        return not state.up and bool(state.held)

    def _launch_worker(self, worker: Worker) -> None:
        state = self._states[worker.name]
        if state.held:
            self._restart_worker(worker)  # launching a stuck worker is restarting it
        elif not state.up:
            self._launch(worker, state)

    def _restart_worker(self, worker: Worker) -> None:
        state = self._states[worker.name]
        if state.up:
            return
        jobs, state.held = state.held, []
        runnable = []
        for job in jobs:
            if job.tries >= self.max_tries:
                self._crash(job, worker)
            else:
                runnable.append(job)
        if not runnable:
            return
        try:
            self._launch(worker, state)
        except BaseException:
            state.held = runnable
            state.restart_after = time.monotonic() + RESTART_RETRY
            raise
        fresh = [job for job in runnable if not job.tries]
        # A job that may kill its worker runs alone, so a death is charged to it only.
        self._assign_all(worker, state, [[job] for job in runnable if job.tries] + ([fresh] if fresh else []))

    def _assign_all(self, worker: Worker, state: _WorkerState, batches: list[list[Job]]) -> None:
        """Assign batches in order; if one fails, the ones not yet assigned go back to the backlog."""
        for index, batch in enumerate(batches):
            try:
                self._assign(worker, state, batch)
            except BaseException:
                self._backlog.push_front(job for later in batches[index + 1 :] for job in later)
                raise

    def _request_stop(self, worker: Worker) -> None:
        state = self._states[worker.name]
        if not state.up or state.stop_requested is not None:
            return
        self.store.put(protocol.stop_key(state.prefix), b"")
        self.store.notify(state.channel)
        state.stop_requested = time.monotonic()

    def _stop_now(self, workers: list[Worker]) -> None:
        """Stop workers and wait until they are down: idle ones politely, busy ones by force."""
        for worker in workers:
            state = self._states[worker.name]
            if not state.up:
                continue
            if not state.outstanding:
                try:
                    self._request_stop(worker)
                    continue
                except Exception:  # the store is down: stop it the hard way
                    pass
            self._kill(worker, state)
        deadline = time.monotonic() + self.stop_grace
        next_check: dict[type[Worker], float] = {}
        while time.monotonic() < deadline:
            alive = [w for w in workers if self._states[w.name].up]
            if not alive:
                return
            now = time.monotonic()
            for cls, group in self._by_class(alive).items():
                if now < next_check.get(cls, 0.0):
                    continue
                next_check[cls] = now + min(cls.status_interval, 0.5)
                for name, running in cls.running(group).items():
                    if not running:
                        self._handle_down(self.workers[name], self._states[name])
            self.store.wait(self._channel, 0.01)
        for worker in workers:
            state = self._states[worker.name]
            if state.up:
                self._kill(worker, state)

    def _kill(self, worker: Worker, state: _WorkerState) -> None:
        if state.stop_requested is None:
            state.stop_requested = time.monotonic()  # deliberate: its jobs are requeued uncharged
        try:
            worker.kill()
        finally:
            self._handle_down(worker, state)

    # ------------------------------------------------------------------ the engine
    def _poll(self, timeout: float = 0.0) -> None:
        """One round of progress: wait for a wake-up, collect results, check workers, dispatch."""
        rung = False
        if self.store.notifies:
            rung = self.store.wait(self._channel, timeout)
        elif timeout > 0:
            time.sleep(timeout)
        now = time.monotonic()
        if rung or now >= self._next_store_poll:
            found = self._collect()
            low, high = self._poll_bounds
            self._poll_pause = low if found else min(self._poll_pause * 2, high)
            self._next_store_poll = now + self._poll_pause
        if now >= self._next_status:
            self._check_workers(now)
        if self._backlog:
            self._dispatch()

    def _collect(self) -> int:
        found = 0
        for name, state in list(self._states.items()):
            if state.up and state.outstanding:
                found += self._collect_worker(self.workers[name], state)
        return found

    def _collect_worker(self, worker: Worker, state: _WorkerState) -> int:
        keys = self.store.list(state.prefix + "results/")
        if not keys:
            return 0
        finished: list[str] = []
        found = 0
        for key in keys:
            seq = protocol.seq_of(key)
            jobs = state.outstanding.pop(seq, None) if seq is not None else None
            finished.append(key)
            if jobs is None:
                continue
            finished.append(protocol.task_key(state.prefix, seq))
            found += 1
            try:
                items = protocol.decode_batch(self.store.get(key), key)
            except (CorruptObjectError, KeyNotFoundError) as exc:
                warnings.warn(str(exc), stacklevel=4)
                self._retry(jobs, worker)
                continue
            self._deliver(worker, jobs, dict(items))
        self.store.delete(finished)
        return found

    def _deliver(self, worker: Worker, jobs: list[Job], outcomes: dict[int, bytes]) -> None:
        missing = []
        for job in jobs:
            data = outcomes.get(job.id)
            if data is None:  # the worker could not read the task object
                missing.append(job)
                continue
            status, value, error, text, messages, seconds, started = load_outcome(data)
            mean = self._durations.get(job.kind)
            self._durations[job.kind] = seconds if mean is None else 0.8 * mean + 0.2 * seconds
            result = Result(
                job.id, status, value, error, text, messages, seconds, worker.name, job.tags, job.tries + 1, started
            )
            self._finish(job, result)
        if missing:
            self._retry(missing, worker)

    def _finish(self, job: Job, result: Result) -> None:
        if self._pending.pop(job.id, None) is not None:  # deliver each job once, whatever happens
            self._results.append(result)

    def _retry(self, jobs: list[Job], worker: Worker) -> None:
        """Charge a try to each job and queue it again, or give up with a crash result."""
        for job in jobs:
            job.tries += 1
            if job.tries >= self.max_tries:
                self._crash(job, worker)
            else:
                self._backlog.push_front([job])

    def _crash(self, job: Job, worker: Worker) -> None:
        error = WorkerCrashedError(
            f"job {job.id} ({job.kind}) ended with its worker dead or its data lost {job.tries}"
            f" time(s) (max_tries={self.max_tries}); the last worker was {worker.name!r}"
        )
        self._finish(job, Result(job.id, CRASH, error=error, worker=worker.name, tags=job.tags, tries=job.tries))

    def _by_class(self, workers: Iterable[Worker]) -> dict[type[Worker], list[Worker]]:
        groups: dict[type[Worker], list[Worker]] = {}
        for worker in workers:
            groups.setdefault(type(worker), []).append(worker)
        return groups

    def _check_workers(self, now: float) -> None:
        """Ask each worker class about its live workers, each at its own pace, in one call."""
        if self.auto_restart:
            for worker in list(self.workers.values()):
                state = self._states[worker.name]
                if self._is_stuck(state) and now >= state.restart_after:
                    self._restart_worker(worker)  # an earlier automatic restart failed to launch
        live = [w for w in self.workers.values() if self._states[w.name].up]
        groups = self._by_class(live)
        for cls in groups:
            self._class_due.setdefault(cls, now)
        for cls, group in groups.items():
            if now < self._class_due[cls]:
                continue
            self._class_due[cls] = now + cls.status_interval
            for name, running in cls.running(group).items():
                worker, state = self.workers[name], self._states[name]
                if not running:
                    self._handle_down(worker, state)
                elif state.stop_requested is not None and now - state.stop_requested > self.stop_grace:
                    self._kill(worker, state)  # it did not answer the stop request
                elif now - state.beat_read >= self.heartbeat_interval:
                    self._check_heartbeat(worker, state, now)
        live_classes = {type(w) for w in self.workers.values() if self._states[w.name].up}
        self._next_status = min((self._class_due[cls] for cls in live_classes), default=now + 1.0)

    def _check_heartbeat(self, worker: Worker, state: _WorkerState, now: float) -> None:
        state.beat_read = now
        key = protocol.heartbeat_key(state.prefix)
        try:
            beat = protocol.decode_json(self.store.get(key), key).get("beat", 0)
        except (KeyNotFoundError, CorruptObjectError):
            beat = state.beat
        if beat != state.beat:
            state.beat, state.beat_changed, state.beat_seen = beat, now, True
        elif state.beat_seen and now - state.beat_changed > self.heartbeat_timeout:
            # Silent past the timeout: hung or cut off. Kill it to be sure it writes nothing more.
            try:
                worker.kill()
            finally:
                self._handle_down(worker, state)

    def _handle_down(self, worker: Worker, state: _WorkerState) -> None:
        """The worker's process has ended: keep what it finished, place what it had not."""
        if not state.up:
            return
        if state.outstanding:
            self._collect_worker(worker, state)
        key = protocol.exit_key(state.prefix)
        try:
            note: dict[str, Any] | None = protocol.decode_json(self.store.get(key), key)
        except (KeyNotFoundError, CorruptObjectError):
            note = None
        state.up = False
        leftovers = list(state.outstanding.values())
        state.outstanding = {}
        deliberate = state.stop_requested is not None
        clean = note is not None and note.get("reason") in ("idle", "stopped")
        state.stop_requested = None
        try:
            self.store.delete_prefix(state.prefix)
            if note is None:
                # It left no note: killed, or out of reach and maybe still running (a task in a
                # user's executor cannot be killed). A stop request tells such a straggler to leave.
                self.store.put(protocol.stop_key(state.prefix), b"")
        except Exception as exc:
            warnings.warn(f"could not clean up after worker {worker.name!r}: {exc}", stacklevel=3)
        if not leftovers:
            return
        if deliberate or clean:  # it never started these, or we stopped it on purpose
            self._backlog.push_front(job for batch in leftovers for job in batch)
            return
        for job in leftovers[0]:  # the batch it was running when it died
            job.tries += 1
        state.held = [job for batch in leftovers for job in batch]
        if self.auto_restart:
            self._restart_worker(worker)

    def _launch(self, worker: Worker, state: _WorkerState) -> None:
        self._launch_many([worker])

    def _launch_many(self, workers: list[Worker]) -> None:
        """Start down workers, one ``start_many`` call per class; all of a class or none."""
        for cls, group in self._by_class(workers).items():
            launches = [(worker, self._prepare(worker, self._states[worker.name])) for worker in group]
            try:
                cls.start_many(launches)
            except WorkerLaunchError:
                raise
            except Exception as exc:
                names = ", ".join(repr(w.name) for w in group)
                raise WorkerLaunchError(f"worker(s) {names} ({cls.__name__}) failed to start: {exc}") from exc
            now = time.monotonic()
            for worker in group:
                self._states[worker.name].up = True
            self._class_due[cls] = min(self._class_due.get(cls, math.inf), now + cls.status_interval)
            self._next_status = min(self._next_status, self._class_due[cls])

    def _prepare(self, worker: Worker, state: _WorkerState) -> Launch:
        """Begin a new incarnation of the worker and return what its backend must run."""
        state.incarnation += 1
        state.prefix = protocol.worker_prefix(self.id, worker.name, state.incarnation)
        state.channel = protocol.worker_channel(self.id, worker.name, state.incarnation)
        state.next_seq = 1
        state.outstanding = {}
        state.stop_requested = None
        state.beat, state.beat_seen = 0, False
        state.beat_changed = state.beat_read = time.monotonic()
        settings = WorkerSettings(
            store=self._store_spec,
            crew=self.id,
            name=worker.name,
            incarnation=state.incarnation,
            timeout=worker.timeout,
            heartbeat=self.heartbeat_interval,
        )
        return Launch(settings.to_args())

    def _assign(self, worker: Worker, state: _WorkerState, jobs: list[Job]) -> None:
        try:
            seq = state.next_seq
            data = protocol.encode_batch([(job.id, job.payload) for job in jobs])
            self.store.put(protocol.task_key(state.prefix, seq), data)
        except BaseException:
            self._backlog.push_front(jobs)  # nothing is lost when the store or the backend fails
            raise
        state.next_seq += 1
        state.outstanding[seq] = jobs
        estimate = sum(self._durations.get(job.kind, math.inf) for job in jobs) / len(jobs)
        state.pipelined = estimate < PIPELINE_SECONDS
        self.store.notify(state.channel)
        self._poll_pause = self._poll_bounds[0]
        self._next_store_poll = min(self._next_store_poll, time.monotonic() + self._poll_pause)

    def _dispatch(self) -> None:
        # First to running workers with room: idle ones, or short-job workers with one batch queued.
        for worker in self.workers.values():
            state = self._states[worker.name]
            if not state.up or state.stop_requested is not None:
                continue
            while not state.outstanding or (
                state.pipelined and len(state.outstanding) < 2 and len(self._backlog) >= PIPELINE_MIN_JOBS
            ):
                batch = self._take_batch(worker)
                if not batch:
                    break
                self._assign(worker, state, batch)
            if not self._backlog:
                return
        # Then launch down workers for what still waits, one worker per waiting batch, together.
        starting: list[tuple[Worker, list[Job]]] = []
        for worker in self.workers.values():
            state = self._states[worker.name]
            if state.up or state.held:
                continue
            batch = self._take_batch(worker)
            if batch:
                starting.append((worker, batch))
            if not self._backlog:
                break
        if not starting:
            return
        try:
            self._launch_many([worker for worker, _ in starting])
        except BaseException:
            self._backlog.push_front(job for _, batch in starting for job in batch)
            raise
        for index, (worker, batch) in enumerate(starting):
            try:
                self._assign(worker, self._states[worker.name], batch)
            except BaseException:
                self._backlog.push_front(job for _, later in starting[index + 1 :] for job in later)
                raise

    def _take_batch(self, worker: Worker) -> list[Job]:
        """Take the oldest job the worker may run, plus more of known short duration."""
        first = self._backlog.pop(worker.tags)
        if first is None:
            return []
        batch = [first]
        total = self._durations.get(first.kind)
        if first.tries or total is None:
            return batch
        share = math.ceil((len(self._backlog) + 1) / max(1, len(self.workers)))
        limit = min(MAX_BATCH, share)
        while len(batch) < limit and total < BATCH_SECONDS:
            job = self._backlog.peek(worker.tags)
            if job is None or job.tries:
                break
            estimate = self._durations.get(job.kind)
            if estimate is None:
                break
            self._backlog.pop(worker.tags)
            batch.append(job)
            total += estimate
        return batch
