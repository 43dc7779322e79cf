"""The manager: one crew's state, its background loop, and what users' threads ask of it.

Users' threads only record intentions under the manager's lock (a job accepted, a batch
planned, a stop requested); the loop does the I/O: it writes the outbox (task records, in order
per worker, in parallel across workers on slow stores), polls the inbox, and hands backend calls
(start, status, kill) to a small pool so that a slow backend never delays results. ``send``
therefore never blocks on a store or a backend (except to write arguments too large to keep in
memory: ``spill.py``).

The manager holds the state the engine reads (``engine/port.py``) and hands each job to a
collaborator that owns its own part:

- ``loop.py``: the loop's step and the three drivers that run it (thread, user's thread, simulator);
- ``outbox.py``: records on their way to workers; ``pool.py``: calls to backends;
- ``poller.py``: when the inbox is read and what is done with its mail (``inbox.py`` reads it);
- ``bookkeeping.py``: the lease, and a named crew's rosters, receipts and verdicts;
- ``health.py``: the store's outages; ``signals.py``: Ctrl-C during a step;
- ``commands.py``: users' threads' commands and queries (launch, stop, summary, ...).
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from crew_core.engine.answers import Answers
from crew_core.engine.deaths import end_job
from crew_core.engine.dispatcher import Dispatcher
from crew_core.engine.ledger import Job, JobState, Ledger
from crew_core.engine.orders import (
    Cleanup,
    Order,
    Orders,
    Place,
    PollSoon,
    Report,
    RosterChanged,
    WriteControl,
    WriteTask,
)
from crew_core.engine.supervisor import Supervisor, WorkerRecord
from crew_core.errors import CrewError, StoreGoneError
from crew_core.plugin.store import Store
from crew_core.plugin.worker import Worker
from crew_core.results import ERROR, Result
from crew_core.runner.bookkeeping import Bookkeeping
from crew_core.runner.commands import Commands
from crew_core.runner.health import StoreHealth
from crew_core.runner.inbox import Inbox
from crew_core.runner.loop import MAX_SLEEP as MAX_SLEEP  # their home before the loop had a module
from crew_core.runner.loop import PARK as PARK
from crew_core.runner.loop import Loop
from crew_core.runner.outbox import Outbox
from crew_core.runner.poller import Poller
from crew_core.runner.pool import Pool
from crew_core.runner.signals import uninterrupted
from crew_core.runner.spill import MB, ArgsKeeper
from crew_core.settings import Settings as Settings  # its home before the settings table
from crew_core.wire import protocol
from crew_core.wire.keys import EPOCH_SPAN
from crew_core.wire.protocol import RosterEntry
from crew_core.wire.signing import Sealed

if TYPE_CHECKING:  # a named crew's modules load only when one opens
    from crew_core.durable.journal import Keeper
    from crew_core.durable.verdicts import VerdictLog

log = logging.getLogger("crew")


class Manager:
    """State and loop of one crew (see the module docstring); what ``api/`` and the engine call."""

    #: A user's thread waiting in receive() runs the loop itself on a fast store (see :meth:`drive`);
    #: ``benchmarks/driving.py`` measures what that is worth against the manager thread alone.
    drive_from_user_threads: bool = True

    def __init__(
        self,
        crew_id: str,
        store: Store,
        store_spec: dict[str, Any],
        settings: Settings,
        secret: bytes,
        *,
        epoch: int = 0,
        durable: bool = False,
        jobs_sent: Callable[[], int] = lambda: 0,
        raw: bool = False,
        clock: Callable[[], float] = time.monotonic,
        backend_pool: Executor | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        """``epoch``: this controller's number in a named crew (``durable``), whose objects stay
        in the store for the next controller; ``jobs_sent``: the highest job id so far; ``raw``:
        keep outcomes pickled (a forwarder's inner crew): a Result's value is then a ``Raw``.

        ``clock``, ``backend_pool`` (where backend calls run) and ``draw`` (random numbers) are
        injected by the simulator (``crew_core.testing.simulator``), which steps the crew itself
        with :meth:`step` instead of starting its thread."""
        self.clock = clock
        self.crew_id = crew_id
        self.label = protocol.crew_label(store.describe(), crew_id)  # how its launches are found (Worker.find)
        self.store = store
        self.secret = secret  # the run's root key: every other key is made from it (wire/signing.py)
        self.sealed = Sealed(store, secret, addressee=self._addressee, tasks_by_mac=self._beside)
        self.keys = self.sealed.keys
        self.store_spec = store_spec
        self.settings = settings
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.ledger = Ledger()
        self.raw = raw
        self.ledger.issued = epoch * EPOCH_SPAN  # keys sort after those of earlier controllers
        self.epoch = epoch
        self.records: dict[str, WorkerRecord] = {}
        self.orders = Orders()  # the engine's, carried out by carry_out()
        self.gone: StoreGoneError | None = None  # the store is gone for good: the crew is broken
        self._errors: deque[BaseException] = deque(maxlen=100)
        self.health = StoreHealth(self)
        self.book = Bookkeeping(self, durable, jobs_sent)
        self.supervisor = Supervisor(self, draw)
        self.dispatcher = Dispatcher(self)
        self.answers = Answers(self, keeps_results=durable)
        concurrency = max(1, int(getattr(store, "request_concurrency", 1)))
        self.io_pool = ThreadPoolExecutor(concurrency, "crew-io") if concurrency > 1 else None
        self.pool = Pool(self, backend_pool or ThreadPoolExecutor(8, "crew-backend"))
        self.inbox = Inbox(self.sealed, crew_id, self.io_pool, keep_results=durable, clock=clock)
        budget = None if settings.args_memory is None else settings.args_memory * MB
        #: Jobs' pickled arguments: in memory up to ``args_memory``, else in the store (``spill.py``).
        self.args = ArgsKeeper(self.sealed, crew_id, budget, self.inbox.discard)
        self.ledger.released = self.args.release
        self.channel = protocol.controller_channel(crew_id)
        low, high = store.poll_interval
        self.poller = Poller(self, low, high)
        #: A prefetched task is written when the running one should end within this many seconds.
        self.prefetch_horizon = max(1.0, 2 * high)
        self.incoming: deque[tuple[Job, bytes]] = deque()
        self.outbox = Outbox(self)
        self.commands = Commands(self)
        self.loop = Loop(self, inline=concurrency == 1)
        self.book.renew_lease()  # before any worker starts: it leaves at once if there is no lease
        self.store.wait(self.channel, 0)  # listen before any worker can ring

    def start(self) -> None:
        """Start the crew's loop (after a named crew's recovery has filled the ledger)."""
        if self.ledger.tasks:
            self.poller.next_poll = self.clock()  # adopted workers' answers may be waiting already
        self.loop.thread.start()

    # ------------------------------------------------------------------ state kept by collaborators
    @property
    def keeper(self) -> Keeper | None:
        """A named crew's journal keeper (receipts, results kept until received); None otherwise."""
        return self.book.keeper

    @property
    def verdicts(self) -> VerdictLog | None:
        return self.book.verdicts

    @property
    def rosters(self) -> dict[str, RosterEntry]:
        """A named crew's rosters: how to make each worker again."""
        return self.book.rosters

    # Tests look at these (and one sets the lease's due time) under their names from before the split.
    @property
    def _roster_updates(self) -> dict[str, RosterEntry | None]:
        return self.book.roster_updates

    @property
    def _lease_due(self) -> float:
        return self.book.lease_due

    @_lease_due.setter
    def _lease_due(self, due: float) -> None:
        self.book.lease_due = due

    @property
    def polls(self) -> int:
        """Complete inbox polls so far."""
        return self.poller.polls

    _polls = polls  # its name before the split, which tests read

    @property
    def keeps_verdicts(self) -> bool:
        """A named crew: a result the controller makes is stored before anyone has it."""
        return self.book.verdicts is not None

    # ------------------------------------------------------------------ from users' threads
    def submit(self, job: Job, function: bytes) -> None:
        """Accept a job without taking the lock: the manager (or the next query) files it."""
        self.incoming.append((job, function))
        if self.loop.user_driving():
            return  # the thread that drives files it at its next receive(); else the manager, within PARK
        self.loop.nudge()

    def wake(self) -> None:
        self.store.notify(self.channel)

    def sync(self) -> None:
        """File jobs sent so far and plan them, so that queries see what ``send`` decided.

        On a store whose requests take microseconds (``request_concurrency == 1``) the calling
        thread also writes what was planned, if the manager is not busy writing: one thread
        hand-off less per round trip.
        """
        with self.lock:
            if not self.incoming:
                return
            self._accept()
            self.plan(self.clock())
        if not self.loop.write_here(self.loop.write_out):
            self.wake()

    def step(self, rung: bool = False) -> None:
        """One turn of the loop in the calling thread, without waiting (the simulator's driver)."""
        self.loop.step(rung)

    def drive(self, limit: float) -> None:
        """Called by a user's thread that would otherwise block: run the loop here for a while."""
        self.loop.drive(limit)

    def report(self, error: BaseException) -> None:
        """An error the user must hear of: raised by their next call that waits or asks."""
        with self.lock:
            self._errors.append(error)
            self.changed.notify_all()

    def forget_error(self, error: BaseException | None) -> None:
        """An error raised to the user directly (under the lock): not again from their next call."""
        if error is not None and self._errors and self._errors[-1] is error:
            self._errors.pop()

    def raise_errors(self) -> None:
        with self.lock:
            if self._errors:
                raise self._errors.popleft()
        self.check_store()

    def check_store(self) -> None:
        """Raise :class:`StoreGoneError` if the store is gone for good: the crew cannot go on."""
        gone = self.gone
        if gone is not None:
            raise copy.copy(gone) from gone.__cause__  # a copy each time: tracebacks do not pile up on one

    def _accept(self) -> None:
        while self.incoming:
            job, function = self.incoming.popleft()
            if job.state is not JobState.DONE:  # not withdrawn meanwhile
                self.ledger.accept(job, function)
            else:
                self.args.release(job)

    def release_args(self, jobs: Iterable[Job]) -> None:
        """Jobs made and never accepted (a send that failed): their arguments are needed no more."""
        with self.lock:
            for job in jobs:
                self.args.release(job)

    def plan(self, now: float) -> None:
        """Ask the dispatcher for batches and launches (under the lock)."""
        if now >= self.health.write_retry_at and self.gone is None:  # else: the store refused writes (or is gone)
            for cls, items in self.dispatcher.plan(now).items():
                self.pool.plan(cls, items)
        self.carry_out()

    # ------------------------------------------------------------------ the engine's orders (engine/orders.py)
    def _addressee(self, seq: int) -> tuple[str, int] | None:
        """The launch that task ``seq`` went to, while it is outstanding: only it may answer."""
        task = self.ledger.tasks.get(seq)
        return (task.worker, task.incarnation) if task is not None else None

    def _beside(self, worker: str, incarnation: int) -> bool:
        """Whether tasks to this worker are signed with its launch key (it runs beside this process)."""
        record = self.records.get(worker)
        return record is not None and record.backend.beside_controller

    def carry_out(self) -> None:
        """Carry out the engine's orders, oldest first (under the lock): each step does this before it
        writes, polls or sleeps, and each command of a user's thread after it asked the engine."""
        if self.orders:  # most calls find none: no list is made for them
            for order in self.orders.take():
                self._carry_out(order)
        if self.ledger.unsaved:  # results the controller made: the loop stores them (a named crew) now
            self.loop.nudge()

    def _carry_out(self, order: Order) -> None:
        match order:
            case WriteTask(place, task):
                self.outbox.write_batch(place, task)
            case WriteControl(place, control):
                self.outbox.write_control(place, control)
            case Cleanup(place, stop):
                self.outbox.cleanup(place, stop)
            case RosterChanged(name, live):
                self.book.roster_changed(name, live)
            case Report(error):
                self.report(error)
            case PollSoon():
                self.poller.soon()

    def write_control(self, record: WorkerRecord, control: protocol.Stop | protocol.Revoke | protocol.Cancel) -> None:
        """The runner's own control records (a user's cancel, a resumed crew's cancels)."""
        self.outbox.write_control(Place.of(record), control)

    def roster_changed(self, name: str, live: bool | None) -> None:
        """A named crew's worker ended (``live`` False) or was dismissed (None): say so in the roster."""
        self.book.roster_changed(name, live)

    def poll_soon(self) -> None:
        """Look at the inbox within the shortest poll interval."""
        self.poller.soon()

    def poll_floor(self) -> float:
        """Half the shortest running job: polling faster would find nothing new on average."""
        return self.poller.floor()

    def mark_down(self, record: WorkerRecord) -> None:
        """The worker's process ended (or was killed), as a backend call found (under the lock)."""
        self.supervisor.found_ended(record, self.clock())
        self.carry_out()

    def finish(self, job: Job, result: Result) -> None:
        """End a job with a result the runner made (a user's cancel, a dismissal), under the lock,
        as the engine ends one (:func:`~crew_core.engine.deaths.end_job`)."""
        end_job(self, job, result)
        if self.ledger.unsaved:
            self.loop.nudge()  # made in a user's thread, the loop may sleep: a named crew stores it now

    def finish_error(self, job: Job, error: BaseException) -> None:
        self.finish(job, Result(job.id, ERROR, error=error, tags=job.tags, tries=job.runs))

    # ------------------------------------------------------------------ results and receipts
    def received(self, job_id: int) -> None:
        """The user has the job's result (under the lock): a named crew writes a receipt soon."""
        keeper = self.book.keeper
        if keeper is not None:
            keeper.received(job_id)
            if not self.loop.user_driving():
                self.loop.nudge()

    def write_receipts_now(self) -> None:
        """On a store whose requests take microseconds, the user's thread writes the receipt itself
        before it takes another result: a crash can then repeat only the last result handed out."""
        if self.book.receipts_due():
            self.loop.write_here(self.book.write_receipt)

    def renew_lease(self) -> None:
        """Renew the lease now (a closing named crew, so that nobody takes it over while it is removed)."""
        self.book.renew_lease()

    def save_verdicts_now(self) -> None:
        """From a user's thread (``cancel``): store the results made so far before going on."""
        if self.verdicts is not None and self.ledger.unsaved:
            with uninterrupted():
                self.book.save_verdicts()

    def hand_over(self) -> None:
        """Give claimed results to their claims (futures, ``map``), outside the lock and the loop's I/O lock.

        Done-callbacks of futures run here, in whichever thread drove the loop, as in
        ``concurrent.futures``; they must not wait for other results of this crew.
        """
        if not self.ledger.claimed:
            return
        with self.lock:
            claimed = self.ledger.take_claimed()
            for _, result in claimed:
                self.received(result.id)  # a named crew writes a receipt: the claim has it
        with uninterrupted():  # Ctrl-C half way would lose the rest: they left the ledger already
            for claim, result in claimed:
                try:
                    claim.finished(result)
                except Exception:
                    log.exception("crew %s: handing over the result of job %d failed", self.crew_id, result.id)
        with self.lock:
            self.changed.notify_all()  # map() waits on this, not on the claim

    def withdraw(self, job: Job) -> bool:
        """Take a job that has not gone to a worker out of the crew (a cancelled future)."""
        with self.lock:
            if not self.ledger.withdraw(job):  # one still in ``incoming`` is marked DONE: _accept skips it
                return False
            self.received(job.id)  # a named crew must not run it again after a resume
            return True

    def fail_claims(self, error: CrewError, *, heard: bool = True) -> None:
        """The crew stops (closed, or left for a next controller): claims get an error, not silence.

        ``heard=False`` (the store is gone for good, the crew still open) spares the claims whose
        owners raise the crew's errors themselves (``map``): they hear it and give the jobs back.
        """
        with self.lock:
            self._accept()
            self.ledger.fail_claims(lambda job: Result(job.id, ERROR, error=error, tags=job.tags),
                                    spare=None if heard else (lambda claim: claim.raises_errors))
        self.hand_over()

    # ------------------------------------------------------------------ commands and queries (commands.py)
    def cancel(self, job_id: int | None, tags: frozenset[str] | None) -> list[int]:
        """Cancel job ``job_id`` or the jobs with ``tags``: each gets its result now (see Crew.cancel)."""
        return self.commands.cancel(job_id, tags)

    def add_worker(
        self, backend: Worker, lifetime: tuple[int | None, float | None] = (None, None), initializer: str = ""
    ) -> None:
        """Take a new worker; ``initializer``: the digest of the data object its launches run first."""
        self.commands.add_worker(backend, lifetime, initializer)

    def worker_up(self, name: str) -> bool:
        return self.commands.worker_up(name)

    def worker_busy(self, name: str) -> bool:
        return self.commands.worker_busy(name)

    def worker_stuck(self, name: str) -> bool:
        return self.commands.worker_stuck(name)

    def summary(self) -> list[dict[str, Any]]:
        """One row per worker for ``crew.summary()`` (see ``summary.COLUMNS``)."""
        return self.commands.summary()

    def waiting_on(self, wanted: frozenset[str]) -> bool:
        """True while a job with ``wanted`` tags may still finish without the user's help."""
        return self.commands.waiting_on(wanted)

    def sendable(self, wanted: frozenset[str]) -> bool:
        return self.commands.sendable(wanted)

    def launch(self, records: list[WorkerRecord]) -> None:
        """Start these down workers now, in this thread (one ``start_many`` per class)."""
        self.commands.launch(records)

    def launch_named(self, names: Iterable[str]) -> None:
        self.commands.launch_named(names)

    def restart(self, records: list[WorkerRecord]) -> None:
        self.commands.restart(records)

    def restart_named(self, names: Iterable[str]) -> None:
        self.commands.restart_named(names)

    def request_stop_named(self, names: Iterable[str], idle_only: bool) -> list[str]:
        """Ask these workers to stop; returns the names of those asked now."""
        return self.commands.request_stop_named(names, idle_only)

    def stop_now(self, names: list[str]) -> None:
        """Stop workers for good and wait until they are down: idle ones politely, busy ones by force."""
        self.commands.stop_now(names)

    def remove(self, names: list[str]) -> None:
        """Forget dismissed (down) workers; jobs no remaining worker can run end as errors."""
        self.commands.remove(names)

    def abandon(self) -> None:
        """Stop the thread and the pools, and nothing else: workers and objects stay (named crews)."""
        self.commands.abandon()

    def close(self) -> None:
        """Stop every worker, the thread and the pools; remove the crew's objects from the store."""
        self.commands.close()
