"""What a worker's end costs the jobs it held, and what a lost object costs its jobs.

A worker that goes down leaves its jobs one of four fates: back to the backlog uncharged (it never
started them, it left cleanly, or we stopped it on purpose), refused (it died before it began, as a
failed launch), held for its relaunch (a forwarder, whose inner crew still has them), or charged one
try (it died running them), then given up as crashed once they have used every try. The supervisor
(``crew_core.engine.supervisor``) decides when a worker is down; this module decides what that
means for its jobs. Like all of the engine it does no I/O: it changes the ledger and calls the
controller back (``crew_core.engine.port``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from crew_core.engine.ledger import Job, JobState, Task
from crew_core.engine.orders import Cleanup, Place, RosterChanged
from crew_core.engine.workers import Life, WorkerRecord
from crew_core.errors import WorkerCrashedError, WorkerLaunchError
from crew_core.results import CRASH, ERROR, Result
from crew_core.wire import protocol
from crew_core.wire.protocol import ExitNote

if TYPE_CHECKING:
    from crew_core.engine.port import Controller

log = logging.getLogger("crew")


class Deaths:
    """The fate of the jobs of a worker that went down, failed to launch, or lost their data."""

    def __init__(self, manager: Controller) -> None:
        self.m = manager

    def down(self, record: WorkerRecord, now: float) -> None:
        """The worker's process has ended: keep what it finished, place what it had not."""
        if not record.up:
            return
        m = self.m
        note = record.exit
        deliberate = record.stop_requested is not None
        record.move(Life.DOWN)
        record.stop_requested = None
        m.orders.add(RosterChanged(record.name, live=False))
        record.idle_since = now
        # It left no note: killed, or out of reach and maybe still running (a task in a user's
        # executor cannot be killed). A Stop left in its place tells such a straggler to leave.
        m.orders.add(Cleanup(Place.of(record), protocol.Stop(m.ledger.next_seq()) if note is None else None))
        tasks = m.ledger.tasks_of(record.name)
        for task in tasks:
            m.ledger.close_task(task.seq, now)
        if not tasks:
            return
        if deliberate or (note is not None and note.clean):  # it never started these, or we stopped it
            m.ledger.requeue(job for task in tasks for job in task.jobs)
            return
        if not record.beat_seen and (note is None or note.reason == "error"):  # it died before it began: it ran nothing
            if note is not None and note.error:
                why = note.error.strip().splitlines()[-1]
                error = WorkerLaunchError(f"worker {record.name!r} failed as it started: {why}")
            else:  # the backend may know why (a secret it could not read, an image it could not pull)
                cause = _backend_cause(record) or (
                    "its backend's logs say why (a missing package, an image that cannot be pulled,"
                    " a node lost at boot)"
                )
                error = WorkerLaunchError(
                    f"worker {record.name!r} ended before it started (no heartbeat, no exit note): {cause}"
                )
            record.launch_failures += 1
            record.stats.refused += 1
            record.stats.launches -= 1  # it was counted when the backend accepted it
            record.launch_error = error
            record.retry_at = now + record.retry.next()
            log.warning("%s", error)
            self.refused([job for task in tasks for job in task.jobs], error)
            return
        if record.backend.nested:  # its inner crew still has them: they wait for its relaunch, uncharged
            record.stats.crashes += 1
            log.warning("forwarder %r died (%s); its %d job(s) wait for its relaunch, which resumes its inner crew",
                        record.name, _death(record, note), sum(len(t.jobs) for t in tasks))  # fmt: skip
            m.ledger.hold(record.name, [job for task in tasks for job in task.jobs])
            return
        started = [t for t in tasks if note is None or t.seq <= note.last_seq]
        running: Task | None = started[0] if started else None
        m.ledger.requeue(job for task in tasks if task is not running for job in task.jobs)
        if running is None:
            return
        jobs = [job for job in running.jobs if job.state is not JobState.DONE]  # not those timed out or cancelled
        if not jobs:
            return
        cause = _death(record, note)
        record.stats.crashes += 1
        # A batch (even one whose other jobs were cancelled or timed out meanwhile): which of its
        # jobs killed the worker is unknown, so each left runs again alone, uncharged.
        if len(running.jobs) > 1:
            log.warning("worker %r died running a batch of %d jobs (%s): each runs again alone", record.name,
                        len(jobs), cause)  # fmt: skip
            for job in jobs:
                job.solo = True
            m.ledger.requeue(jobs)
            return
        log.warning("worker %r died running task %d (%s); its job is charged a try", record.name, running.seq,
                    cause)  # fmt: skip
        survivors = []
        for job in jobs:
            m.ledger.charge(job, ran=True)
            if not self.out_of_tries(job, record, cause):
                if job.crash_tags:  # its next try goes to bigger workers, say
                    job.tags = job.crash_tags[min(job.tries, len(job.crash_tags)) - 1]
                survivors.append(job)
        if m.settings.auto_restart:
            m.ledger.requeue(survivors)  # they run again, each alone (the dispatcher sees their tries)
        else:
            m.ledger.hold(record.name, survivors)

    def out_of_tries(self, job: Job, record: WorkerRecord, cause: str = "") -> bool:
        """Give a job up as crashed once it has used every try; ``cause``: how the last worker died."""
        max_tries = self.m.settings.max_tries
        if job.tries < max_tries:
            return False
        error = WorkerCrashedError(
            f"job {job.id} ({job.kind}) ended with its worker dead or its data lost {job.tries}"
            f" time(s) (max_tries={max_tries}); the last worker was {record.name!r}"
            + (f": {cause}" if cause else "")
        )
        end_job(self.m, job, Result(job.id, CRASH, error=error, worker=record.name, tags=job.tags, tries=job.runs))
        return True

    def charge(self, jobs: list[Job], record: WorkerRecord | None, reason: str, ran: bool) -> None:
        """Jobs whose data was lost (a corrupt object): charged a try, then run again or crashed.
        ``ran``: they ran (their answer was lost), which their results' ``tries`` counts."""
        log.warning("%s; %d job(s) are charged a try and run again", reason, len(jobs))
        survivors = []
        for job in jobs:
            self.m.ledger.charge(job, ran)
            if record is None or not self.out_of_tries(job, record):
                survivors.append(job)
        self.m.ledger.requeue(survivors)

    def refused(self, jobs: list[Job], error: BaseException) -> None:
        """Jobs whose worker did not start: tried again, until ``max_tries`` launches failed for each."""
        max_tries = self.m.settings.max_tries
        again = []
        for job in jobs:
            job.refusals += 1
            if job.refusals < max_tries:
                again.append(job)
                continue
            failure = WorkerLaunchError(
                f"job {job.id} ({job.kind}) never ran: the {job.refusals} worker launches meant to run it"
                f" failed (max_tries={max_tries}); the last: {error}"
            )
            failure.__cause__ = error
            end_job(self.m, job, Result(job.id, ERROR, error=failure, tags=job.tags, tries=job.runs))
        self.m.ledger.requeue(again)


def end_job(m: Controller, job: Job, result: Result) -> None:
    """End a job with a result the controller made: a named crew stores it before anyone can have
    it (``durable/verdicts.py``), and the runner writes it at its next write."""
    m.ledger.finish(job, result, unsaved=m.keeps_verdicts)


def _backend_cause(record: WorkerRecord) -> str | None:
    """How its backend says the worker ended (an exit code, a signal, a state), if it knows."""
    try:
        return record.backend.exit_cause()
    except Exception as exc:  # a plugin's bug must not hide the crash itself
        log.warning("worker %r cannot say how it ended: %s", record.name, exc)
        return None


def _death(record: WorkerRecord, note: ExitNote | None) -> str:
    """How a worker died, as precisely as its backend knows (an exit code, a signal, a state)."""
    cause = _backend_cause(record)
    if note is not None:
        said = f"it left saying {note.reason!r}" + (f": {note.error.strip().splitlines()[-1]}" if note.error else "")
        return f"{cause}; {said}" if cause else said
    return cause or "it ended without an exit note (its backend does not say how)"
