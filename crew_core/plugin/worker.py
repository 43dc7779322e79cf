"""The :class:`Worker` base class that backend plugins subclass: start, check and stop one process.

A backend implements three verbs — :meth:`Worker.start`, :meth:`Worker.is_running` and
:meth:`Worker.kill` — and may override :meth:`Worker.running` to check many workers in one call.
The crew does everything else: job assignment, heartbeats, restarts and shutdown requests all go
through the store, so a backend never sees a job. Users do not call these methods: they get a
:class:`~crew_core.api.handle.WorkerHandle` in ``crew.workers`` (its ``backend`` is this object).

The crew calls these methods from its background threads, possibly at the same time for
different workers of one class, so a backend keeps per-worker state on the instance.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from crew_core.errors import WorkerLaunchError


@dataclass(frozen=True)
class Launch:
    """What a backend needs to start one worker.

    ``args`` are the arguments of the ``crew worker`` command (pass them on as they are: their flags
    change with the protocol); ``environment`` holds variables the worker process **must** get in
    its environment (``CREW_LABEL``), on top of the backend's own: nothing in it is secret.
    ``secrets`` holds variables it must get too (``CREW_SECRET``, the launch's signing key) through
    the backend's *secret* mechanism: never where the backend's describe or list calls show them
    (job definitions' or overrides' plain environment, labels, command lines), never through the
    store. AWS Batch takes them from Secrets Manager, Cloud Run from Secret Manager, Slurm from a
    file of mode 600 (:mod:`crew_core.plugin.secret_files`); a local process may get them in its
    environment, which only its user can read. ``crew``, ``worker`` and ``incarnation`` say whose
    launch it is, for naming the backend's job; ``label`` (``<crew id>@<digest>``, also in the
    environment as ``CREW_LABEL``) is what :meth:`Worker.find` looks for: the crew's id *and* store,
    so that the same name in two stores, or a crew id planted in another store, never reaches this
    crew's workers.
    """

    args: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=dict)
    crew: str = ""
    worker: str = ""
    incarnation: int = 0
    label: str = ""
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)

    def command(self, python: str = "python") -> list[str]:
        """The full command line, e.g. ``["python", "-m", "crew_core", "worker", "--store", ...]``."""
        return [python, "-m", "crew_core", "worker", *self.args]


@dataclass(frozen=True)
class BackendJob:
    """A worker found on its backend by the id of the crew that launched it (:meth:`Worker.find`)."""

    #: The registered name of the worker class that found it.
    worker_class: str
    #: The label of the crew that launched it (``Launch.label``: its id and its store's digest).
    label: str
    #: The backend's own id: a Batch job id, a Cloud Run execution, a Slurm job id, a process id.
    id: str
    #: The backend's word for its state (``RUNNABLE``, ``RUNNING``, ``PENDING``, ...).
    state: str
    #: The crew's name for the worker and its launch number, where the backend's labels say them.
    worker: str = ""
    incarnation: int = 0
    #: Where it was found: the place :meth:`Worker.find` was given (what :meth:`Worker.end` needs).
    place: Mapping[str, Any] = field(default_factory=dict)

    @property
    def crew(self) -> str:
        """The id of the crew that launched it."""
        return self.label.rpartition("@")[0]


def end_each(jobs: Iterable[BackendJob], end_one: Callable[[BackendJob], None]) -> None:
    """Call ``end_one`` on every job, then raise one :class:`WorkerLaunchError` naming each that
    failed (and why): the shape of :meth:`Worker.end` for backends that end jobs one by one."""
    failed = []
    for job in jobs:
        try:
            end_one(job)
        except Exception as exc:
            failed.append(f"{job.id} ({exc})")
    if failed:
        raise WorkerLaunchError(f"could not end {len(failed)} job(s): {'; '.join(failed)}")


def as_tags(tags: str | Iterable[str] | None) -> frozenset[str]:
    """Normalise a tag argument: ``None``, one string, or an iterable of strings."""
    if tags is None:
        return frozenset()
    if isinstance(tags, str):
        return frozenset((tags,))
    if isinstance(tags, Mapping | bytes) or not isinstance(tags, Iterable):
        raise TypeError(f"tags must be a string or an iterable of strings, not {type(tags).__name__}")
    result = frozenset(tags)
    for tag in result:
        if not isinstance(tag, str):
            raise TypeError(f"tags must be strings, got {tag!r}")
        if not tag.strip():
            raise ValueError(f"a tag must be a non-empty string, not {tag!r}")
    return result


class Worker(ABC):
    """One semi-persistent worker: runs jobs one at a time until idle past ``timeout``.

    Subclass it for a backend; the registered name goes in :attr:`worker_class`. The constructor
    takes the worker's ``name``, ``tags`` and ``timeout`` plus the backend's own keyword options
    (what the user passes to :meth:`Crew.recruit`).
    """

    #: The name the class is registered under (``Crew(worker_classes=["subprocess"])``).
    worker_class: ClassVar[str] = ""
    #: Seconds between backend status checks (:meth:`running`); cheap local checks can be short.
    status_interval: ClassVar[float] = 5.0
    #: Python executable the worker command starts with (a container's ``python`` by default).
    python: ClassVar[str] = "python"
    #: How many :meth:`start` calls :meth:`start_many` makes at once (remote APIs: 16 or so).
    start_concurrency: ClassVar[int] = 1
    #: Idle timeout (seconds) of a worker recruited with ``timeout=None``: remote workers that bill
    #: while they wait set one (``timeout=math.inf`` asks for none); None keeps workers until shut down.
    default_timeout: ClassVar[float | None] = None
    #: True for a forwarder: a worker that runs an inner crew (see ``crew_core.nested.forwarder``). It takes
    #: many tasks at once, answers their jobs in parts as they finish, keeps its jobs when it dies
    #: (they wait for its relaunch, which resumes the inner crew), and hands them back when stopped.
    nested: ClassVar[bool] = False
    #: Seconds a stop request may take before the worker is killed; None: the crew's ``stop_grace``
    #: (a forwarder needs longer: it closes its inner crew first).
    stop_grace: ClassVar[float | None] = None
    #: True if its processes run as the controller's user on the controller's machine (crew-local's
    #: workers): whoever reads such a process's environment can read the controller's memory too,
    #: so its tasks are signed with its own launch key (a MAC, checked 30 times faster) rather
    #: than the crew's Ed25519 key. Leave it False for anything that runs elsewhere.
    beside_controller: ClassVar[bool] = False

    def __init__(self, name: str, *, tags: Iterable[str] | str | None = None, timeout: float | None = None) -> None:
        self.name = name
        self.tags = as_tags(tags)
        self.timeout = timeout

    # ----------------------------------------------------------------- what a backend implements
    @abstractmethod
    def start(self, launch: Launch) -> None:
        """Start the worker process running ``launch.command(self.python)``; return at once.

        Raise :class:`~crew_core.errors.WorkerLaunchError` with a message that says what to fix
        when the backend refuses (unknown queue, bad credentials), leaving nothing half-created.
        """

    @abstractmethod
    def is_running(self) -> bool:
        """True from :meth:`start` until the process has ended (queued or starting counts)."""

    @abstractmethod
    def kill(self) -> None:
        """End the process now, whatever it is doing (used when a stop request goes unanswered)."""

    @classmethod
    def start_many(cls, launches: list[tuple[Any, Launch]]) -> None:
        """Start several workers of this class at once; override to batch (job arrays, ...).

        Either every worker starts or the method raises having left none of them running. The
        default calls :meth:`start` for each, :attr:`start_concurrency` at a time.
        """
        started: list[Worker] = []

        def start(item: tuple[Worker, Launch]) -> None:
            item[0].start(item[1])
            started.append(item[0])  # list.append is atomic: safe from pool threads

        if cls.start_concurrency > 1 and len(launches) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(cls.start_concurrency, len(launches))) as pool:
                outcomes = [pool.submit(start, item) for item in launches]
            failures = [failure for f in outcomes if (failure := f.exception()) is not None]
        else:
            failures = []
            for item in launches:
                try:
                    start(item)
                except BaseException as exc:
                    failures.append(exc)
                    break
        if failures:
            error = failures[0]
            for worker in started:  # all or nothing: a failing kill must not spare the others
                try:
                    worker.kill()
                except Exception as exc:
                    error.add_note(f"also failed to stop worker {worker.name!r} again: {exc}")
            raise error

    @classmethod
    def running(cls, workers: list[Any]) -> dict[str, bool]:
        """Status of many workers of this class at once; override to batch backend calls.

        When the backend cannot be reached, report the workers as running: the crew's heartbeat
        timeout still finds the ones that really died, and a false "down" would rerun jobs.
        """
        return {worker.name: worker.is_running() for worker in workers}

    @property
    def ends_with_controller(self) -> bool:
        """True if a launch this object starts ends when the controller's process that started it
        ends (a local process told to watch its parent, a task in the controller's own process pool).

        A named crew's next controller does not adopt such a launch as a worker that takes new work:
        it would leave soon after, maybe in the middle of a job it was just given, which would then
        run again. The launch keeps the tasks it holds (its answers still count), is asked to stop,
        and the worker is launched afresh once it has left. False (the default): launches outlive
        the controller (a Batch or Cloud Run job, a Slurm job, a detached local process) and end
        only by their idle timeout, a stop request or a lease that stands still; they are adopted.
        Answer from the object's options, without a backend call: the next controller asks the
        object it made again from the roster (``Crew.recruit``'s options).
        """
        return False

    def exit_cause(self) -> str | None:
        """How the last incarnation ended, as the backend knows it, or None if it does not say.

        For example ``"exit code 13"``, ``"killed by SIGSEGV"``, or the backend's own reason (a
        Batch ``statusReason``, a Slurm state such as ``OUT_OF_MEMORY``). Called under the
        controller's lock when a worker died holding a job, and shown in the job's crash error: make
        no backend call here; answer from what :meth:`is_running` or :meth:`running` learned.
        """
        return None

    def close(self) -> None:
        """Release backend resources once the worker is down for good (dismissed, crew closed)."""

    # ----------------------------------------------------------------- finding workers by crew
    def place(self) -> dict[str, Any] | None:
        """Where this worker's backend jobs live, so that they can be found by crew without it.

        The crew keeps each distinct place in the store when it recruits, and ``crew stop`` and
        ``crew ps --backends`` hand it to :meth:`find` after the controller is gone. Return JSON
        values that *locate* the jobs (a region and a queue, a Cloud Run job, a host), never
        credentials or an endpoint: anyone who can write the store can change a place, so a place
        may only narrow where :meth:`find` looks within the user's own backend, never send the
        user's credentials elsewhere (endpoints come from the environment of whoever runs
        ``crew stop``). None (the default): this class cannot find its workers by crew, and a
        stopped crew's workers leave through the store alone (within a lease period).
        """
        return None

    @classmethod
    def find(cls, label: str, place: Mapping[str, Any], via: Worker | None = None) -> list[BackendJob]:
        """The workers of the crew labelled ``label`` (``Launch.label``) at ``place`` that the
        backend still counts as queued or running, found by the label each launch carries (a
        Batch tag, a Slurm comment, the ``CREW_LABEL`` environment variable), never by what the
        store says. Treat ``place`` as untrusted input. ``via``: a worker of this class whose own
        connection settings (endpoint, profile) to use, given when a controller looks for a launch
        of its own; otherwise they come from the environment. Raise if the backend cannot be asked
        (an empty list means there are none)."""
        raise NotImplementedError(f"worker class {cls.worker_class!r} cannot find its workers by crew")

    @classmethod
    def end(cls, jobs: list[BackendJob], via: Worker | None = None) -> None:
        """End the given jobs, which :meth:`find` returned: running ones stop, queued ones never
        start. A job that has ended meanwhile is no error; raise naming those that could not be
        ended, after trying them all. ``via`` as for :meth:`find`."""
        raise NotImplementedError(f"worker class {cls.worker_class!r} cannot end workers it found")

    @classmethod
    def forget(cls, label: str, place: Mapping[str, Any]) -> None:
        """Delete what the backend keeps at ``place`` for launches of the crew labelled ``label``
        that no longer run: the secrets made for them (Secrets Manager secrets and job definition
        revisions, Secret Manager secrets, files). Called once the crew is over, for every place it
        noted, after :meth:`end`, even when :meth:`find` found nothing: by ``crew stop``, and by the
        ``close()`` of a named crew's controller (launches of an earlier controller's that left on
        their own left theirs). Treat ``place`` as untrusted input; raise naming what could not
        be deleted. The default keeps nothing, so it does nothing."""

    def __repr__(self) -> str:
        tags = ", ".join(sorted(self.tags))
        return f"<{type(self).__name__} {self.name!r} tags={{{tags}}} timeout={self.timeout}>"
