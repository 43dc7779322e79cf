"""The :class:`Crew` controller: the public API (recruit, send, receive, shut down).

This is a thin front. The work happens in the manager (``runner/manager.py``): a background thread
that owns the traffic with the workers through the store, a dispatcher that decides which worker
runs which job, a supervisor that watches the workers' lives, and a ledger where each job has
exactly one state. Next to this module: ``checks.py`` checks the arguments, ``named.py`` opens a
named crew and accepts its jobs durably, ``open_crews.py`` closes what is open at exit. Parts of
:class:`Crew` live in modules of their own: ``waiting.py`` hands results out (``receive``,
``results``, ``result``), ``worker_control.py`` launches and stops workers, ``gather.py`` sends
and collects a ``map``, ``renamed.py`` keeps the old keywords and method names working.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from crew_core.api import checks, open_crews, renamed
from crew_core.api.gather import gather
from crew_core.api.handle import WorkerHandle
from crew_core.api.recruiting import Recruiter
from crew_core.api.renamed import RenamedMethods
from crew_core.api.waiting import Waiting
from crew_core.api.worker_control import WorkerControl
from crew_core.deprecation import DEFAULT, Default
from crew_core.engine.ledger import Claim, Job
from crew_core.engine.summary import Summary
from crew_core.errors import CrewError
from crew_core.plugin.registry import Plugins, default_plugins, open_store, store_spec, sweep_temporary_stores
from crew_core.plugin.store import Store
from crew_core.plugin.worker import Worker, as_tags
from crew_core.results import ResultList
from crew_core.runner.manager import Manager
from crew_core.settings import check as check_settings
from crew_core.wire import protocol, put_objects
from crew_core.wire.refs import Ref, upload
from crew_core.wire.serialize import FunctionCache, digest, dump_args
from crew_core.wire.signing import new_secret

if TYPE_CHECKING:  # a named crew's modules load only when one opens
    from crew_core.api.named import NamedRun, TakenOver


class Crew(Waiting, WorkerControl, RenamedMethods):
    """A pool of semi-persistent workers fed through a store.

    >>> with Crew(store="local", worker_classes=["subprocess"]) as crew:
    ...     crew.recruit(workers=2)
    ...     job = crew.send(pow, args=(2, 10))
    ...     crew.receive().value
    1024

    ``store`` is a store name (``"local"``), a URL or path, or a :class:`Store`; ``worker_classes``
    are names or :class:`Worker` subclasses, the first being the default of :meth:`recruit`.
    Keyword settings (``max_tries``, ``heartbeat_interval``, ``heartbeat_timeout``,
    ``stop_grace``, ``auto_restart``, ``lease_timeout``) override the defaults that plugins set
    in ``crew_configure``.

    ``name`` makes the crew durable: it keeps in the store what another controller needs to go
    on (its jobs, before :meth:`send` returns; which results were received; its workers). If a
    controller dies, ``Crew(name=..., store=...)`` on the same store resumes the crew
    (:attr:`resumed` is then True): finished results are delivered, unfinished jobs run, live
    workers are adopted. :meth:`close` ends a named crew and removes its objects.
    """

    #: Keep jobs' outcomes pickled (a forwarder's inner crew hands them on unread).
    _raw_outcomes = False

    def __init__(
        self,
        store: str | os.PathLike[str] | Store | None = None,
        worker_classes: Iterable[str | type[Worker]] | None = None,
        *,
        store_options: dict[str, Any] | None = None,
        plugins: Plugins | None = None,
        name: str | None = None,
        **settings: Any,
    ) -> None:
        self._closed = True  # until fully built: close() has nothing to do
        if name is not None:
            from crew_core.durable.journal import check_name  # loaded only for a named crew

            name = check_name(name)
        self.name = name
        self._plugins = plugins or default_plugins()
        config, from_environment = checks.crew_config(self._plugins, settings)
        options = checks.store_options(store_options)
        names = worker_classes if worker_classes is not None else config.get("worker_classes")
        self.worker_classes: list[type[Worker]] = checks.worker_classes(self._plugins, names)

        self.id = self.name or uuid.uuid4().hex[:12]
        checks.check_config(config, from_environment)
        if isinstance(store, str) and not store:
            raise ValueError("store must name a store, a URL or a path, not an empty string (None: the default)")
        sweep_temporary_stores(self._plugins)  # what controllers killed on this machine left in RAM
        self.store, self._owns_store = open_store(self._plugins, store or config.get("store"), options)
        try:
            checked = check_settings(config, self.store.heartbeat_interval)
            if self.name is not None and self.store.temporary:
                raise ValueError(f"named crew {self.name!r} needs a store that outlives its controller, and"
                                 f" {self.store.describe()} is a temporary folder removed when it closes: give"
                                 " a folder path or a bucket URL")  # fmt: skip
        except BaseException:
            if self._owns_store:
                self.store.close()
            raise
        self.max_tries = checked.max_tries
        self.heartbeat_interval = checked.heartbeat_interval
        self.heartbeat_timeout = checked.heartbeat_timeout
        self.stop_grace = checked.stop_grace
        self.auto_restart = checked.auto_restart
        self.lease_timeout = checked.lease_timeout
        self.job_timeout = checked.job_timeout
        self.capture_output = checked.capture_output
        self.workers: dict[str, WorkerHandle] = {}
        self._tag_sets: tuple[frozenset[str], ...] = ()  # the workers' tags, read without the lock
        self._sent_tags: set[str] = set()  # every tag a job sent here carried (receive(tags=) checks it)
        self._functions = FunctionCache()
        self._ids = itertools.count(1)
        self._put: set[str] = set()  # digests of objects put in the store
        self._last_id = 0
        self._named: NamedRun | None = None  # a named crew's run: its jobs are journaled
        #: True when this crew resumed a named crew that an earlier controller left.
        self.resumed = False
        try:
            # Threads of one process open a named crew one at a time: the next sees this one open.
            with self._one_at_a_time():
                taken = None
                if self.name is None:
                    checks.warn_if_secret_set()
                    self._manager = Manager(self.id, self.store, store_spec(self.store), checked, new_secret(),
                                            raw=self._raw_outcomes)  # fmt: skip
                else:
                    from crew_core.api.named import open_named

                    self._named, taken = open_named(self.store, self.name, checked, self._plugins,
                                                    self.worker_classes, raw=self._raw_outcomes,
                                                    jobs_sent=lambda: self._last_id)  # fmt: skip
                    self._manager = self._named.manager
                self._recruiter = Recruiter(self.id, self._manager, self._plugins, durable=self.name is not None)
                if taken is not None:
                    self._take_over(taken)
                self._manager.start()
                self._closed = False
                open_crews.opened(self)
        except BaseException:
            if self._owns_store:
                self.store.close()
            raise

    def _one_at_a_time(self) -> contextlib.AbstractContextManager[Any]:
        """Held while this process opens or closes a named crew (nothing for an unnamed one)."""
        if self.name is None:
            return contextlib.nullcontext()
        from crew_core.api.named import opening_lock

        return opening_lock(self.store.describe(), self.name)

    def _take_over(self, taken: TakenOver) -> None:
        """Go on as the resumed crew: the jobs and workers an earlier controller left are ours."""
        self.resumed = True
        self._last_id = taken.last_id
        self._ids = itertools.count(self._last_id + 1)
        for backend in self._recruiter.taken_over(taken.workers):
            self.workers[backend.name] = WorkerHandle(self._manager, backend)
        self._tag_sets = tuple(handle.tags for handle in self.workers.values())

    # ------------------------------------------------------------------ recruiting
    def recruit(
        self,
        workers: int = 1,
        worker_class: str | type[Worker] | None = None,
        *,
        tags: str | Iterable[str] | None = None,
        idle_timeout: float | Default | None = DEFAULT,
        tasks_max: int | None = None,
        seconds_wall: float | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        timeout: float | None = None,
        **options: Any,
    ) -> list[WorkerHandle]:
        """Add ``workers`` workers (not started yet) and return their handles.

        ``idle_timeout`` is how long in seconds each worker may stay idle before it stops
        (omitted: the class's default, which is 15 minutes for the cloud and cluster classes and
        no limit for local ones; None or ``math.inf``: no limit, until stopped); ``tags`` are the
        tags it carries; ``tasks_max`` and ``seconds_wall`` end each launch after that many
        jobs or seconds (it finishes its job first; ``seconds_wall`` comes up to 10% early, by a
        draw per launch, so that a fleet does not leave at once), and the worker is launched
        afresh when work comes; other keyword ``options`` go to the worker class (on top of
        defaults set by ``crew_configure``).

        ``initializer(*initargs)`` runs in each launch of these workers before its first job (a
        relaunch runs it again), as ``ProcessPoolExecutor``'s does: jobs see what it sets up. If
        it fails, the worker is retired and the jobs only it could run end with a
        :class:`WorkerInitError`.
        """
        self._check_open()
        idle = checks.idle_timeout(renamed.recruit_idle_timeout(idle_timeout, timeout))
        seconds_wall = checks.recruit_arguments(workers, tasks_max, seconds_wall)
        init = checks.initializer(initializer, initargs)
        worker_tags = as_tags(tags)
        if worker_class is None:
            cls = checks.default_worker_class(self.worker_classes)
        else:
            cls = checks.worker_class(self._plugins, worker_class)
        recruited: list[WorkerHandle] = []
        digest = "" if init is None else self._store_data(init)
        lifetime = (tasks_max, seconds_wall)
        for backend in self._recruiter.recruit(cls, workers, worker_tags, idle, options, lifetime, digest):
            recruited.append(WorkerHandle(self._manager, backend))
            self.workers[backend.name] = recruited[-1]
        self._tag_sets = tuple(handle.tags for handle in self.workers.values())
        return recruited

    # ------------------------------------------------------------------ jobs in and out
    def send(
        self,
        fn: Callable[..., Any] | None = None,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        tags: str | Iterable[str] | None = None,
        *,
        job_timeout: float | Default | None = DEFAULT,
        crash_tags: Iterable[str | Iterable[str]] | None = None,
        timeout: float | None = None,
        fun: Callable[..., Any] | None = None,
    ) -> int:
        """Queue ``fn(*args, **kwargs)`` and return the job's id; never blocks.

        The job runs on a worker that carries every tag in ``tags``. It starts at once on an idle
        worker, or launches a matching worker that is down, or waits in the backlog until a
        matching worker frees up. ``job_timeout``: seconds it may run (omitted: the crew's
        ``job_timeout``; None or ``math.inf``: no limit), after which it is stopped and comes back
        with status :attr:`Status.TIMEOUT`. ``crash_tags``: after its worker dies under it, its
        next try runs on workers carrying the next of these tag sets (``["highmem", "hugemem"]``).
        :meth:`result` waits for this one job; :meth:`receive` hands out results as they come.

        Arguments that would take the controller past its ``args_memory`` budget (or more than
        an eighth of it) are written to the store before ``send`` returns; the worker reads them.
        """
        if fn is None or fun is not None or timeout is not None:  # old keywords: handled off the hot path
            fn, job_timeout = renamed.send_keywords(fn, job_timeout, fun, timeout)
        job, pickled = self._make_job(fn, args, kwargs, tags, None, job_timeout, crash_tags)
        self._accept(job, pickled)  # not through _send: one call less on the hot path
        return job.id

    def _send(
        self,
        fun: Callable[..., Any],
        args: Iterable[Any],
        kwargs: dict[str, Any] | None,
        tags: str | Iterable[str] | None,
        claim: Claim | None,
        job_timeout: float | Default | None = DEFAULT,
        crash_tags: Iterable[str | Iterable[str]] | None = None,
    ) -> Job:
        """:meth:`send`, with a ``claim`` that takes the result instead of :meth:`receive`."""
        job, pickled = self._make_job(fun, args, kwargs, tags, claim, job_timeout, crash_tags)
        self._accept(job, pickled)
        return job

    def _make_job(
        self,
        fun: Callable[..., Any],
        args: Iterable[Any],
        kwargs: dict[str, Any] | None,
        tags: str | Iterable[str] | None,
        claim: Claim | None,
        job_timeout: float | Default | None = DEFAULT,
        crash_tags: Iterable[str | Iterable[str]] | None = None,
    ) -> tuple[Job, bytes]:
        """A job checked and pickled, not sent yet (its id comes when :meth:`_accept` takes it)."""
        if self._closed:
            raise CrewError("this crew is closed; create a new Crew")
        self._manager.check_store()  # gone for good: the job could never run
        job_tags = as_tags(tags) if tags is not None else frozenset()
        if job_tags or not self._tag_sets:
            self._check_runnable(job_tags)
        fun, args, kwargs = checks.call_arguments(fun, args, kwargs)
        limit = self.job_timeout if job_timeout is DEFAULT else checks.job_timeout(job_timeout)
        then = checks.crash_tags(crash_tags, self._tag_sets)
        function, pickled, kind = self._functions.dump(fun)
        data, key = self._manager.args.take(dump_args(fun, args, kwargs))  # large ones: written to the store now
        job = Job(0, function, data, job_tags, kind, claim=claim, timeout=limit, crash_tags=then, args_key=key)
        return job, pickled

    def _accept(self, job: Job, pickled: bytes) -> None:
        """Take a job in: journaled first in a named crew (not accepted if that fails)."""
        job.id = next(self._ids)
        self._last_id = max(self._last_id, job.id)
        self._sent_tags |= job.tags
        if self._named is not None:  # durable before send returns; not accepted if it cannot be
            self._named.accept(job, pickled)  # its arguments are let go if it is not accepted
        else:
            self._manager.submit(job, pickled)

    def cancel(self, job: int | None = None, *, tags: str | Iterable[str] | None = None) -> list[int]:
        """Cancel job ``job``, or every job in flight carrying ``tags``; return the ids cancelled.

        A job that waits never starts; one that runs is stopped on its worker. Each comes back
        at once with status ``"cancelled"`` (a :class:`JobCancelledError`); a named crew first
        stores these results (one write), so that a next controller delivers them and runs none of
        the jobs. A job that has finished (its result waits for :meth:`receive`) or that this crew
        does not know is left as it is: its id is not in the list.
        """
        self._check_open()
        checks.cancel_arguments(job, tags)
        cancelled = self._manager.cancel(job, None if tags is None else as_tags(tags))
        self._manager.save_verdicts_now()  # a named crew: if the store fails they come once it is back
        self._manager.hand_over()
        return cancelled

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Send many jobs to a named crew with one store write: they are durable when the block ends.

        Inside the block :meth:`send` returns at once (ids as usual) and its jobs wait; at the end
        of the block they are written together, then accepted, or (the write failed, or the block
        raised) none is. On an unnamed crew the block changes nothing.
        """
        if self._named is None:
            yield  # unnamed: nothing to write
            return
        with self._named.batch():
            yield

    def map(
        self,
        fn: Callable[..., Any] | None = None,
        *iterables: Iterable[Any],
        tags: str | Iterable[str] | None = None,
        progress: bool | None = None,
        fun: Callable[..., Any] | None = None,
    ) -> ResultList:
        """Call ``fn`` on each item of ``iterables`` (zipped, as the built-in ``map``); wait for all.

        Returns a :class:`Result` per call, in input order, so that one error does not hide the
        others; ``.values()`` gives the plain values and raises the first error. ``progress``
        shows a bar (done, errors, crashes) on standard error: by default when it is a terminal.
        Other jobs in flight are left for :meth:`receive`. What the crew could not do meanwhile
        (the store failing) is raised as by :meth:`receive`; the jobs stay in the crew.
        """
        self._check_open()
        if fun is not None and fn is not None:  # map(*iterables, fun=f): the first iterable came as fn
            iterables, fn = (fn, *iterables), None  # type: ignore[arg-type]  # it is an iterable
        fn = renamed.fn_given("map", fn, fun)
        return gather(self, fn, iterables, tags, progress)

    def sendable(self, tags: str | Iterable[str] | None = None) -> bool:
        """True when a job with ``tags`` sent now would start at once instead of waiting."""
        self._check_open()
        wanted = as_tags(tags)
        self._manager.sync()
        with self._manager.lock:
            return self._manager.sendable(wanted)

    def put(self, obj: Any) -> Ref:
        """Upload ``obj`` to the store once and return a reference to pass to jobs instead.

        Every job that gets the reference (as an argument, or inside one) receives the object;
        each worker fetches it once and keeps it in memory. Objects are content-addressed: putting
        an equal object again uploads nothing. Jobs must not modify it: large buffers (a numpy
        array's data) reach jobs read-only, mapped from the store's file where it is local.
        """
        self._check_open()
        packed = put_objects.pack(obj)
        if packed.digest not in self._put:
            upload(self._manager.sealed, self.id, packed)
            self._put.add(packed.digest)
        return Ref(self.id, packed.digest, packed.size)

    def _store_data(self, data: bytes) -> str:
        """Store pickled ``data`` once as one of the crew's (signed) data objects; return its digest."""
        key = digest(data)
        if key not in self._put:
            self._manager.sealed.put(protocol.data_key(self.id, key), data)
            self._put.add(key)
        return key

    def summary(self) -> Summary:
        """What each worker has done: launches, refused launches, jobs, errors, crashes, busy seconds.

        A list of dicts, one per worker (``summary.totals`` sums them); ``print(crew.summary())``
        shows an aligned table.
        """
        self._check_open()
        return Summary(self._manager.summary())

    def _check_runnable(self, tags: frozenset[str]) -> None:
        """Refuse a job with ``tags`` that none of this crew's workers could run."""
        checks.check_runnable(self._tag_sets, tags)

    def close(self) -> None:
        """Shut every worker down (killing those that do not stop) and clean the store up."""
        if self._closed:
            return
        # A thread of this process opening the same named crew waits until it is gone: it would
        # otherwise resume it and then lose its objects (and key file) to this close.
        with self._one_at_a_time():
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        open_crews.closed(self)
        try:
            self._manager.close()
        finally:
            self._manager.fail_claims(CrewError("the crew was closed before the job finished"))
            try:
                if self._named is None:
                    self.store.delete_prefix(protocol.crew_prefix(self.id))
                else:
                    self._named.remove()
            except Exception as exc:  # the store may be the thing that is broken
                logging.getLogger("crew").warning("crew %s could not clean its store objects: %s", self.id, exc)
            if self._owns_store:
                self.store.close()
            if self._named is not None:
                self._named.closed(self.store.describe())

    def __enter__(self) -> Crew:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if self.name is not None and exc_type is not None:
            self._leave()  # an exception is a crash: the named crew waits for its next controller
        else:
            self.close()

    def _leave(self) -> None:
        """Stop this controller but not the crew: its workers and its objects stay for the next one."""
        if self._closed:
            return
        self._closed = True
        open_crews.closed(self)
        self._manager.abandon()
        self._manager.fail_claims(CrewError(f"this controller left crew {self.id!r}: a next one runs the job"))
        if self._owns_store:
            self.store.close()

    def __repr__(self) -> str:
        manager = self._manager
        with manager.lock:
            up = sum(record.up for record in manager.records.values())
            return (
                f"<Crew {self.id} store={self.store.describe()} workers={len(self.workers)} up={up}"
                f" backlog={len(manager.ledger.backlog) + len(manager.incoming)} pending={len(manager.ledger)}"
                f" results={len(manager.ledger.results)}{' closed' if self._closed else ''}>"
            )

    def _check_open(self) -> None:
        if self._closed:
            raise CrewError("this crew is closed; create a new Crew")
