"""A named crew's controller: opening it (afresh, or resuming what an earlier controller left) and
accepting its jobs only once they are journaled in the store.

:class:`~crew_core.Crew` calls :func:`open_named` when it is given a ``name``, and hands each job
it takes to :meth:`NamedRun.accept`, so that ``send`` returns only once a next controller could
run the job.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from crew_core.api.open_crews import open_here
from crew_core.durable import journal as durable
from crew_core.durable.claim import claim_crew, clear_crew, release_claim, remove_crew
from crew_core.durable.leftovers import forget_launches
from crew_core.engine.ledger import Job
from crew_core.errors import CrewError, PluginError
from crew_core.plugin.registry import Plugins, default_plugins, store_spec
from crew_core.plugin.store import Store
from crew_core.plugin.worker import Worker
from crew_core.results import ERROR, Result
from crew_core.runner.manager import Manager, Settings
from crew_core.runner.resume import check_no_other_controller, take_over
from crew_core.wire import protocol
from crew_core.wire.signing import Sealed

log = logging.getLogger("crew")

_opening: dict[tuple[str, str], threading.RLock] = {}  # (store, named crew) -> held while one opens or closes it
_opening_guard = threading.Lock()

#: A job on its way in: the job, its journal record, its pickled function.
Sent = tuple[Job, protocol.JournalJob, bytes]


def opening_lock(where: str, name: str) -> threading.RLock:
    """Held while this process opens or closes named crew ``name`` on store ``where``: threads of
    one process open it one at a time, so that the next sees this one open."""
    with _opening_guard:
        return _opening.setdefault((where, name), threading.RLock())


@dataclass(frozen=True)
class TakenOver:
    """What a resumed named crew takes over from the controller before it."""

    workers: list[Worker]  # made again from its roster: adopted if they still run, else down
    last_id: int  # the highest job id it sent


class NamedRun:
    """This controller's run of a named crew: its journal, and the jobs it accepts once journaled."""

    def __init__(self, manager: Manager, name: str, nonce: bytes, epoch: int, accepted: bool) -> None:
        self.manager = manager
        self.name = name
        self.nonce = nonce  # this run's: its objects are not a past run's
        self.journal = durable.JobJournal(manager.sealed, name, epoch)
        self._accepted = accepted  # the crew's "accepted" marker is in the store
        self._batching = threading.local()  # jobs sent inside ``with crew.batch():``, per thread

    def accept(self, job: Job, pickled: bytes) -> None:
        """Take a job in once it is journaled (at the end of the block inside ``crew.batch()``)."""
        saved = protocol.JournalJob(job.id, job.function, job.args, tuple(sorted(job.tags)), job.kind,
                                    job.timeout, tuple(tuple(sorted(t)) for t in job.crash_tags),
                                    job.args_key)  # fmt: skip
        batched = getattr(self._batching, "jobs", None)
        if batched is not None:
            batched.append((job, saved, pickled))
            return
        try:
            self._accept_durably([(job, saved, pickled)])
        except BaseException:
            self.manager.release_args([job])
            raise

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Journal the jobs sent inside the block with one store write, then accept them (or none)."""
        if getattr(self._batching, "jobs", None) is not None:
            yield  # nested in another batch: that one writes
            return
        jobs: list[Sent] = []
        self._batching.jobs = jobs
        try:
            yield
        except BaseException as exc:
            _refuse(self.manager, jobs, exc)
            raise
        finally:
            self._batching.jobs = None
        if jobs:
            try:
                self._accept_durably(jobs)
            except BaseException as exc:
                _refuse(self.manager, jobs, exc)
                raise

    def _accept_durably(self, jobs: list[Sent]) -> None:
        manager = self.manager
        if not self._accepted:  # once: a next controller resumes the crew (journal objects go once received)
            # Before the journal: a send that fails here took nothing, and none may run it later.
            manager.store.put(protocol.accepted_key(self.name), b"")
            self._accepted = True
        key = self.journal.commit([(saved, pickled) for _, saved, pickled in jobs])
        with manager.lock:
            for job, _, _ in jobs:
                manager.keeper.journaled(job.id, key)  # type: ignore[union-attr]
        for job, _, pickled in jobs:
            manager.submit(job, pickled)

    def remove(self) -> None:
        """Remove the crew's objects from the store (it is being closed), and what backends keep
        for its launches (their secrets): this controller's, and an earlier one's adopted launches
        that left on their own, which no worker object here knows."""
        m = self.manager
        m.renew_lease()  # a fresh lease first: a controller on another host waits while they go
        places = self._places()
        remove_crew(m.store, self.name)
        problems: list[str] = []
        forget_launches(self.name, places, m.store.describe(), self._worker_class, problems)
        for problem in problems:
            log.warning("crew %s: %s", self.name, problem)

    def _places(self) -> list[tuple[str, dict[str, Any]]]:
        """The places the crew noted (checked: this controller signed them)."""
        found = []
        for key in self.manager.store.list(protocol.places_prefix(self.name)):
            try:
                record = json.loads(self.manager.sealed.get(key))
            except Exception:  # gone, or not ours: nothing to ask a backend about
                continue
            if isinstance(record, dict) and isinstance(record.get("place"), dict):
                found.append((str(record.get("worker_class")), record["place"]))
        return found

    def _worker_class(self, name: str) -> type[Worker]:
        with self.manager.lock:
            for record in self.manager.records.values():
                if type(record.backend).worker_class == name:
                    return type(record.backend)
        return default_plugins().workers.get(name)

    def closed(self, where: str) -> None:
        """The crew was closed: this run's objects are gone, and so is the crew's key."""
        durable.run_closed(where, self.name, self.nonce)
        durable.forget_secret(where, self.name)


def _refuse(manager: Manager, jobs: list[Sent], why: BaseException) -> None:
    """Jobs of a batch that was not accepted: a claim on one (a future) hears of it."""
    manager.release_args(job for job, _, _ in jobs)
    for job, _, _ in jobs:
        if job.claim is not None:
            error = CrewError(f"job {job.id} was not accepted: its crew.batch() block failed ({why!r})")
            job.claim.finished(Result(job.id, ERROR, error=error, tags=job.tags))


def open_named(
    store: Store,
    name: str,
    checked: Settings,
    plugins: Plugins,
    worker_classes: list[type[Worker]],
    *,
    raw: bool,
    jobs_sent: Callable[[], int],
) -> tuple[NamedRun, TakenOver | None]:
    """Take over what an earlier controller of this named crew left, or start it afresh.

    Call it holding :func:`opening_lock`. Returns the run and, if the crew resumed, what it took
    over; the run's manager is filled in but not started.
    """
    key = durable.secret_for(store.describe(), name)
    nonce, recovery = _read_named(store, name, key)
    if nonce is not None:
        durable.check_not_closed(store.describe(), name, nonce)
    epoch = recovery.lease.epoch if recovery.lease is not None else 0
    claimed = claim_crew(store, name, epoch, checked.lease_timeout, open_here(store.describe(), name))
    try:
        if claimed.skipped:  # a controller that died opening it may have changed it since
            nonce, recovery = _read_named(store, name, key)
        if nonce is None or not recovery.accepted_jobs:
            # Never accepted a job (its controller died before the first send was written): start
            # afresh. Deleting its lease sends away any worker it launched; the claims stay.
            clear_crew(store, name)
            nonce, recovery = durable.new_nonce(store, name), durable.Recovery()
        secret = durable.run_secret(key, nonce, store.describe(), name)  # not a past run's, nor another place's
        manager = Manager(name, store, store_spec(store), checked, secret, epoch=claimed.epoch, durable=True,
                          jobs_sent=jobs_sent, raw=raw)  # fmt: skip
        run = NamedRun(manager, name, nonce, claimed.epoch, accepted=bool(recovery.accepted_jobs))
        if not recovery.accepted_jobs:
            return run, None

        def remake(worker: str, entry: protocol.RosterEntry) -> Worker | None:
            return _remake_worker(plugins, worker_classes, name, worker, entry)

        with manager.lock:
            workers, last_id = take_over(manager, recovery, remake)
        return run, TakenOver(workers, last_id)
    except BaseException:
        release_claim(store, name, claimed)
        raise


def _read_named(store: Store, name: str, key: bytes) -> tuple[bytes | None, durable.Recovery]:
    """The nonce and objects of a named crew's run, if any; refused while its controller lives."""
    nonce = durable.read_nonce(store, name)
    if nonce is None:
        return None, durable.Recovery()
    try:
        recovery = durable.recover(Sealed(store, durable.run_secret(key, nonce, store.describe(), name)), name)
    except CrewError:
        if durable.read_nonce(store, name) != nonce:  # not another key: a new run began
            raise CrewError(f"another process is opening crew {name!r} right now: one controller at a time")
        raise
    check_no_other_controller(name, recovery, open_here(store.describe(), name))
    return nonce, recovery


def _remake_worker(
    plugins: Plugins, classes: list[type[Worker]], crew_id: str, name: str, entry: protocol.RosterEntry
) -> Worker | None:
    """Worker ``name`` as the roster says an earlier controller made it (None: its class is gone)."""
    cls = {c.worker_class: c for c in classes}.get(entry.worker_class)
    if cls is None:
        try:
            cls = plugins.workers.get(entry.worker_class)
        except PluginError as exc:
            logging.getLogger("crew").warning("crew %s cannot make worker %r again: %s", crew_id, name, exc)
            return None
    options = {**plugins.config[cls.worker_class], **entry.options}
    return cls(name, tags=entry.tags, timeout=entry.timeout, **options)
