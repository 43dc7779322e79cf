"""The supervisor: each worker's life, from launch to death.

It launches incarnations, reads the backends' status answers, heartbeats and exit notes, asks
workers to stop, kills the ones that hang or do not answer, and restarts stuck ones. What a
worker's death costs its jobs is decided in ``crew_core.engine.deaths``; the states of a worker's
life and its record are in ``crew_core.engine.workers`` (re-exported here, where they used to
live). Everything here runs under the manager's lock and does no I/O itself: store writes go to
the manager's outbox, backend calls to its backend pool.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from crew_core.engine.deaths import Deaths, end_job
from crew_core.engine.ledger import Job, JobState, Task
from crew_core.engine.orders import Cleanup, Place, PollSoon, Report, RosterChanged, WriteControl
from crew_core.engine.workers import LIFE, IllegalTransition, Life, Phase, WorkerRecord
from crew_core.errors import JobTimeoutError
from crew_core.plugin.worker import Launch, Worker
from crew_core.results import TIMEOUT, Result
from crew_core.wire import protocol
from crew_core.wire.protocol import ExitNote, WorkerSettings

if TYPE_CHECKING:
    from crew_core.engine.port import Controller

__all__ = [
    "EXIT_PATIENCE",
    "LIFE",
    "LIFETIME_STAGGER",
    "IllegalTransition",
    "Life",
    "Phase",
    "Supervisor",
    "WorkerRecord",
]

log = logging.getLogger("crew")

#: Workers given ``seconds_wall`` leave up to this fraction of it early, each by its own draw.
LIFETIME_STAGGER = 0.1
#: Seconds (at least the stop grace) a backend has to report a worker ended once it left cleanly.
EXIT_PATIENCE = 30.0


class Supervisor:
    """Launch, liveness, stop and death of the manager's workers."""

    def __init__(self, manager: Controller, draw: Callable[[], float]) -> None:
        """``draw``: a random number in [0, 1) for each draw (injected: the engine keeps no generator)."""
        self.m = manager
        self.draw = draw
        self.deaths = Deaths(manager)
        self._status_due: dict[type[Worker], float] = {}
        self._status_busy: set[type[Worker]] = set()

    # ------------------------------------------------------------------ launching
    def prepare(self, records: list[WorkerRecord], now: float) -> dict[type[Worker], list[tuple[WorkerRecord, Launch]]]:
        """Begin a new incarnation of each worker; return what each backend class must start."""
        groups: dict[type[Worker], list[tuple[WorkerRecord, Launch]]] = {}
        m = self.m
        for record in records:
            record.incarnation = max(record.incarnation, record.launched) + 1
            record.prefix = protocol.worker_prefix(m.crew_id, record.name, record.incarnation)
            record.channel = protocol.worker_channel(record.prefix)
            record.move(Life.STARTING)
            record.stop_requested, record.exit = None, None
            record.beat, record.beat_seen, record.adopted, record.given = 0, False, False, 0
            record.quiet_since = record.idle_since = now
            tasks_max, seconds_wall = record.lifetime
            if seconds_wall is not None:  # a fleet recruited together does not leave all at once
                seconds_wall *= 1 - LIFETIME_STAGGER * self.draw()
            settings = WorkerSettings(
                store=m.store_spec,
                crew=m.crew_id,
                name=record.name,
                incarnation=record.incarnation,
                timeout=record.backend.timeout,
                heartbeat=m.settings.heartbeat_interval,
                lease_timeout=m.settings.lease_timeout,
                capture=m.settings.capture_output,
                tasks_max=tasks_max,
                seconds_wall=seconds_wall,
                task_key=m.keys.public.hex(),
                tasks_mac=record.backend.beside_controller,
                initializer=record.initializer,
            )
            secrets = m.keys.launch_secrets(record.name, record.incarnation, forwarder=record.backend.nested)
            launch = Launch(settings.to_args(), {protocol.LABEL_ENV: m.label}, m.crew_id, record.name,
                            record.incarnation, m.label, secrets=secrets)  # fmt: skip
            groups.setdefault(type(record.backend), []).append((record, launch))
        return groups

    def launched(self, group: list[tuple[WorkerRecord, int]], error: BaseException | None, now: float) -> None:
        """A ``start_many`` call came back, having started every worker of ``group`` or none."""
        for record, incarnation in group:
            if record.incarnation != incarnation or record.phase is not Phase.STARTING:
                continue
            if error is None:
                record.move(Life.UP)
                if record.stop_requested is not None:  # asked to stop while it started: its Stop is written
                    record.move(Life.STOPPING)
                record.stats.launches += 1
                record.launch_failures = 0
                record.retry.reset()
            else:
                self._launch_failed(record, error, now)
        if error is not None and any(record.launch_failures == 1 for record, _ in group):
            self.m.orders.add(Report(error))  # the user hears of it once; later failures in a row are logged
        if group and error is None:
            self.m.orders.add(PollSoon())  # its beats and exit note go to the inbox: look there from now on
            cls = type(group[0][0].backend)
            self._status_due[cls] = min(self._status_due.get(cls, math.inf), now + cls.status_interval)

    def _launch_failed(self, record: WorkerRecord, error: BaseException, now: float, straggler: bool = False) -> None:
        m = self.m
        record.move(Life.DOWN)
        record.stats.refused += 1
        record.launch_failures += 1
        record.launch_error = error
        record.retry_at = now + record.retry.next()
        for task in m.ledger.tasks_of(record.name):  # it never ran them
            m.ledger.close_task(task.seq, now)
            self.deaths.refused(task.jobs, error)
        # Enrolled before the launch: a next controller must not adopt it.
        m.orders.add(RosterChanged(record.name, live=False))
        m.orders.add(Cleanup(Place.of(record), protocol.Stop(m.ledger.next_seq()) if straggler else None))
        log.warning("worker %r failed to start (attempt %d): %s", record.name, record.launch_failures, error)

    # ------------------------------------------------------------------ restarting
    def restart(self, record: WorkerRecord, now: float) -> list[tuple[WorkerRecord, Launch]]:
        """Relaunch a stuck worker with the jobs it held (charged ones alone); the launch to start."""
        m = self.m
        jobs = m.ledger.release(record.name)
        runnable = [job for job in jobs if not self.deaths.out_of_tries(job, record)]
        if not runnable or record.up:
            m.ledger.requeue(runnable)
            return []
        [(_, launch)] = self.prepare([record], now)[type(record.backend)]
        fresh = [job for job in runnable if not job.tries]
        for batch in [[job] for job in runnable if job.tries] + ([fresh] if fresh else []):
            m.dispatcher.assign(record, batch, now)
        return [(record, launch)]

    # ------------------------------------------------------------------ status, beats, exits
    def due_status_checks(self, now: float) -> list[tuple[type[Worker], list[tuple[WorkerRecord, int]]]]:
        """Backend classes to ask now about their live workers, each at its own pace."""
        live: dict[type[Worker], list[tuple[WorkerRecord, int]]] = {}
        for record in self.m.records.values():
            if record.phase is Phase.UP and not record.down_pending and not record.adopted:
                live.setdefault(type(record.backend), []).append((record, record.incarnation))
        due = []
        for cls, group in live.items():
            if cls in self._status_busy or now < self._status_due.setdefault(cls, now + cls.status_interval):
                continue
            self._status_busy.add(cls)
            self._status_due[cls] = now + cls.status_interval
            due.append((cls, group))
        return due

    def due_presence_checks(self, now: float) -> dict[str, list[Task]]:
        """Tasks unanswered for a heartbeat timeout, by worker prefix: is their record still there?

        A worker finds its tasks by listing; one whose record vanished before it was listed
        would wait forever, its worker idle and beating. One listing per such worker, at most
        once per heartbeat timeout per task, tells.
        """
        patience = self.m.settings.heartbeat_timeout
        due: dict[str, list[Task]] = {}
        for task in self.m.ledger.tasks.values():
            if task.written and now - max(task.assigned, task.checked) > patience:
                record = self.m.records.get(task.worker)
                if record is not None and record.up and record.incarnation == task.incarnation:
                    task.checked = now
                    due.setdefault(record.prefix, []).append(task)
        return due

    def on_status(self, cls: type[Worker], answers: list[tuple[WorkerRecord, int, bool]], now: float) -> None:
        """The answer of ``cls.running()``: a worker reported not running has ended."""
        self._status_busy.discard(cls)
        for record, incarnation, running in answers:
            if record.incarnation != incarnation or record.phase is not Phase.UP:
                continue
            if not running:
                self.found_ended(record, now)  # settled after the next inbox poll: results first
            elif record.exit is not None:  # it said goodbye: ask again soon until its backend agrees
                self._status_due[cls] = min(self._status_due[cls], now + min(cls.status_interval, 0.5))

    def check_soon(self, record: WorkerRecord, now: float) -> None:
        cls = type(record.backend)
        self._status_due[cls] = min(self._status_due.get(cls, math.inf), now)

    def on_beat(self, record: WorkerRecord, incarnation: int, beat: int, now: float) -> None:
        if record.incarnation == incarnation and beat > record.beat:
            if not record.beat_seen:
                record.first_beat = now
            record.beat, record.beat_seen, record.quiet_since = beat, True, now

    def on_exit(self, record: WorkerRecord, incarnation: int, note: ExitNote, now: float) -> None:
        """The worker is leaving: what it never started goes back to the backlog at once."""
        if record.incarnation != incarnation or not record.up or record.exit is not None:
            return
        record.exit = note
        if record.life in (Life.UP, Life.STOPPING):
            record.move(Life.LEAVING)
        m = self.m
        if note.reason == protocol.INIT_FAILED:
            self.init_failed(record, note.error or "")
        failed_start = not record.beat_seen and note.reason == "error"  # down() refuses its jobs: a failed launch
        for task in m.ledger.tasks_of(record.name) if not failed_start else []:
            if task.seq > note.last_seq:
                m.ledger.close_task(task.seq, now)
                m.ledger.requeue(task.jobs)
        if record.adopted:  # its backend cannot be asked: the note is the last word
            self.found_ended(record, now)
        else:
            self.check_soon(record, now)

    # ------------------------------------------------------------------ liveness deadlines
    def adoption_patience(self) -> float:
        """How long an adopted worker given jobs may take to beat before it counts as gone."""
        settings = self.m.settings
        return min(settings.heartbeat_timeout, 2 * settings.heartbeat_interval + 2 * self.m.store.poll_interval[1] + 5)

    def check(self, now: float) -> list[WorkerRecord]:
        """Workers to kill now: silent past the heartbeat timeout, or deaf to a stop request."""
        settings = self.m.settings
        doomed = []
        for record in self.m.records.values():
            if record.phase is not Phase.UP or record.killing or record.down_pending:
                continue
            if (
                record.adopted
                and not record.beat_seen
                and self.m.ledger.has_tasks(record.name)
                and now - record.quiet_since > self.adoption_patience()
            ):
                log.warning("adopted worker %r has not beaten since this controller took over: counted as gone,"
                            " its jobs run elsewhere", record.name)  # fmt: skip
                record.stop_requested = record.stop_requested or now  # its jobs go back uncharged
                self.found_ended(record, now)
            elif record.stop_requested is not None and now > self.kill_due(record, record.stop_requested):
                log.info("worker %r did not answer its stop request in %.1f s: killing it", record.name,
                         self.stop_grace(record))  # fmt: skip
                doomed.append(record)
            elif self._overdue(record, now):
                doomed.append(record)
            elif (
                record.beat_seen
                and self.m.ledger.has_tasks(record.name)
                and now - record.quiet_since > settings.heartbeat_timeout
            ):
                log.warning("worker %r has been silent for %.0f s while holding jobs: killing it", record.name,
                            now - record.quiet_since)  # fmt: skip
                doomed.append(record)
        for record in doomed:
            record.move(Life.KILLING)
        return doomed

    def stop_grace(self, record: WorkerRecord) -> float:
        """Seconds the worker has to answer a stop request (a forwarder's class asks for longer)."""
        grace = record.backend.stop_grace
        return self.m.settings.stop_grace if grace is None else max(grace, self.m.settings.stop_grace)

    def kill_due(self, record: WorkerRecord, asked: float) -> float:
        """When a worker asked to stop at ``asked`` is killed: after its stop grace, or, once it has
        written a clean exit note (it is leaving), after up to ``EXIT_PATIENCE`` s more for its
        backend to say it ended: a kill then would only mark a finished job as killed (a Batch job
        TERMINATED instead of SUCCEEDED) on a backend slow to report."""
        due = asked + self.stop_grace(record)
        if record.exit is not None and record.exit.reason in protocol.CLEAN_EXITS:
            due += max(EXIT_PATIENCE, self.stop_grace(record))
        if record.adopted and record.backend.ends_with_controller:
            # It leaves by itself within a heartbeat of its own (it is orphaned). A kill sooner may
            # not reach it (a class that cannot find its launches only marks it down), and its jobs
            # would run again while it still runs them; one that stays silent this long is gone.
            due = max(due, asked + self.adoption_patience())
        return due

    def stop_allowance(self) -> float:
        """Time a worker has to stop a job itself (timeout, cancel) and say so, before it is killed:
        its next look at its tasks, the stop grace, and the controller's slowest poll."""
        settings = self.m.settings
        return settings.heartbeat_interval + settings.stop_grace + self.m.store.poll_interval[1]

    def _stop_deadline(self, record: WorkerRecord) -> float | None:
        """When the task the worker runs must be answered: a timed job's end, or a cancel's, plus
        :meth:`stop_allowance`. None if nothing bounds it (or the worker has not beaten yet)."""
        if not record.beat_seen or record.backend.nested:  # a forwarder's inner crew stops its jobs
            return None
        tasks = self.m.ledger.tasks_of(record.name)
        if not tasks:
            return None
        running = tasks[0]
        start = max(running.running_since or running.assigned, record.first_beat)
        deadlines = []
        if running.stop_by is not None and len(running.jobs) == 1:  # in a batch, which call runs is unknown
            deadlines.append(max(running.stop_by, start + self.stop_allowance()))
        limits = [job.timeout for job in running.jobs if job.timeout is not None and job.state is not JobState.DONE]
        if limits:
            deadlines.append(start + sum(limits) + self.stop_allowance())
        return min(deadlines) if deadlines else None

    def _overdue(self, record: WorkerRecord, now: float) -> bool:
        """The worker could not stop a timed-out or cancelled job (C code holding the GIL, say):
        the job ends now (a timeout is not run again) and the worker is killed."""
        deadline = self._stop_deadline(record)
        if deadline is None or now < deadline:
            return False
        for job in self.m.ledger.tasks_of(record.name)[0].jobs:
            if job.state is JobState.DONE or job.timeout is None:
                continue
            error = JobTimeoutError(
                f"job {job.id} ({job.kind}) ran past its timeout of {job.timeout:g} s and its worker"
                f" {record.name!r} could not stop it (C code holding the GIL, or a job that blocks or takes"
                " over SIGALRM?): the worker was killed"
            )
            record.stats.timeouts += 1
            end_job(self.m, job, Result(job.id, TIMEOUT, error=error, worker=record.name, tags=job.tags,
                                        tries=job.runs + 1))  # fmt: skip
        record.stop_requested = record.stop_requested or now  # killed on purpose: the rest go back uncharged
        log.warning("worker %r did not stop a job past its timeout or cancel: killing it", record.name)
        return True

    def restarts_due(self, now: float) -> list[WorkerRecord]:
        """Stuck workers whose automatic restart failed before and may be tried again now."""
        if not self.m.settings.auto_restart:
            return []
        return [r for r in self.m.records.values() if self.stuck(r) and now >= r.retry_at]

    def next_deadline(self, now: float) -> float:
        settings = self.m.settings
        deadline = math.inf
        for record in self.m.records.values():
            if record.phase is Phase.UP:
                if not record.adopted:
                    deadline = min(deadline, self._status_due.get(type(record.backend), now))
                if record.stop_requested is not None:
                    deadline = min(deadline, self.kill_due(record, record.stop_requested))
                elif record.beat_seen and self.m.ledger.has_tasks(record.name):
                    deadline = min(deadline, record.quiet_since + settings.heartbeat_timeout)
                    stop = self._stop_deadline(record)
                    if stop is not None:
                        deadline = min(deadline, stop)
                elif record.adopted and self.m.ledger.has_tasks(record.name):
                    deadline = min(deadline, record.quiet_since + self.adoption_patience())
            elif self.stuck(record) and settings.auto_restart:
                deadline = min(deadline, record.retry_at)
        return deadline

    # ------------------------------------------------------------------ stop and death
    def request_stop(self, record: WorkerRecord, now: float) -> bool:
        """Write a Stop for the worker (it finishes the job it runs, starts nothing more)."""
        if not record.up or record.stop_requested is not None or record.killing:
            return False
        record.stop_requested = now
        if record.life is Life.UP:
            record.move(Life.STOPPING)  # one that is leaving already goes on leaving
        self.m.orders.add(WriteControl(Place.of(record), protocol.Stop(self.m.ledger.next_seq())))
        return True

    def found_ended(self, record: WorkerRecord, now: float) -> None:
        """The worker's process ended (or was killed): settled once the inbox was read again (its
        last results first), at once if the store is gone for good (no inbox will be read again)."""
        if self.m.gone is not None:
            self.down(record, now)
        else:
            self.ended(record, self.m.polls)

    def ended(self, record: WorkerRecord, polls: int) -> None:
        """Its backend says it ended (or it was killed): settled once the inbox was read after ``polls``."""
        record.move(Life.ENDED)
        record.down_poll = polls

    def kill_now(self, record: WorkerRecord, now: float) -> None:
        """A kill decided by the user (``dismiss``, ``close``): on purpose, so its jobs go back uncharged."""
        if record.life not in (Life.KILLING, Life.ENDED):  # else a kill is under way, or it ended already
            record.move(Life.KILLING)
        if record.stop_requested is None:
            record.stop_requested = now

    def retire(self, record: WorkerRecord) -> None:
        """Being dismissed: never launched or given work again."""
        record.retired = True

    def init_failed(self, record: WorkerRecord, error: str) -> None:
        """Its initializer failed: it ran nothing (its tasks go back) and is never used again; the
        dispatcher fails the jobs that no other worker can run (``WorkerInitError``)."""
        record.retired = True
        record.init_error = error
        self.m.dispatcher.init_failures += 1
        why = error.strip().splitlines()[-1] if error.strip() else "no traceback"
        log.warning("worker %r: its initializer failed (%s); it is retired: it runs no job and is not launched"
                    " again", record.name, why)  # fmt: skip

    def adopt(self, record: WorkerRecord, incarnation: int, now: float) -> None:
        """A launch an earlier controller of a named crew made, still running: known by its beats only.

        One that ends with the controller that started it (``Worker.ends_with_controller``) is
        leaving: it keeps what it holds but is asked to stop at once, and takes nothing new.
        """
        record.incarnation = incarnation
        record.move(Life.UP)
        record.adopted = True
        record.quiet_since = now
        if record.backend.ends_with_controller:
            # Its controller is dead, so it leaves at its next look (a heartbeat or so), stopping
            # the job it runs: a job given to it now would run twice. Stopped on purpose, what it
            # held and did not answer goes back uncharged once it has left.
            log.info("adopted worker %r ends with the controller that started it: asked to stop, it takes no"
                     " new job and is launched again once it has left", record.name)  # fmt: skip
            self.request_stop(record, now)

    def stuck(self, record: WorkerRecord) -> bool:
        return not record.up and bool(self.m.ledger.held.get(record.name))

    # ------------------------------------------------------------------ what it costs the jobs (engine/deaths.py)
    def down(self, record: WorkerRecord, now: float) -> None:
        """The worker's process has ended: keep what it finished, place what it had not (see :class:`Deaths`)."""
        self.deaths.down(record, now)

    def charge(self, jobs: list[Job], record: WorkerRecord | None, reason: str, ran: bool) -> None:
        """Jobs whose data was lost (a corrupt object): charged a try, then run again or crashed."""
        self.deaths.charge(jobs, record, reason, ran)
