"""The dispatcher: which jobs go to which worker, in which batches, and when.

Rules, in order, each time the controller plans:

0. A waiting job that only workers whose initializer failed carry the tags for ends with a
   :class:`WorkerInitError`: no worker will ever take it.
1. An idle running worker gets the oldest job it may run, plus more of the same known, short
   duration (up to :data:`BATCH_SECONDS` of work), so no-op storms cost few store objects.
   Longer jobs of a steady known duration (under a heartbeat interval) go
   ``Store.long_jobs_per_task`` to a task (2 on S3 and GCS, 1 on local files) while every
   worker's share of the backlog is at least twice that many: a task record and its answer cost
   four store requests whatever they hold, and the last rounds, one job a task, end together.
2. Jobs still waiting launch down workers, one per waiting batch.
3. Jobs still waiting (more than there are idle workers) are prefetched: a busy worker whose
   running task is expected to end within the prefetch horizon gets its next task written now,
   so it starts it without waiting for the controller's next poll. Like dask's worker
   saturation, one task is queued per worker at most, and only near the measured end of the
   running one, so a job does not sit behind a long one.
4. If a worker idles while another's prefetched task waits behind a job that runs on past its
   estimate, that task is revoked: the busy worker hands it back unrun (or runs it, if it has
   already started) and it goes to the idle worker.

Nothing here does I/O: writes go to the manager's outbox, launches back to the manager.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from crew_core.engine.deaths import end_job
from crew_core.engine.ledger import Job, Task
from crew_core.engine.orders import Place, WriteControl, WriteTask
from crew_core.engine.workers import Phase, WorkerRecord
from crew_core.errors import WorkerInitError
from crew_core.plugin.worker import Launch, Worker
from crew_core.results import ERROR, Result
from crew_core.wire import protocol

if TYPE_CHECKING:
    from crew_core.engine.port import Controller

#: A batch of jobs of known duration is filled up to about this many seconds of work.
BATCH_SECONDS = 0.02
#: Never more jobs than this in one batch.
MAX_BATCH = 1000
#: A kind is steady once measured this many times, while its (slowly forgotten) longest run is at
#: most :data:`STEADY` times its mean: two runs say little about the next.
STEADY_RUNS = 3
STEADY = 1.5


class Durations:
    """Mean (and slowly forgotten longest) measured seconds per job kind (module and qualified name)."""

    def __init__(self) -> None:
        self._mean: dict[str, float] = {}
        self._longest: dict[str, float] = {}
        self._runs: dict[str, int] = {}

    def record(self, kind: str, seconds: float) -> None:
        self._runs[kind] = self._runs.get(kind, 0) + 1
        mean = self._mean.get(kind)
        self._mean[kind] = seconds if mean is None else 0.8 * mean + 0.2 * seconds
        self._longest[kind] = max(seconds, 0.99 * self._longest.get(kind, 0.0))

    def of(self, kind: str) -> float | None:
        return self._mean.get(kind)

    def batchable(self, kind: str) -> bool:
        """Whether calls of this kind may share a batch: none was ever long (one could hold up the rest)."""
        return self._longest.get(kind, 0.0) <= 10 * BATCH_SECONDS

    def steady(self, kind: str, under: float) -> bool:
        """Whether runs of this kind take about the same time, under ``under`` seconds: a batch of
        them ends when its size says, and none holds up another for long."""
        mean = self._mean.get(kind)
        if mean is None or self._runs.get(kind, 0) < STEADY_RUNS:
            return False
        return self._longest.get(kind, math.inf) <= min(STEADY * mean, under)

    def of_task(self, task: Task) -> float | None:
        """Expected seconds of a whole batch, or None while any of its kinds is unmeasured."""
        total = 0.0
        for job in task.jobs:
            mean = self._mean.get(job.kind)
            if mean is None:
                return None
            total += mean
        return total


class Dispatcher:
    """Assigns waiting jobs to workers; see the module's docstring for the rules."""

    def __init__(self, manager: Controller) -> None:
        self.m = manager
        self.durations = Durations()
        self.init_failures = 0  # workers retired because their initializer failed (Supervisor.init_failed)

    # ------------------------------------------------------------------ planning
    def plan(self, now: float) -> dict[type[Worker], list[tuple[WorkerRecord, Launch]]]:
        """Assign what can be assigned; return the workers to launch, by class."""
        m = self.m
        launches: dict[type[Worker], list[tuple[WorkerRecord, Launch]]] = {}
        if not m.ledger.backlog and not m.ledger.queued_behind():
            return launches  # nothing waits, nothing to take back: the common case, kept cheap
        if m.ledger.backlog and self.init_failures:
            self._fail_uninitialized()  # 0.
        if m.ledger.backlog:
            for record in m.records.values():  # 1. idle running workers, and forwarders
                if record.accepting and (record.backend.nested or not m.ledger.has_tasks(record.name)):
                    batch = self.take_batch(record)
                    if batch:
                        self.assign(record, batch, now)
                if not m.ledger.backlog:
                    break
        if m.ledger.backlog:
            launches = self._launch_for_backlog(now)  # 2.
        if m.ledger.backlog:
            self._prefetch(now)  # 3.
        self._revoke_for_idle(now)  # 4.
        return launches

    def _fail_uninitialized(self) -> None:
        """End with a :class:`WorkerInitError` each waiting job that only workers whose initializer
        failed could run: no worker will ever take it. (Jobs only dismissed workers carried end
        otherwise: ``Commands.remove``.)"""
        m = self.m
        healthy = [record.tags for record in m.records.values() if not record.retired]
        failed = [record for record in m.records.values() if record.init_error is not None]
        for tags in m.ledger.backlog.tag_sets():  # a few sets, however many jobs wait
            if any(tags <= carried for carried in healthy):
                continue
            record = next((r for r in failed if tags <= r.tags), None)
            if record is not None:
                self._fail_for_init(m.ledger.backlog.take_all(tags), record)

    def _fail_for_init(self, jobs: list[Job], record: WorkerRecord) -> None:
        m = self.m
        assert record.init_error is not None
        why = record.init_error.strip().splitlines()[-1] if record.init_error.strip() else "no traceback"
        for job in jobs:
            error = WorkerInitError(
                f"job {job.id} ({job.kind}) never ran: every worker that could run it (tags {sorted(job.tags)})"
                f" failed its initializer and was retired; worker {record.name!r}: {why}\n\n{record.init_error}",
                record.init_error,
            )
            end_job(m, job, Result(job.id, ERROR, error=error, worker=record.name, tags=job.tags, tries=job.runs))

    def _launch_for_backlog(self, now: float) -> dict[type[Worker], list[tuple[WorkerRecord, Launch]]]:
        m = self.m
        starting: list[tuple[WorkerRecord, list[Job]]] = []
        for record in m.records.values():
            if record.up or record.retired or now < record.retry_at or m.supervisor.stuck(record):
                continue
            batch = self.take_batch(record)
            if batch:
                starting.append((record, batch))
            if not m.ledger.backlog:
                break
        if not starting:
            return {}
        launches = m.supervisor.prepare([record for record, _ in starting], now)
        for record, batch in starting:
            self.assign(record, batch, now)
        return launches

    def _prefetch(self, now: float) -> None:
        m = self.m
        horizon = m.prefetch_horizon
        busy: list[tuple[float, WorkerRecord]] = []
        for record in m.records.values():
            if not record.accepting or record.backend.nested:
                continue
            tasks = m.ledger.tasks_of(record.name)
            if len(tasks) != 1:
                continue
            end = self.expected_end(tasks[0])
            if end is None or end - now > horizon:
                continue
            seconds = self.durations.of_task(tasks[0]) or 0.0
            if now > end + 0.5 * seconds + self.m.poll_floor():
                continue  # it runs well past its estimate: nobody knows when it ends
            busy.append((end, record))
        for _, record in sorted(busy, key=lambda item: item[0]):  # who frees up first gets first pick
            batch = self.take_batch(record)
            if batch:
                self.assign(record, batch, now)
            if not m.ledger.backlog:
                return

    def _revoke_for_idle(self, now: float) -> None:
        m = self.m
        threshold = m.settings.heartbeat_interval  # a busy worker reads its tasks once per beat
        for idle in m.records.values():
            if idle.phase is not Phase.UP or not idle.accepting or m.ledger.has_tasks(idle.name):
                continue
            if m.ledger.backlog.peek(idle.tags) is not None:
                continue
            best: tuple[float, WorkerRecord, Task] | None = None
            for record in m.records.values():
                if record is idle or not record.up or record.backend.nested:  # a forwarder started them all
                    continue
                tasks = m.ledger.tasks_of(record.name)
                if len(tasks) < 2:
                    continue
                remaining = self.remaining(tasks[0], now)
                if remaining <= threshold:
                    continue
                for task in tasks[1:]:
                    fits = not task.revoking and all(job.tags <= idle.tags for job in task.jobs)
                    if fits and (best is None or remaining > best[0]):
                        best = (remaining, record, task)
            if best is not None:
                _, owner, task = best
                task.revoking = True
                m.orders.add(WriteControl(Place.of(owner), protocol.Revoke(m.ledger.next_seq(), task.seq)))

    # ------------------------------------------------------------------ batches and estimates
    def take_batch(self, record: WorkerRecord) -> list[Job]:
        """Take the oldest job the worker may run, plus more of known short duration."""
        backlog = self.m.ledger.backlog
        first = backlog.pop(record.tags)
        if first is None:
            return []
        batch = [first]
        if record.backend.nested:
            return self._forwarder_batch(record, batch)
        total = self.durations.of(first.kind)
        if first.tries or first.solo or first.timeout or total is None:
            return batch  # a job that may kill its worker, or of unknown duration, runs alone
        if not self.durations.batchable(first.kind):
            return self._long_batch(record, batch)
        share = math.ceil((len(backlog) + 1) / max(1, len(self.m.records)))
        limit = self._within_lifetime(record, min(MAX_BATCH, share))
        while len(batch) < limit and total < BATCH_SECONDS:
            job = backlog.peek(record.tags)
            if job is None or job.tries or job.solo or job.timeout:
                break
            estimate = self.durations.of(job.kind)
            if estimate is None or not self.durations.batchable(job.kind):
                break
            backlog.pop(record.tags)
            batch.append(job)
            total += estimate
        return batch

    def _within_lifetime(self, record: WorkerRecord, limit: int) -> int:
        tasks_max = record.lifetime[0]
        if tasks_max is not None:  # the worker leaves after tasks_max jobs: a batch never goes past it
            limit = min(limit, max(1, tasks_max - record.given))
        return limit

    def _long_batch(self, record: WorkerRecord, batch: list[Job]) -> list[Job]:
        """Up to the store's ``long_jobs_per_task`` jobs of one steady kind, while each worker's share is twice that."""
        backlog, kind = self.m.ledger.backlog, batch[0].kind
        if not self.durations.steady(kind, self.m.settings.heartbeat_interval):
            return batch  # an uneven or long kind: a second job could wait behind a long first
        per_task = self.m.store.long_jobs_per_task
        share = (len(backlog) + 1) // max(1, len(self.m.records))
        if share < 2 * per_task:
            return batch  # the last rounds go one by one, so that every worker ends at about the same time
        limit = self._within_lifetime(record, per_task)
        while len(batch) < limit:
            job = backlog.peek(record.tags)
            if job is None or job.kind != kind or job.tries or job.solo or job.timeout:
                break
            backlog.pop(record.tags)
            batch.append(job)
        return batch

    def _forwarder_batch(self, record: WorkerRecord, batch: list[Job]) -> list[Job]:
        """A forwarder's share of the backlog: it answers each job as it ends, whatever its batch."""
        backlog = self.m.ledger.backlog
        wanted = batch[0].tags  # forwarders up or to launch that can take it share the backlog
        forwarders = sum(1 for r in self.m.records.values() if r.backend.nested and not r.retired and wanted <= r.tags)
        limit = self._within_lifetime(record, min(MAX_BATCH, math.ceil((len(backlog) + 1) / max(1, forwarders))))
        while len(batch) < limit:
            job = backlog.pop(record.tags)
            if job is None:
                break
            batch.append(job)
        return batch

    def assign(self, record: WorkerRecord, jobs: list[Job], now: float) -> Task:
        m = self.m
        if not m.ledger.has_tasks(record.name):
            record.quiet_since = now  # an idle worker beats rarely: count silence from now
        task = m.ledger.assign(record.name, record.incarnation, jobs, now)
        record.given += len(jobs)
        m.orders.add(WriteTask(Place.of(record), task))
        return task

    def expected_end(self, task: Task) -> float | None:
        """When the (running) task should end, by the measured durations; None if unmeasured."""
        seconds = self.durations.of_task(task)
        if seconds is None or task.running_since is None:
            return None
        return task.running_since + seconds

    def remaining(self, task: Task, now: float) -> float:
        """Seconds the running task has left by estimate.

        One that is unmeasured, or has run past its estimate, has no known end: it counts as
        endless once it has run for a heartbeat interval (a busy worker reads its tasks once a
        beat, so taking work back from it sooner would not be faster).
        """
        end = self.expected_end(task)
        if end is not None and end > now:
            return end - now
        since = task.running_since if task.running_since is not None else now
        return math.inf if now - since > self.m.settings.heartbeat_interval else 0.0

    def next_deadline(self, now: float) -> float:
        """When a prefetch becomes due (a running task enters the horizon), if jobs wait."""
        m = self.m
        if not m.ledger.backlog:
            return math.inf
        deadline = math.inf
        for record in m.records.values():
            if record.accepting and not record.backend.nested:
                tasks = m.ledger.tasks_of(record.name)
                if len(tasks) == 1:
                    end = self.expected_end(tasks[0])
                    if end is not None:
                        deadline = min(deadline, end - m.prefetch_horizon)
        return deadline

    def shortest_running(self) -> float | None:
        """The shortest expected duration among running tasks (paces the controller's polls)."""
        shortest = None
        for task in self.m.ledger.tasks.values():
            record = self.m.records.get(task.worker)
            if record is not None and record.backend.nested:
                continue  # a forwarder answers job by job, and rings when it does
            seconds = self.durations.of_task(task)
            if seconds is not None and (shortest is None or seconds < shortest):
                shortest = seconds
        return shortest

    def next_completion(self) -> float | None:
        """The earliest expected end of a running task."""
        soonest = None
        for record in self.m.records.values():
            tasks = self.m.ledger.tasks_of(record.name) if record.up and not record.backend.nested else []
            if tasks:
                end = self.expected_end(tasks[0])
                if end is not None and (soonest is None or end < soonest):
                    soonest = end
        return soonest
