"""What the controller makes of its inbox: answers, parts of answers, refusals, beats and exit notes.

One place decides what a record read from the inbox means for the jobs and workers it names. It
changes the engine's state (ledger, supervisor) and returns what the runner must do with the store
objects (:class:`Reading`). It does no I/O itself. The cross-answer hang came from two places
deciding this apart (the inbox counted a key as read while the controller refused its content); the
runner now marks as read exactly what it passed here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crew_core.engine.ledger import JobState, Task
from crew_core.errors import CorruptObjectError
from crew_core.results import ERROR, TIMEOUT
from crew_core.wire import protocol
from crew_core.wire.protocol import ExitNote, InboxEntry, Outcome, ResultBatch
from crew_core.wire.serialize import to_result

if TYPE_CHECKING:
    from crew_core.engine.port import Controller
    from crew_core.engine.workers import WorkerRecord

log = logging.getLogger("crew")


@dataclass
class Reading:
    """The runner's instructions from one poll's records, in the order they are to be carried out."""

    answered: list[tuple[int, str]] = field(default_factory=list)  # (job, answer key): a named crew keeps the key
    read_tasks: list[str] = field(default_factory=list)  # task records whose answer is in: they can go
    drop: list[str] = field(default_factory=list)  # answer keys nobody needs any more


class Answers:
    """Applies what workers wrote to the controller's state (see the module docstring)."""

    def __init__(self, controller: Controller, keeps_results: bool) -> None:
        """``keeps_results``: a named crew keeps each answer until a receipt covers its jobs."""
        self.m = controller
        self.keeps_results = keeps_results

    def apply(
        self,
        results: list[tuple[InboxEntry, ResultBatch | CorruptObjectError]],
        beats: list[InboxEntry],
        exits: list[tuple[InboxEntry, ExitNote | None]],
        outcomes: dict[str, dict[int, Outcome]],
        now: float,
    ) -> Reading:
        """Apply one poll's answers, beats and exit notes (``outcomes``: each answer's, unpickled)."""
        m, reading = self.m, Reading()
        for entry, batch in results:
            task = m.ledger.tasks.get(entry.seq)
            if task is None:
                if entry.seq > m.ledger.issued and _signed_by_its_writer(entry, batch):
                    # A worker refused a forged record planted where the crew's next task would go. A
                    # task written there later would never be read (the worker does not read a refused
                    # key again), so that number is skipped. Only a refusal the worker signed counts:
                    # unsigned objects could otherwise fill the skipped numbers without end.
                    log.warning("answer %r is to a task this crew has not written: a forged task record;"
                                " the crew will not use that number", entry.key)  # fmt: skip
                    m.ledger.skipped.add(entry.seq)
                reading.drop.append(entry.key)  # answered already, or from a worker declared dead meanwhile
                continue
            if entry.kind == "refused":
                self._refusal(task, entry, batch, now, reading)
                continue
            record = m.records.get(task.worker)
            if isinstance(batch, ResultBatch) and (batch.worker, batch.incarnation) != (task.worker, task.incarnation):
                # Signed by another worker, which never writes this key (it says what it refused under
                # a key of its own). Whatever put it here, the key now counts as read, so the task's
                # own answer would never be: it is lost, as a corrupt one is, and its jobs run again.
                writer = f"{batch.worker}.{batch.incarnation}"
                batch = CorruptObjectError(f"store object {entry.key!r} was written as {writer},"
                                           f" the task was for {task.worker}.{task.incarnation}")  # fmt: skip
            if isinstance(batch, CorruptObjectError):
                m.ledger.close_task(task.seq, now)
                m.supervisor.charge(task.jobs, record, str(batch), ran=True)  # the answer was lost
                reading.drop.append(entry.key)
                continue
            if record is not None and batch.inner:
                record.inner = batch.inner
            if entry.part:
                self._part(task, batch, outcomes.get(entry.key, {}), record, entry.key, now, reading)
                continue
            self._close(task, record, now, reading)
            if batch.returned:
                m.ledger.requeue(task.jobs)  # revoked before it started
                reading.drop.append(entry.key)
            else:
                self._deliver(task, outcomes.get(entry.key, {}), record, entry.key, reading)
        for entry in beats:
            beating = m.records.get(entry.worker)
            if beating is not None:
                m.supervisor.on_beat(beating, entry.incarnation, entry.beat, now)
        for entry, note in exits:
            leaving = m.records.get(entry.worker)
            if leaving is not None and note is not None:
                m.supervisor.on_exit(leaving, entry.incarnation, note, now)
        return reading

    def _refusal(self, task: Task, entry: InboxEntry, refusal: ResultBatch | CorruptObjectError, now: float,
                 reading: Reading) -> None:  # fmt: skip
        """A worker read nothing from the record at ``task.seq`` under its prefix (not signed for
        that key, or gone): if the task is that worker's, its jobs run again; if it is another's,
        nothing changes, and that worker's answer (under its own key) is read as usual."""
        if isinstance(refusal, CorruptObjectError):
            log.warning("ignoring %r: %s", entry.key, refusal)  # planted: only the worker it names can sign it
            return
        if (task.worker, task.incarnation) != (entry.worker, entry.incarnation):
            log.warning("worker %s.%d refused a record planted under its prefix with the number of task %d,"
                        " which is %s.%d's: that task goes on", entry.worker, entry.incarnation, task.seq,
                        task.worker, task.incarnation)  # fmt: skip
            return
        record = self.m.records.get(task.worker)
        self._close(task, record, now, reading)
        self._deliver(task, {}, record, entry.key, reading)  # no outcomes: its jobs are charged as unread, not run

    def _close(self, task: Task, record: WorkerRecord | None, now: float, reading: Reading) -> None:
        """The task is answered (all of it): its record can go."""
        self.m.ledger.close_task(task.seq, now)
        if record is not None:
            reading.read_tasks.append(protocol.task_key(record.prefix, task.seq))
            if not self.m.ledger.has_tasks(record.name):
                record.idle_since = now

    def _part(self, task: Task, batch: ResultBatch, outcomes: dict[int, Outcome], record: WorkerRecord | None,
              key: str, now: float, reading: Reading) -> None:  # fmt: skip
        """A forwarder answered some of the task's jobs, or handed them back unrun (``returned``)."""
        if batch.returned:
            self.m.ledger.give_back(task, {job_id for job_id, _ in batch.outcomes})
            reading.drop.append(key)
        else:
            self._deliver(task, outcomes, record, key, reading, partial=True)
        if all(job.state is JobState.DONE for job in task.jobs):
            self._close(task, record, now, reading)

    def _deliver(self, task: Task, outcomes: dict[int, Outcome], record: WorkerRecord | None, key: str,
                 reading: Reading, partial: bool = False) -> None:  # fmt: skip
        m = self.m
        missing = []
        kept = False
        for job in task.jobs:
            outcome = outcomes.get(job.id)
            if outcome is None:
                if not partial:
                    missing.append(job)
                continue
            m.dispatcher.durations.record(job.kind, outcome.seconds)
            if record is not None:
                record.stats.jobs += 1
                record.stats.errors += outcome.status == ERROR
                record.stats.timeouts += outcome.status == TIMEOUT
                record.stats.busy += outcome.seconds
            result = to_result(job.id, job.tags, job.runs, outcome, task.worker)
            if m.ledger.finish(job, result) and self.keeps_results:
                reading.answered.append((job.id, key))  # kept in the store until the user has it
                kept = True
        if not kept:
            reading.drop.append(key)
        if missing:
            m.supervisor.charge(missing, record, f"worker {task.worker!r} could not read task {task.seq}", ran=False)


def _signed_by_its_writer(entry: InboxEntry, batch: ResultBatch | CorruptObjectError) -> bool:
    """A refusal signed by the crew's key and written under the name of the worker that signed it."""
    return (entry.kind == "refused" and isinstance(batch, ResultBatch)
            and (batch.worker, batch.incarnation) == (entry.worker, entry.incarnation))  # fmt: skip
