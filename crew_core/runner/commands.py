"""What users' threads ask of the crew: commands (launch, restart, stop, remove, cancel, close) and queries.

They run in the user's thread, under the crew's lock for their decisions; backend calls they make
(start, kill) run in that thread too and are waited for, outside the lock. ``Manager`` offers each
as a method of the same name: that is what ``api/`` calls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from crew_core.engine.ledger import JobState
from crew_core.engine.summary import COLUMNS
from crew_core.engine.supervisor import Phase, WorkerRecord
from crew_core.errors import CrewError, JobCancelledError, WorkerLostError
from crew_core.plugin.worker import Launch, Worker
from crew_core.results import CANCELLED, Result
from crew_core.wire import protocol

if TYPE_CHECKING:
    from crew_core.runner.manager import Manager

log = logging.getLogger("crew")


class Commands:
    """Users' threads' commands and queries on one crew (see the module docstring); it keeps no state."""

    def __init__(self, manager: Manager) -> None:
        self.m = manager

    # ------------------------------------------------------------------ queries
    def worker_up(self, name: str) -> bool:
        m = self.m
        m.sync()
        with m.lock:
            return self.record(name).up

    def worker_busy(self, name: str) -> bool:
        m = self.m
        m.sync()
        with m.lock:
            return m.ledger.has_tasks(name) or bool(m.ledger.held.get(name))

    def worker_stuck(self, name: str) -> bool:
        m = self.m
        m.sync()
        with m.lock:
            return m.supervisor.stuck(self.record(name))

    def record(self, name: str) -> WorkerRecord:
        try:
            return self.m.records[name]
        except KeyError:
            raise CrewError(f"worker {name!r} is not in this crew (dismissed?)") from None

    def summary(self) -> list[dict[str, Any]]:
        """One row per worker for ``crew.summary()`` (see ``summary.COLUMNS``)."""
        m = self.m
        m.sync()
        rows = []
        with m.lock:
            for record in m.records.values():
                if record.init_error is not None:
                    state = "init failed"  # retired: see WorkerInitError
                elif m.supervisor.stuck(record):
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
        m = self.m
        unsaved = m.ledger.unsaved
        if unsaved and any(wanted <= result.tags and job.claim is None for job, result in unsaved):
            return True  # out once stored
        jobs = m.ledger.jobs.values()  # claimed ones never come to receive()
        stuck = [r for r in m.records.values() if m.supervisor.stuck(r)]
        if not stuck or m.settings.auto_restart:
            if not wanted:
                return len(m.ledger.jobs) > m.ledger.claims
            return any(wanted <= job.tags and job.claim is None for job in jobs)
        free = [r.tags for r in m.records.values() if not m.supervisor.stuck(r)]
        for job in jobs:
            if not wanted <= job.tags or job.holder is not None or job.claim is not None:
                continue
            if job.task is not None or any(job.tags <= tags for tags in free):
                return True
        return False

    def sendable(self, wanted: frozenset[str]) -> bool:
        m = self.m
        for record in m.records.values():
            if not wanted <= record.tags:
                continue
            if record.accepting and not m.ledger.has_tasks(record.name):
                return True
            if not record.up and not record.retired and not m.supervisor.stuck(record):
                return True
        return False

    # ------------------------------------------------------------------ commands
    def add_worker(
        self, backend: Worker, lifetime: tuple[int | None, float | None] = (None, None), initializer: str = ""
    ) -> None:
        with self.m.lock:
            self.m.records[backend.name] = WorkerRecord(backend, lifetime=lifetime, initializer=initializer)

    def cancel(self, job_id: int | None, tags: frozenset[str] | None) -> list[int]:
        """Cancel job ``job_id`` or the jobs with ``tags``: each gets its result now (see Crew.cancel)."""
        m = self.m
        cancelled = []
        with m.lock:
            m._accept()
            if job_id is not None:
                jobs = [m.ledger.jobs[job_id]] if job_id in m.ledger.jobs else []
            else:
                jobs = [job for job in m.ledger.jobs.values() if tags is not None and tags <= job.tags]
            now = m.clock()
            for job in jobs:
                task, waiting = job.task, job.state is JobState.WAITING
                reason = "before it started" if waiting else "while its worker had it"
                error = JobCancelledError(f"job {job.id} ({job.kind}) was cancelled {reason}")
                tries = job.runs + (not waiting)  # a job its worker had may have started
                m.finish(job, Result(job.id, CANCELLED, error=error, tags=job.tags, tries=tries))
                cancelled.append(job.id)
                record = m.records.get(task.worker) if task is not None else None
                if task is not None and record is not None and record.up and record.incarnation == task.incarnation:
                    m.write_control(record, protocol.Cancel(m.ledger.next_seq(), job.id))
                    task.stop_by = now + m.supervisor.stop_allowance()  # else its worker is killed
            m.changed.notify_all()
        m.wake()
        return cancelled

    def launch(self, records: list[WorkerRecord]) -> None:
        """Start these down workers now, in this thread (one ``start_many`` per class)."""
        m = self.m
        with m.lock:  # the crew's own loop may have launched some since they were chosen
            records = [record for record in records if not record.up and not record.retired]
            groups = m.supervisor.prepare(records, m.clock())
        first_error: BaseException | None = None
        for cls, items in groups.items():
            error = m.pool.start_many(cls, items)
            with m.lock:
                m.supervisor.launched([(r, r.incarnation) for r, _ in items], error, m.clock())
                m.carry_out()
                m.forget_error(error)  # raised here; not again from the next receive()
            first_error = first_error or error
        m.wake()
        if first_error is not None:
            raise first_error

    def launch_named(self, names: Iterable[str]) -> None:
        m = self.m
        m.sync()
        with m.lock:
            records = [self.record(name) for name in names]
            stuck = [r for r in records if m.supervisor.stuck(r)]
            down = [r for r in records if not r.up and r not in stuck]
        if stuck:
            self.restart(stuck)  # launching a stuck worker is restarting it
        if down:
            self.launch(down)

    def restart(self, records: list[WorkerRecord]) -> None:
        m = self.m
        with m.lock:
            now = m.clock()
            items = [item for record in records if not record.up for item in m.supervisor.restart(record, now)]
            m.carry_out()
            groups: dict[type[Worker], list[tuple[WorkerRecord, Launch]]] = {}
            for item in items:
                groups.setdefault(type(item[0].backend), []).append(item)
        for cls, group in groups.items():
            error = m.pool.start_many(cls, group)
            with m.lock:
                m.supervisor.launched([(r, r.incarnation) for r, _ in group], error, m.clock())
                m.carry_out()
                if error is not None:
                    for record, _ in group:  # keep them stuck, to be tried again
                        record.retry_at = m.clock() + record.retry.next()
                    m.forget_error(error)
            if error is not None:
                m.wake()
                raise error
        m.wake()

    def restart_named(self, names: Iterable[str]) -> None:
        m = self.m
        m.sync()
        with m.lock:
            records = [self.record(name) for name in names]
        self.restart(records)

    def request_stop_named(self, names: Iterable[str], idle_only: bool) -> list[str]:
        """Ask these workers to stop; returns the names of those asked now."""
        m = self.m
        m.sync()
        chosen = []
        with m.lock:
            now = m.clock()
            for name in names:
                record = self.record(name)
                if idle_only and m.ledger.has_tasks(name):
                    continue
                if m.supervisor.request_stop(record, now):
                    chosen.append(name)
            m.carry_out()
        m.wake()
        return chosen

    def stop_now(self, names: list[str]) -> None:
        """Stop workers for good and wait until they are down: idle ones politely, busy ones by force."""
        m = self.m
        m.sync()
        with m.lock:
            records = [self.record(name) for name in names]
            for record in records:
                m.supervisor.retire(record)
            now = m.clock()
            # A busy forwarder is asked too: it hands its jobs back and closes its inner crew.
            polite = [r for r in records if r.backend.nested or not m.ledger.has_tasks(r.name)]
            if m.gone is not None:
                polite = []  # no Stop can reach them through the store: their backends kill them now
            for record in polite:
                if record.phase is Phase.UP and not record.killing:
                    m.supervisor.request_stop(record, now)
            busy = [r for r in records if r.up and (r.phase is Phase.STARTING or r not in polite)]
            m.carry_out()
        m.wake()
        self._kill_now(busy)
        with m.lock:
            # Each within its own grace (longer once it wrote a clean exit note): past it, the
            # manager's thread kills it (Supervisor.check).
            due = m.supervisor.kill_due
            while waiting := [d for r in records if r.up and m.clock() < (d := due(r, now))]:
                m.changed.wait(min(0.05, max(0.0, min(waiting) - m.clock())))
            left = [record for record in records if record.up]
        self._kill_now(left)
        with m.lock:
            for record in left:  # killed: they are down, whatever the backend says yet
                m.supervisor.down(record, m.clock())
            m.carry_out()
        m.wake()

    def _kill_now(self, records: list[WorkerRecord]) -> None:
        m = self.m
        for record in records:
            with m.lock:
                while record.phase is Phase.STARTING:  # let its start return before killing it
                    m.changed.wait(0.05)
                if not record.up:
                    continue
                m.supervisor.kill_now(record, m.clock())  # deliberate: its jobs go back uncharged
            m.pool.kill_backend(record)
            with m.lock:
                if record.up:
                    m.mark_down(record)
        if records:
            m.wake()

    def remove(self, names: list[str]) -> None:
        """Forget dismissed (down) workers; jobs no remaining worker can run end as errors."""
        m = self.m
        with m.lock:
            for name in names:
                record = m.records.pop(name)
                m.roster_changed(name, None)  # a next controller must not make it again
                m.ledger.requeue(m.ledger.held.pop(name, []))
                record.backend.close()
            lost = m.ledger.backlog.drain(lambda job: any(job.tags <= r.tags for r in m.records.values()))
            for job in lost:
                error = WorkerLostError(
                    f"job {job.id} needs tags {sorted(job.tags)} but the workers that carry them were dismissed"
                )
                m.finish_error(job, error)
            m.changed.notify_all()
        m.hand_over()

    # ------------------------------------------------------------------ the end
    def abandon(self) -> None:
        """Stop the thread and the pools, and nothing else: workers and objects stay (named crews)."""
        m = self.m
        thread = m.loop.thread
        with m.lock:
            m.loop.stopping = True
            m.changed.notify_all()
        m.wake()
        if thread is not threading.current_thread() and thread.is_alive():
            thread.join(timeout=10)
        if m.verdicts is not None and m.ledger.unsaved:  # the next controller delivers them, not reruns
            try:
                assert m.keeper is not None
                m.verdicts.write(m.changed, m.ledger, m.keeper)
            except Exception as exc:
                log.warning("crew %s could not store the results it made; their jobs run again under the next"
                            " controller: %s", m.crew_id, exc)  # fmt: skip
        m.pool.shutdown(wait=False)
        if m.io_pool is not None:
            m.io_pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop every worker, the thread and the pools; remove the crew's objects from the store."""
        m = self.m
        try:
            m.stop_now(list(m.records))
        finally:
            with m.lock:
                m.loop.stopping = True
                m.changed.notify_all()  # users' threads waiting in receive() learn the crew closed
            m.wake()
            if m.loop.thread is not threading.current_thread():
                m.loop.thread.join(timeout=10)
            with m.lock:  # the crew ends: nothing will resume it, so they go out unstored
                m.ledger.saved(m.ledger.take_unsaved())
            for record in m.records.values():
                try:
                    record.backend.close()
                except Exception as exc:
                    log.warning("closing worker %r failed: %s", record.name, exc)
            m.pool.shutdown(wait=True)
            if m.io_pool is not None:
                m.io_pool.shutdown(wait=True, cancel_futures=True)
