"""The manager: the crew's one background thread, which owns all traffic with the workers.

Users' threads only record intentions under the manager's lock (a job accepted, a batch
planned, a stop requested); the manager thread does the I/O: it writes the outbox (task records,
in order per worker, in parallel across workers on slow stores), polls the inbox, and hands
backend calls (start, status, kill) to a small pool so that a slow backend never delays results.
``send`` therefore never blocks on a store or a backend.

Each step of the loop: apply what the backend pool reported, accept new jobs, poll the inbox if
due (always after a worker was found ended, so its last results count), settle dead workers,
kill hung ones, plan (dispatcher), then execute writes and launches.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from crew_core.backoff import Backoff
from crew_core.durable.journal import EPOCH_SPAN, Keeper
from crew_core.durable.verdicts import VerdictLog
from crew_core.engine.answers import Answers
from crew_core.engine.dispatcher import Dispatcher
from crew_core.engine.ledger import Job, JobState, Ledger, Task
from crew_core.engine.summary import COLUMNS
from crew_core.engine.supervisor import Phase, Supervisor, WorkerRecord
from crew_core.errors import (
    CorruptObjectError,
    CrewError,
    JobCancelledError,
    StoreGoneError,
    WorkerLaunchError,
    WorkerLostError,
)
from crew_core.plugin.store import Store
from crew_core.plugin.worker import Launch, Worker
from crew_core.results import CANCELLED, ERROR, Result
from crew_core.runner.inbox import Inbox, Mail
from crew_core.runner.signals import interpreter_exiting, uninterrupted
from crew_core.settings import Settings as Settings  # its home before the settings table
from crew_core.wire import protocol
from crew_core.wire.protocol import Batch, Call, Outcome, RosterEntry, TaskRecord
from crew_core.wire.serialize import load_outcome
from crew_core.wire.signing import Sealed

log = logging.getLogger("crew")

#: The manager never sleeps longer than this, whatever its deadlines say.
MAX_SLEEP = 1.0
#: While a user's thread drives the loop, the manager thread checks this often whether it still does.
PARK = 0.05


@dataclass(slots=True)
class _Write:
    """A task record to write for one worker; writes for one worker happen in order."""

    worker: str
    incarnation: int
    key: str
    channel: str
    record: TaskRecord
    task: Task | None = None


@dataclass(slots=True)
class _Cleanup:
    """An incarnation that ended: delete its keys; leave a Stop if it may still be running."""

    worker: str
    prefix: str
    stop: protocol.Stop | None


class Manager:
    """State and background thread of one crew (see the module docstring)."""

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
        self.secret = secret
        self.sealed = Sealed(store, secret)  # every record is signed with the crew's secret
        self.store_spec = store_spec
        self.settings = settings
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.ledger = Ledger()
        self.raw = raw
        self.ledger.issued = epoch * EPOCH_SPAN  # keys sort after those of earlier controllers
        self.epoch = epoch
        self.keeper = Keeper(self.sealed, crew_id, epoch) if durable else None
        self.verdicts = VerdictLog(self.sealed, crew_id, epoch) if durable else None  # results it makes itself
        self.rosters: dict[str, RosterEntry] = {}  # named crews: how to make each worker again
        self._roster_updates: dict[str, RosterEntry | None] = {}  # to write (None: to delete)
        self._jobs_sent = jobs_sent
        self.records: dict[str, WorkerRecord] = {}
        self.supervisor = Supervisor(self, draw)
        self.dispatcher = Dispatcher(self)
        self.answers = Answers(self, keeps_results=durable)
        concurrency = max(1, int(getattr(store, "request_concurrency", 1)))
        self.io_pool = ThreadPoolExecutor(concurrency, "crew-io") if concurrency > 1 else None
        self.backend_pool = backend_pool or ThreadPoolExecutor(8, "crew-backend")
        self.inbox = Inbox(self.sealed, crew_id, self.io_pool, keep_results=durable, clock=clock)
        self.channel = protocol.controller_channel(crew_id)
        low, high = store.poll_interval
        self._poll_low, self._poll_high = low, high
        self._poll_backoff = Backoff(low, high)
        self._next_poll = math.inf
        #: A prefetched task is written when the running one should end within this many seconds.
        self.prefetch_horizon = max(1.0, 2 * high)
        self.incoming: deque[tuple[Job, bytes]] = deque()
        self._outbox: list[_Write | _Cleanup] = []
        self._launches: dict[type[Worker], list[tuple[WorkerRecord, Launch]]] = {}
        self._events: deque[Callable[[float], None]] = deque()
        self._errors: deque[BaseException] = deque(maxlen=100)
        # One back-off for every store request that failed (writes, inbox reads, the lease, the
        # doorbell): an outage slows them all alike; any request that succeeds resets it.
        self._store_backoff = Backoff(0.05, 5.0)
        self._write_retry_at = 0.0
        self._wake_pending = False
        self._io = threading.Lock()  # one thread does the store I/O at a time: writes stay in order
        self._user_turn = -math.inf  # when a user's thread last ran (or asked to run) the loop
        self._io_holder: int | None = None  # the thread that holds self._io, if any
        self._parked = threading.Condition(self.lock)
        self._step_failures = Backoff(0.05, 5.0)  # a step that raised (a bug, not the store): report, pause
        self._housekeeping_due = False
        self._polls = 0  # inbox polls so far: a worker found ended is settled after the next one
        self._inline = concurrency == 1
        self._store_failing = False
        self.gone: StoreGoneError | None = None  # the store is gone for good: the crew is broken
        self._stopping = False
        self._lease = 0
        self._lease_due = 0.0
        self._renew_lease()  # before any worker starts: it leaves at once if there is no lease
        self.store.wait(self.channel, 0)  # listen before any worker can ring
        self._thread = threading.Thread(target=self._run, name=f"crew-manager-{crew_id}", daemon=True)

    def start(self) -> None:
        """Start the crew's loop (after a named crew's recovery has filled the ledger)."""
        if self.ledger.tasks:
            self._next_poll = self.clock()  # adopted workers' answers may be waiting already
        self._thread.start()

    # ------------------------------------------------------------------ from users' threads
    def submit(self, job: Job, function: bytes) -> None:
        """Accept a job without taking the lock: the manager (or the next query) files it."""
        self.incoming.append((job, function))
        if self._user_driving():
            return  # the thread that drives files it at its next receive(); else the manager, within PARK
        if not self._wake_pending:  # set after the append: a wake-up is never lost
            self._wake_pending = True
            self.wake()

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
            self._plan(self.clock())
        if self._inline and self._io.acquire(blocking=False):
            try:
                with uninterrupted():
                    self._write_out()
            finally:
                self._io.release()
        else:
            self.wake()

    def report(self, error: BaseException) -> None:
        """An error the user must hear of: raised by their next call that waits or asks."""
        with self.lock:
            self._errors.append(error)
            self.changed.notify_all()

    def _store_trouble(self, exc: BaseException) -> None:
        """A store request failed: the user hears of it once per outage, not once per retry.

        A store gone for good (:class:`StoreGoneError`) is no outage: nothing in flight can come
        back, so from now on every call that waits or asks raises it (:meth:`check_store`), futures
        end with it, and the loop does no more store I/O (:meth:`_turn_gone`).
        """
        if isinstance(exc, StoreGoneError) and self.gone is None:
            log.error("crew %s: its store is gone for good; no job in flight can come back: %s", self.crew_id, exc)
            with self.lock:
                self.gone = exc
                self.changed.notify_all()
        if not self._store_failing:
            self._store_failing = True
            self.report(exc)

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

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:  # not even SystemExit may end the crew's loop unnoticed
            if self._stopping or interpreter_exiting():
                return  # closed under it, or the interpreter is exiting: its pools are gone
            log.exception("crew %s: its loop ended", self.crew_id)
            raise

    def _loop(self) -> None:
        while not self._stopping:
            if self._user_driving():
                with self.lock:
                    self._parked.wait(PARK)
                self.hand_over()
                continue
            if not self._io.acquire(timeout=PARK):
                continue
            self._io_holder = threading.get_ident()
            try:
                if not self._user_driving():
                    self._turn(MAX_SLEEP)
            finally:
                self._io_holder = None
                self._io.release()
            self.hand_over()

    def step(self, rung: bool = False) -> None:
        """One turn of the loop in the calling thread, without waiting (the simulator's driver)."""
        if self.gone is not None:
            self._step_gone()
        else:
            if self._housekeeping_due:
                self._housekeeping()
            self._step_io(rung)
        self.hand_over()

    def _user_driving(self) -> bool:
        """A user's thread waiting in receive() runs the loop (or asked to, within PARK seconds)."""
        return self._inline and self.clock() - self._user_turn < PARK

    def _turn(self, limit: float, hurry: bool = False) -> None:
        """One turn of the loop (holding ``self._io``): wait for a wake-up or a deadline, then step."""
        if self.gone is not None:
            self._turn_gone(limit)
            return
        if self._housekeeping_due:  # left over by a hurried turn: done while workers work
            with uninterrupted():
                self._housekeeping()
        with self.lock:
            timeout = self._next_deadline(self.clock()) - self.clock()
        try:
            rung = self.store.wait(self.channel, min(max(timeout, 0.0), limit))
        except Exception as exc:  # the store broke under the doorbell: keep polling slowly
            log.warning("crew %s cannot wait for wake-ups: %s", self.crew_id, exc)
            time.sleep(min(limit, self._store_backoff.next()))
            rung = False
        if self._stopping:
            return
        try:
            with uninterrupted():  # a step cut in half by Ctrl-C would lose jobs: it finishes first
                self._step_io(rung, hurry=hurry)
            self._step_failures.reset()
        except Exception as exc:  # never die: report, pause, go on (an interrupt goes to the user)
            log.exception("crew %s: a step of the crew's loop failed", self.crew_id)
            self.report(exc)
            time.sleep(min(limit, self._step_failures.next()))

    def _turn_gone(self, limit: float) -> None:
        """A turn once the store is gone for good: no store I/O, which could only fail. Backend
        reports are still applied (``close()`` waits for starts in flight), and jobs sent meanwhile
        are taken in so that their futures, like every other, end with the store's error."""
        self._step_gone()
        with self.lock:
            if not self._events and not self.incoming and not self._stopping:
                self.changed.wait(limit)  # no doorbell rings any more

    def _step_gone(self) -> None:
        assert self.gone is not None
        self.fail_claims(self.gone, heard=False)
        with self.lock:
            self._apply_events(self.clock())

    def drive(self, limit: float) -> None:
        """Called by a user's thread that would otherwise block: run the loop here for a while.

        On a store whose requests take microseconds this saves two thread hand-offs per round
        trip (the manager's and back); elsewhere, and while another thread drives, just wait.
        """
        if not self._inline or self._stopping or not self.drive_from_user_threads:
            with self.lock:
                self.changed.wait(limit)
            return
        self._user_turn = self.clock()  # before trying: the manager thread parks
        limit = min(limit, PARK / 2)  # turn often enough that the manager stays parked
        if self._io.acquire(blocking=False):
            self._io_holder = threading.get_ident()
            try:
                self._turn(limit, hurry=True)
            finally:
                self._io_holder = None
                self._io.release()
            self.hand_over()
            return
        if self._io_holder == self._thread.ident:
            self.wake()  # the manager thread sits in a long wait: it steps once more and parks
        with self.lock:
            self.changed.wait(limit)

    def _write_out(self) -> None:
        """Write the outbox and start the launches planned so far (holding ``self._io``)."""
        if self.gone is not None:  # nothing can be written, and a worker launched now could never get a task
            with self.lock:
                launches, self._launches = self._launches, {}
                for items in launches.values():  # planned in the turn that found the store gone: refused
                    self.supervisor.launched([(r, r.incarnation) for r, _ in items], self.gone, self.clock())
            return
        with self.lock:
            if self.clock() >= self._write_retry_at:  # after a failed write, give the store a moment
                outbox, self._outbox = self._outbox, []
            else:
                outbox = []
            launches, self._launches = self._launches, {}
        for cls, items in launches.items():
            self.backend_pool.submit(self._start, cls, items)
        if self._roster_updates:  # first: a worker that ended must not be adopted by a next controller
            self._write_rosters()
        if self.ledger.unsaved and self.clock() >= self._write_retry_at:
            self._save_verdicts()
        if self._receipts_due() and self.clock() >= self._write_retry_at:
            self._write_receipt()
        if not outbox:
            return
        try:
            self._execute(outbox)
        except BaseException:  # cut short: every record is written later (writing one twice is harmless)
            with self.lock:
                self._outbox[:0] = [i for i in outbox if i not in self._outbox and self._still_wanted(i)]
            raise

    def _step_io(self, rung: bool, hurry: bool = False) -> None:
        """New work out, then the inbox, then housekeeping.

        ``hurry`` (a user's thread waiting for a result) leaves the housekeeping for the start of
        its next turn, once the result is in the user's hands.
        """
        self._wake_pending = False
        now = self.clock()
        news = self._events or self.incoming or self._outbox or self._launches or self.ledger.unsaved
        if news or self._receipts_due():
            with self.lock:
                self._apply_events(now)
                self._accept()
                self._plan(now)
            self._write_out()  # new work goes out before the inbox is read
        with self.lock:
            rang = rung and self.store.notifies and bool(self.ledger.tasks)  # else: a send rang
            scheduled = now >= self._next_poll or any(record.down_pending for record in self.records.values())
            poll = rang or scheduled
            # A worker rang about one of a few tasks: read their answers without listing first (the
            # listing, for beats and exit notes too, comes at the next poll).
            expected = list(self.ledger.tasks) if rang and len(self.ledger.tasks) <= 4 else None
        if poll and self._poll(expected) and hurry:
            self._housekeeping_due = True
            return
        self._housekeeping()

    def renew_lease(self) -> None:
        """Renew the lease now (a closing named crew, so that nobody takes it over while it is removed)."""
        self._renew_lease()

    def _renew_lease(self) -> None:
        """Move the crew's lease on; workers leave once it has stood still for ``lease_timeout``."""
        self._lease += 1
        lease = protocol.Lease(self._lease, self.settings.lease_timeout, self.epoch, self._jobs_sent(),
                               socket.gethostname(), os.getpid(), time.time())  # fmt: skip
        self.sealed.put(protocol.lease_key(self.crew_id), protocol.encode_json(lease))
        self._lease_due = self.clock() + protocol.lease_renewal(self.settings.lease_timeout)

    def _housekeeping(self) -> None:
        """Renew the lease, settle dead workers, kill hung ones, restart, ask backends, plan, delete trash."""
        self._housekeeping_due = False
        if self.clock() >= self._lease_due:
            try:
                self._renew_lease()
            except Exception as exc:
                log.warning("crew %s cannot renew its lease: %s", self.crew_id, exc)
                self._store_trouble(exc)
                self._lease_due = self.clock() + self._store_backoff.next()
        with self.lock:
            now = self.clock()
            for record in self.records.values():
                if record.down_pending and record.down_poll < self._polls:  # its last results are in
                    self.supervisor.down(record, now)
            doomed = self.supervisor.check(now)
            for record in self.supervisor.restarts_due(now):
                for item in self.supervisor.restart(record, now):
                    self._launches.setdefault(type(item[0].backend), []).append(item)
            statuses = self.supervisor.due_status_checks(now)
            suspects = self.supervisor.due_presence_checks(now)
            self._plan(now)
            self.changed.notify_all()
        for record in doomed:
            self.backend_pool.submit(self._kill, record, record.incarnation)
        for cls, group in statuses:
            self.backend_pool.submit(self._status, cls, group)
        if suspects:
            self._check_presence(suspects)
        self._write_out()
        now = self.clock()
        if self.inbox.flush_due(now) <= now:
            self._flush()

    def _accept(self) -> None:
        while self.incoming:
            job, function = self.incoming.popleft()
            if job.state is not JobState.DONE:  # not withdrawn meanwhile
                self.ledger.accept(job, function)

    def _plan(self, now: float) -> None:
        if now < self._write_retry_at or self.gone is not None:
            return  # the store refused writes: give it a moment (or it is gone: nothing more goes out)
        for cls, items in self.dispatcher.plan(now).items():
            self._launches.setdefault(cls, []).extend(items)

    def _next_deadline(self, now: float) -> float:
        if self.incoming or self._events or self._launches or (self._outbox and now >= self._write_retry_at):
            return now
        if (self._receipts_due() or self.ledger.unsaved) and now >= self._write_retry_at:
            return now
        deadline = min(
            self._next_poll,
            self._lease_due,
            self.supervisor.next_deadline(now),
            self.dispatcher.next_deadline(now),
            self.inbox.flush_due(now),
        )
        if (self.ledger.backlog or self._outbox or self.ledger.unsaved) and self._write_retry_at > now:
            deadline = min(deadline, self._write_retry_at)
        return deadline

    # ------------------------------------------------------------------ the inbox
    def _poll(self, expected: list[int] | None = None) -> bool:
        """Read the inbox and apply what it holds; True if results came."""
        with self.lock:
            watermark = min(self.ledger.tasks, default=self.ledger.issued + 1) - 1
        try:
            mail = self.inbox.poll(watermark, expected)
        except Exception as exc:
            log.warning("crew %s cannot read its inbox: %s", self.crew_id, exc)
            self._store_trouble(exc)
            with self.lock:
                self._next_poll = self.clock() + self._store_backoff.next()
            return False
        outcomes = {
            entry.key: {job_id: load_outcome(data, self.raw) for job_id, data in batch.outcomes if data}
            for entry, batch in mail.results
            if not isinstance(batch, CorruptObjectError)
        }  # unpickled outside the lock: values may be large
        with self.lock:
            now = self.clock()
            self._apply_mail(mail, outcomes, now)
            self.inbox.mark(mail)  # only now: a poll cut short is read again, nothing is lost
            if mail.failed:  # some reads failed: read those again soon, and say so once
                log.warning("crew %s cannot read %d answer(s) yet: %s", self.crew_id, len(mail.failed),
                            mail.failed[0])  # fmt: skip
                self._store_trouble(mail.failed[0])
                self._next_poll = now + self._store_backoff.next()
            else:
                self._store_failing = False
                self._store_backoff.reset()
                self._polls += 1  # a complete poll: workers found ended before it can be settled
                self._schedule_poll(now, found=bool(mail))
            if mail.results:
                self.changed.notify_all()  # results first; the rest of the step can wait
        return bool(mail.results)

    def _apply_mail(self, mail: Mail, outcomes: dict[str, dict[int, Outcome]], now: float) -> None:
        """The engine decides what the mail means (``engine/answers.py``); this carries out its reading."""
        reading = self.answers.apply(mail.results, mail.beats, mail.exits, outcomes, now)
        for key in reading.read_tasks:
            self.inbox.discard_task(key)
        if self.keeper is not None:
            for job_id, key in reading.answered:
                self.keeper.answered(job_id, key)  # kept in the store until the user has it
        for key in reading.drop:
            self._drop_result(key)

    def _drop_result(self, key: str) -> None:
        """A named crew keeps results until received (see ``Inbox.mark`` for the others): not this one."""
        if self.keeper is not None and key not in self.keeper.left:
            self.inbox.discard((key,))

    def _schedule_poll(self, now: float, found: bool) -> None:
        """Poll again soon after news; back off while quiet; never faster than jobs can end."""
        if found:
            self._poll_backoff.reset()
        if not self.ledger.tasks and not any(record.up for record in self.records.values()):
            self._next_poll = math.inf
            return
        gap = self._poll_backoff.next()
        if self.ledger.tasks and not self.store.notifies:
            floor = self.poll_floor()
            soon = self.dispatcher.next_completion()
            if soon is not None:
                gap = min(gap, max(soon - now, 0.0) + self._poll_low)
            gap = max(gap, floor)
        self._next_poll = now + gap

    def mark_down(self, record: WorkerRecord) -> None:
        """The worker's process ended (or was killed): settle it once the inbox was read again
        (at once if the store is gone for good: no inbox will be read again)."""
        if self.gone is not None:
            self.supervisor.down(record, self.clock())
            return
        self.supervisor.ended(record, self._polls)

    def poll_soon(self) -> None:
        """Look at the inbox within the shortest poll interval."""
        self._next_poll = min(self._next_poll, self.clock() + self._poll_low)

    def poll_floor(self) -> float:
        """Half the shortest running job: polling faster would find nothing new on average."""
        shortest = self.dispatcher.shortest_running()
        if shortest is None:
            return self._poll_low
        return min(self._poll_high, max(self._poll_low, shortest / 2))

    # ------------------------------------------------------------------ writes
    def write_batch(self, record: WorkerRecord, task: Task) -> None:
        functions = {job.function: self.ledger.functions[job.function] for job in task.jobs}
        if record.backend.nested:  # a forwarder routes jobs by their tags in its inner crew
            calls = tuple(Call(job.id, job.function, job.args, job.timeout, tuple(job.tags)) for job in task.jobs)
        else:
            calls = tuple(Call(job.id, job.function, job.args, job.timeout) for job in task.jobs)
        self._outbox.append(
            _Write(record.name, record.incarnation, protocol.task_key(record.prefix, task.seq), record.channel,
                   Batch(task.seq, calls, functions), task)
        )  # fmt: skip
        # News for the inbox soon: but never poll faster than the jobs running can end.
        now = self.clock()
        self._poll_backoff.reset()
        self._next_poll = min(self._next_poll, now + (self._poll_low if self.store.notifies else self.poll_floor()))

    def write_control(self, record: WorkerRecord, control: protocol.Stop | protocol.Revoke | protocol.Cancel) -> None:
        key = protocol.task_key(record.prefix, control.seq)
        self._outbox.append(_Write(record.name, record.incarnation, key, record.channel, control))
        self._next_poll = min(self._next_poll, self.clock() + self._poll_low)

    def cleanup(self, record: WorkerRecord, straggler: bool) -> None:
        stop = protocol.Stop(self.ledger.next_seq()) if straggler else None
        self._outbox.append(_Cleanup(record.name, record.prefix, stop))

    def _execute(self, outbox: list[_Write | _Cleanup]) -> None:
        groups: dict[str, list[_Write | _Cleanup]] = {}
        for item in outbox:
            groups.setdefault(item.worker, []).append(item)

        def run(items: list[_Write | _Cleanup]) -> tuple[list[_Write | _Cleanup], BaseException | None]:
            for index, item in enumerate(items):
                try:
                    if isinstance(item, _Write):
                        self.sealed.put(item.key, protocol.encode_task(item.record))
                        if item.task is not None:
                            item.task.written = True
                        self.store.notify(item.channel)
                    else:
                        self.store.delete_prefix(item.prefix)
                        if item.stop is not None:
                            key = protocol.task_key(item.prefix, item.stop.seq)
                            self.sealed.put(key, protocol.encode_task(item.stop))
                except BaseException as exc:  # whatever it was, what is not written is written later
                    return items[index:], exc
            return [], None

        if self.io_pool is not None and len(groups) > 1:
            outcomes = list(self.io_pool.map(run, groups.values()))
        else:
            outcomes = [run(items) for items in groups.values()]
        failed = [(items, exc) for items, exc in outcomes if exc is not None]
        with self.lock:
            if not failed:
                self._store_backoff.reset()
                self._store_failing = False
                return
            # Written again later, not taken back: a put that failed may have been stored (a timeout
            # after the write), and the worker may run it; writing the same record twice is harmless.
            self._write_retry_at = self.clock() + self._store_backoff.next()
            retry = [item for items, _ in failed for item in items if self._still_wanted(item)]
            self._outbox[:0] = retry
            for items, exc in failed:
                log.warning("crew %s: a store write failed (%s); %d record(s) will be written again",
                            self.crew_id, exc, len(items))  # fmt: skip
            errors = [exc for _, exc in failed]
            self._store_trouble(errors[0])
        for exc in errors:
            if not isinstance(exc, Exception):
                raise exc  # an interrupt or an exit: after the records were put back

    def _check_presence(self, suspects: dict[str, list[Task]]) -> None:
        """Long-unanswered tasks whose records left the store (deleted by someone else, lost by
        the store) are never found by their worker: their jobs run again, uncharged."""
        gone: list[tuple[str, Task]] = []
        for prefix, tasks in suspects.items():
            try:
                present = set(self.store.list(prefix))
            except Exception as exc:  # cannot look now: the next check will
                log.warning("crew %s cannot check its task records under %s: %s", self.crew_id, prefix, exc)
                continue
            gone += [(prefix, task) for task in tasks if protocol.task_key(prefix, task.seq) not in present]
        if not gone:
            return
        with self.lock:
            now = self.clock()
            for prefix, task in gone:
                if self.ledger.close_task(task.seq, now) is None:
                    continue  # answered meanwhile
                log.warning("crew %s: task record %s vanished from the store before worker %r read it;"
                            " its %d job(s) run again", self.crew_id, protocol.task_key(prefix, task.seq),
                            task.worker, len(task.jobs))  # fmt: skip
                self.ledger.requeue(task.jobs)
            self._plan(now)

    def roster_changed(self, name: str, live: bool | None) -> None:
        """A named crew's worker ended (``live`` False) or was dismissed (None): say so in the roster."""
        entry = self.rosters.get(name)
        if entry is None:
            return
        if live is None:
            del self.rosters[name]
            self._roster_updates[name] = None
        else:
            entry = self.rosters[name] = replace(entry, live=live)
            self._roster_updates[name] = entry

    def _write_rosters(self) -> None:
        with self.lock:
            updates, self._roster_updates = self._roster_updates, {}
        for name, entry in updates.items():
            try:
                if entry is None:
                    self.store.delete([protocol.roster_key(self.crew_id, name)])
                else:
                    self.sealed.put(protocol.roster_key(self.crew_id, name), protocol.encode_json(entry))
            except Exception as exc:
                log.warning("crew %s cannot update worker %r in its roster yet: %s", self.crew_id, name, exc)
                with self.lock:
                    self._roster_updates.setdefault(name, entry)

    def _receipts_due(self) -> bool:
        return self.keeper is not None and bool(self.keeper.unreceipted)

    def received(self, job_id: int) -> None:
        """The user has the job's result (under the lock): a named crew writes a receipt soon."""
        if self.keeper is not None:
            self.keeper.received(job_id)
            if not self._user_driving() and not self._wake_pending:
                self._wake_pending = True
                self.wake()

    def write_receipts_now(self) -> None:
        """On a store whose requests take microseconds, the user's thread writes the receipt itself
        before it takes another result: a crash can then repeat only the last result handed out."""
        if self._inline and self._receipts_due() and self._io.acquire(blocking=False):
            try:
                with uninterrupted():
                    self._write_receipt()
            finally:
                self._io.release()

    def _write_receipt(self) -> None:
        """Say in the store which results the user has: a next controller will not hand them out again."""
        assert self.keeper is not None
        try:
            garbage = self.keeper.write_receipt(self.lock)  # the PUT without the lock: receive() goes on
        except Exception as exc:
            log.warning("crew %s cannot write a receipt yet: %s", self.crew_id, exc)
            with self.lock:
                self._write_retry_at = self.clock() + self._store_backoff.next()
            self._store_trouble(exc)
            return
        with self.lock:
            self.inbox.discard(garbage)
        try:
            self._renew_lease()  # its "jobs" high-water: ids go on from it after a resume
        except Exception as exc:
            log.warning("crew %s cannot renew its lease: %s", self.crew_id, exc)

    def _still_wanted(self, item: _Write | _Cleanup) -> bool:
        """Whether a record that failed to be written is still worth writing."""
        if isinstance(item, _Cleanup):
            return True
        record = self.records.get(item.worker)
        if record is None or not record.up or record.incarnation != item.incarnation:
            return False  # that incarnation is over: its tasks went back to the backlog
        return item.task is None or item.task.seq in self.ledger.tasks

    def _flush(self) -> None:
        try:
            deleted = self.inbox.flush()
        except Exception as exc:
            log.warning("crew %s cannot delete answered objects yet: %s", self.crew_id, exc)
            return
        if self.keeper is not None:
            with self.lock:
                self.keeper.deleted(deleted)
                freed, self.keeper.freed_receipts = self.keeper.freed_receipts, []
                self.inbox.discard(freed)  # only now: a receipt outlives the journal objects it covers

    # ------------------------------------------------------------------ backend calls (pool)
    def _event(self, apply: Callable[[float], None]) -> None:
        self._events.append(apply)
        self.wake()

    def _apply_events(self, now: float) -> None:
        while self._events:
            self._events.popleft()(now)

    def enroll(self, record: WorkerRecord) -> None:
        """A named crew writes down how to make the worker again, and which launch is current."""
        entry = self.rosters.get(record.name)
        if entry is None:
            return
        entry = self.rosters[record.name] = replace(entry, incarnation=record.incarnation, live=True)
        self.sealed.put(protocol.roster_key(self.crew_id, record.name), protocol.encode_json(entry))

    def _start(self, cls: type[Worker], items: list[tuple[WorkerRecord, Launch]]) -> None:
        error = self._start_many(cls, items)
        group = [(record, record.incarnation) for record, _ in items]
        self._event(lambda now: self.supervisor.launched(group, error, now))

    def _start_many(self, cls: type[Worker], items: list[tuple[WorkerRecord, Launch]]) -> BaseException | None:
        try:
            for record, _ in items:
                self.enroll(record)  # before it starts: a next controller must know this launch
            cls.start_many([(record.backend, launch) for record, launch in items])
        except WorkerLaunchError as exc:
            return exc
        except Exception as exc:
            names = ", ".join(repr(record.name) for record, _ in items)
            error = WorkerLaunchError(f"worker(s) {names} ({cls.__name__}) failed to start: {exc}")
            error.__cause__ = exc
            return error
        return None

    def _status(self, cls: type[Worker], group: list[tuple[WorkerRecord, int]]) -> None:
        try:
            answers = cls.running([record.backend for record, _ in group])
        except Exception as exc:  # cannot ask: count them as running; silence still finds the dead
            log.warning("cannot get the status of %s workers: %s", cls.__name__, exc)
            answers = {}
        report = [(record, inc, bool(answers.get(record.name, True))) for record, inc in group]
        self._event(lambda now: self.supervisor.on_status(cls, report, now))

    def _kill(self, record: WorkerRecord, incarnation: int) -> None:
        self._kill_backend(record)

        def killed(now: float) -> None:
            if record.incarnation == incarnation and record.up:
                self.mark_down(record)

        self._event(killed)

    def _kill_backend(self, record: WorkerRecord) -> None:
        try:
            if record.adopted:  # started by an earlier controller: its backend object never knew it
                self._end_adopted(record)
            else:
                record.backend.kill()
        except Exception as exc:
            log.warning("killing worker %r failed: %s", record.name, exc)

    def _end_adopted(self, record: WorkerRecord) -> None:
        """Find an adopted worker's launch on its backend by crew id (``Worker.find``) and end it."""
        backend = record.backend
        place = backend.place()
        if place is None:
            log.info("worker %r was adopted from an earlier controller and its class cannot find it on its"
                     " backend: a Stop in the store ends it", record.name)  # fmt: skip
            return
        cls = type(backend)
        found = [job for job in cls.find(self.label, place, via=backend) if (job.worker, job.incarnation) == (
                 record.name, record.incarnation)]  # fmt: skip
        if found:
            cls.end(found, via=backend)
            log.info("ended adopted worker %r on its backend (%s)", record.name, ", ".join(job.id for job in found))

    # ------------------------------------------------------------------ outcomes
    def finish(self, job: Job, result: Result) -> None:
        """End a job with a result the controller made (under the lock): a named crew stores it
        before anyone can have it (``verdicts.py``), in the loop's next write."""
        if self.verdicts is None:
            self.ledger.finish(job, result)
        elif self.ledger.finish(job, result, unsaved=True) and not self._wake_pending:
            self._wake_pending = True
            self.wake()  # made in a user's thread (dismiss, launch), the loop may sleep: it writes it now

    def _save_verdicts(self) -> None:
        """Store the results this controller made and hand them out; if the store fails they wait
        (handed out unstored, a crash would run their jobs again) and the loop tries again later."""
        assert self.verdicts is not None and self.keeper is not None
        try:
            self.verdicts.write(self.changed, self.ledger, self.keeper)
        except Exception as exc:
            log.warning("crew %s cannot store the results it made yet (they wait for the store): %s",
                        self.crew_id, exc)  # fmt: skip
            with self.lock:
                self._write_retry_at = self.clock() + self._store_backoff.next()
            self._store_trouble(exc)

    def save_verdicts_now(self) -> None:
        """From a user's thread (``cancel``): store the results made so far before going on."""
        if self.verdicts is not None and self.ledger.unsaved:
            with uninterrupted():
                self._save_verdicts()

    def finish_error(self, job: Job, error: BaseException) -> None:
        self.finish(job, Result(job.id, ERROR, error=error, tags=job.tags, tries=job.runs))

    def hand_over(self) -> None:
        """Give claimed results to their claims (futures, ``map``), outside the lock and ``_io``.

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

    def cancel(self, job_id: int | None, tags: frozenset[str] | None) -> list[int]:
        """Cancel job ``job_id`` or the jobs with ``tags``: each gets its result now (see Crew.cancel)."""
        cancelled = []
        with self.lock:
            self._accept()
            if job_id is not None:
                jobs = [self.ledger.jobs[job_id]] if job_id in self.ledger.jobs else []
            else:
                jobs = [job for job in self.ledger.jobs.values() if tags is not None and tags <= job.tags]
            now = self.clock()
            for job in jobs:
                task, waiting = job.task, job.state is JobState.WAITING
                reason = "before it started" if waiting else "while its worker had it"
                error = JobCancelledError(f"job {job.id} ({job.kind}) was cancelled {reason}")
                tries = job.runs + (not waiting)  # a job its worker had may have started
                self.finish(job, Result(job.id, CANCELLED, error=error, tags=job.tags, tries=tries))
                cancelled.append(job.id)
                record = self.records.get(task.worker) if task is not None else None
                if task is not None and record is not None and record.up and record.incarnation == task.incarnation:
                    self.write_control(record, protocol.Cancel(self.ledger.next_seq(), job.id))
                    task.stop_by = now + self.supervisor.stop_allowance()  # else its worker is killed
            self.changed.notify_all()
        self.wake()
        return cancelled

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

    # ------------------------------------------------------------------ queries (users' threads)
    def add_worker(self, backend: Worker, lifetime: tuple[int | None, float | None] = (None, None)) -> None:
        with self.lock:
            self.records[backend.name] = WorkerRecord(backend, lifetime=lifetime)

    def worker_up(self, name: str) -> bool:
        self.sync()
        with self.lock:
            return self._record(name).up

    def worker_busy(self, name: str) -> bool:
        self.sync()
        with self.lock:
            return self.ledger.has_tasks(name) or bool(self.ledger.held.get(name))

    def worker_stuck(self, name: str) -> bool:
        self.sync()
        with self.lock:
            return self.supervisor.stuck(self._record(name))

    def _record(self, name: str) -> WorkerRecord:
        try:
            return self.records[name]
        except KeyError:
            raise CrewError(f"worker {name!r} is not in this crew (dismissed?)") from None

    def summary(self) -> list[dict[str, Any]]:
        """One row per worker for ``crew.summary()`` (see ``summary.COLUMNS``)."""
        self.sync()
        rows = []
        with self.lock:
            for record in self.records.values():
                if self.supervisor.stuck(record):
                    state = "stuck"
                elif record.phase is Phase.UP:
                    state = "stopping" if record.stop_requested is not None or record.exit is not None else "up"
                else:
                    state = record.phase.value
                stats = record.stats
                rows.append({
                    "worker": record.name, "class": record.backend.worker_class or type(record.backend).__name__,
                    "tags": ",".join(sorted(record.tags)), "state": state, "launches": stats.launches,
                    "refused": stats.refused, "jobs": stats.jobs, "errors": stats.errors, "timeouts": stats.timeouts,
                    "crashes": stats.crashes, "busy_s": round(stats.busy, 3),
                })  # fmt: skip
                for row in record.inner:  # a forwarder's inner crew, as it last said
                    inner = {key: row.get(key, 0 if i >= 4 else "") for i, key in enumerate(COLUMNS)}
                    rows.append({**inner, "worker": f"{record.name}/{row.get('worker', '?')}", "inner": True})
        return rows

    def waiting_on(self, wanted: frozenset[str]) -> bool:
        """True while a job with ``wanted`` tags may still finish without the user's help.

        Not so for jobs held by stuck workers, nor for waiting jobs that only stuck workers could
        run: with ``auto_restart`` off they wait for ``restart()``.
        """
        unsaved = self.ledger.unsaved
        if unsaved and any(wanted <= result.tags and job.claim is None for job, result in unsaved):
            return True  # out once stored
        jobs = self.ledger.jobs.values()  # claimed ones never come to receive()
        stuck = [r for r in self.records.values() if self.supervisor.stuck(r)]
        if not stuck or self.settings.auto_restart:
            if not wanted:
                return len(self.ledger.jobs) > self.ledger.claims
            return any(wanted <= job.tags and job.claim is None for job in jobs)
        free = [r.tags for r in self.records.values() if not self.supervisor.stuck(r)]
        for job in jobs:
            if not wanted <= job.tags or job.holder is not None or job.claim is not None:
                continue
            if job.task is not None or any(job.tags <= tags for tags in free):
                return True
        return False

    def sendable(self, wanted: frozenset[str]) -> bool:
        for record in self.records.values():
            if not wanted <= record.tags:
                continue
            if record.accepting and not self.ledger.has_tasks(record.name):
                return True
            if not record.up and not self.supervisor.stuck(record):
                return True
        return False

    # ------------------------------------------------------------------ commands (users' threads)
    def launch(self, records: list[WorkerRecord]) -> None:
        """Start these down workers now, in this thread (one ``start_many`` per class)."""
        with self.lock:  # the crew's own loop may have launched some since they were chosen
            records = [record for record in records if not record.up and not record.retired]
            groups = self.supervisor.prepare(records, self.clock())
        first_error: BaseException | None = None
        for cls, items in groups.items():
            error = self._start_many(cls, items)
            with self.lock:
                self.supervisor.launched([(r, r.incarnation) for r, _ in items], error, self.clock())
                if error is not None and self._errors and self._errors[-1] is error:
                    self._errors.pop()  # raised here; not again from the next receive()
            first_error = first_error or error
        self.wake()
        if first_error is not None:
            raise first_error

    def launch_named(self, names: Iterable[str]) -> None:
        self.sync()
        with self.lock:
            records = [self._record(name) for name in names]
            stuck = [r for r in records if self.supervisor.stuck(r)]
            down = [r for r in records if not r.up and r not in stuck]
        if stuck:
            self.restart(stuck)  # launching a stuck worker is restarting it
        if down:
            self.launch(down)

    def restart(self, records: list[WorkerRecord]) -> None:
        with self.lock:
            now = self.clock()
            items = [item for record in records if not record.up for item in self.supervisor.restart(record, now)]
            groups: dict[type[Worker], list[tuple[WorkerRecord, Launch]]] = {}
            for item in items:
                groups.setdefault(type(item[0].backend), []).append(item)
        for cls, group in groups.items():
            error = self._start_many(cls, group)
            with self.lock:
                self.supervisor.launched([(r, r.incarnation) for r, _ in group], error, self.clock())
                if error is not None:
                    for record, _ in group:  # keep them stuck, to be tried again
                        record.retry_at = self.clock() + record.retry.next()
                    if self._errors and self._errors[-1] is error:
                        self._errors.pop()
            if error is not None:
                self.wake()
                raise error
        self.wake()

    def restart_named(self, names: Iterable[str]) -> None:
        self.sync()
        with self.lock:
            records = [self._record(name) for name in names]
        self.restart(records)

    def request_stop_named(self, names: Iterable[str], idle_only: bool) -> list[str]:
        """Ask these workers to stop; returns the names of those asked now."""
        self.sync()
        chosen = []
        with self.lock:
            now = self.clock()
            for name in names:
                record = self._record(name)
                if idle_only and self.ledger.has_tasks(name):
                    continue
                if self.supervisor.request_stop(record, now):
                    chosen.append(name)
        self.wake()
        return chosen

    def stop_now(self, names: list[str]) -> None:
        """Stop workers for good and wait until they are down: idle ones politely, busy ones by force."""
        self.sync()
        with self.lock:
            records = [self._record(name) for name in names]
            for record in records:
                self.supervisor.retire(record)
            now = self.clock()
            # A busy forwarder is asked too: it hands its jobs back and closes its inner crew.
            polite = [r for r in records if r.backend.nested or not self.ledger.has_tasks(r.name)]
            if self.gone is not None:
                polite = []  # no Stop can reach them through the store: their backends kill them now
            for record in polite:
                if record.phase is Phase.UP and not record.killing:
                    self.supervisor.request_stop(record, now)
            busy = [r for r in records if r.up and (r.phase is Phase.STARTING or r not in polite)]
        self.wake()
        self._kill_now(busy)
        with self.lock:
            # Each within its own grace (longer once it wrote a clean exit note): past it, the
            # manager's thread kills it (Supervisor.check).
            due = self.supervisor.kill_due
            while waiting := [d for r in records if r.up and self.clock() < (d := due(r, now))]:
                self.changed.wait(min(0.05, max(0.0, min(waiting) - self.clock())))
            left = [record for record in records if record.up]
        self._kill_now(left)
        with self.lock:
            for record in left:  # killed: they are down, whatever the backend says yet
                self.supervisor.down(record, self.clock())
        self.wake()

    def _kill_now(self, records: list[WorkerRecord]) -> None:
        for record in records:
            with self.lock:
                while record.phase is Phase.STARTING:  # let its start return before killing it
                    self.changed.wait(0.05)
                if not record.up:
                    continue
                self.supervisor.kill_now(record, self.clock())  # deliberate: its jobs go back uncharged
            self._kill_backend(record)
            with self.lock:
                if record.up:
                    self.mark_down(record)
        if records:
            self.wake()

    def remove(self, names: list[str]) -> None:
        """Forget dismissed (down) workers; jobs no remaining worker can run end as errors."""
        with self.lock:
            for name in names:
                record = self.records.pop(name)
                self.roster_changed(name, None)  # a next controller must not make it again
                self.ledger.requeue(self.ledger.held.pop(name, []))
                record.backend.close()
            lost = self.ledger.backlog.drain(lambda job: any(job.tags <= r.tags for r in self.records.values()))
            for job in lost:
                error = WorkerLostError(
                    f"job {job.id} needs tags {sorted(job.tags)} but the workers that carry them were dismissed"
                )
                self.finish_error(job, error)
            self.changed.notify_all()
        self.hand_over()

    def abandon(self) -> None:
        """Stop the thread and the pools, and nothing else: workers and objects stay (named crews)."""
        with self.lock:
            self._stopping = True
            self.changed.notify_all()
        self.wake()
        if self._thread is not threading.current_thread() and self._thread.is_alive():
            self._thread.join(timeout=10)
        if self.verdicts is not None and self.ledger.unsaved:  # the next controller delivers them, not reruns
            try:
                assert self.keeper is not None
                self.verdicts.write(self.changed, self.ledger, self.keeper)
            except Exception as exc:
                log.warning("crew %s could not store the results it made; their jobs run again under the next"
                            " controller: %s", self.crew_id, exc)  # fmt: skip
        self.backend_pool.shutdown(wait=False, cancel_futures=True)
        if self.io_pool is not None:
            self.io_pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop every worker, the thread and the pools; remove the crew's objects from the store."""
        try:
            self.stop_now(list(self.records))
        finally:
            with self.lock:
                self._stopping = True
                self.changed.notify_all()  # users' threads waiting in receive() learn the crew closed
            self.wake()
            if self._thread is not threading.current_thread():
                self._thread.join(timeout=10)
            with self.lock:  # the crew ends: nothing will resume it, so they go out unstored
                self.ledger.saved(self.ledger.take_unsaved())
            for record in self.records.values():
                try:
                    record.backend.close()
                except Exception as exc:
                    log.warning("closing worker %r failed: %s", record.name, exc)
            self.backend_pool.shutdown(wait=True, cancel_futures=True)
            if self.io_pool is not None:
                self.io_pool.shutdown(wait=True, cancel_futures=True)
