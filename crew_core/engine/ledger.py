"""The ledger: every job the controller has accepted, each in exactly one state.

=========  ==========================================================================
state      where the job is
=========  ==========================================================================
WAITING    in the backlog, for a worker carrying its tags
ASSIGNED   in task ``job.task`` (a batch written for one incarnation of one worker)
HELD       kept by a worker that died holding it (``job.holder``), until it restarts
DONE       answered: its :class:`Result` waits in ``results`` until the user receives it (or
           goes to its claim); or withdrawn before it started. A result a named crew's
           controller made itself waits in ``unsaved`` until it is in the store
=========  ==========================================================================

Only the methods here move a job from one state to another, change what a job has been charged,
or take results and claims in and out, so the state of a job is never kept in two places (other
modules read jobs, never write them). The ledger does no I/O and takes no decisions: the
dispatcher and the supervisor decide, under the controller's lock. ``tests/test_ledger.py`` drives
it through random sequences of every transition and checks these promises after each step.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from crew_core.engine.backlog import Backlog
from crew_core.results import Result


class JobState(enum.Enum):
    WAITING = "waiting"
    ASSIGNED = "assigned"
    HELD = "held"
    DONE = "done"


class Claim(Protocol):
    """Who takes a job's result instead of :meth:`Crew.receive` (a future, a ``map`` call)."""

    #: True when its owner waits in a call that raises the crew's errors itself (``map``): a crew
    #: whose store is gone for good leaves the job to it. Others (futures) get that error as the result.
    raises_errors: bool

    def started(self) -> None:
        """The job went to a worker: it can no longer be withdrawn (called under the lock)."""

    def finished(self, result: Result) -> None:
        """The job's result (called once, outside the lock)."""


@dataclass(eq=False, slots=True)
class Job:
    """A job the controller has accepted (internal bookkeeping; users see ids and Results)."""

    id: int
    function: str  # digest of the pickled function (the ledger keeps the bytes once)
    args: bytes  # pickled (empty when they are in the store: ``args_key``)
    tags: frozenset[str]
    kind: str  # module and qualified name of the function: jobs of one kind take alike time
    tries: int = 0  # tries charged: runs that ended with the worker dead, and data lost (max_tries)
    runs: int = 0  # runs known to have started that ended with the worker dead (Result.tries counts runs)
    refusals: int = 0  # launches meant to run it that the backend refused (or that died unstarted)
    solo: bool = False  # its batch died: it runs alone from now on, so a death is charged to it only
    state: JobState = JobState.WAITING
    task: Task | None = None  # ASSIGNED: the task that carries it
    holder: str | None = None  # HELD: the worker that holds it
    claim: Claim | None = None  # takes the result instead of receive()
    timeout: float | None = None  # seconds it may run (the worker stops it; see Supervisor.check)
    crash_tags: tuple[frozenset[str], ...] = ()  # tags of its next tries, after each crash
    args_key: str = ""  # the store object holding its pickled arguments, if not ``args`` (large ones)


@dataclass(eq=False, slots=True)
class Task:
    """A batch of jobs written for one incarnation of one worker, not answered yet."""

    seq: int
    worker: str
    incarnation: int
    jobs: list[Job]
    assigned: float  # monotonic time of assignment
    running_since: float | None = None  # when it became the oldest task of its worker
    revoking: bool = False  # a Revoke for it was written
    written: bool = False  # its record is in the store (the put returned)
    checked: float = 0.0  # when the store was last asked whether its record is still there
    stop_by: float | None = None  # a job of it was cancelled: the worker must answer by then


@dataclass
class Ledger:
    """Jobs by state, the tasks that carry assigned jobs, and results not yet received."""

    jobs: dict[int, Job] = field(default_factory=dict)  # every accepted job not DONE
    backlog: Backlog = field(default_factory=Backlog)
    tasks: dict[int, Task] = field(default_factory=dict)  # seq -> outstanding task
    held: dict[str, list[Job]] = field(default_factory=dict)
    results: deque[Result] = field(default_factory=deque)
    claimed: list[tuple[Claim, Result]] = field(default_factory=list)  # to hand over, outside the lock
    unsaved: list[tuple[Job, Result]] = field(default_factory=list)  # made by a named crew's controller, not stored yet
    functions: dict[str, bytes] = field(default_factory=dict)  # digest -> pickled function
    _uses: dict[str, int] = field(default_factory=dict)  # digest -> jobs not DONE that call it
    _by_worker: dict[str, dict[int, Task]] = field(default_factory=dict)  # in seq order
    issued: int = 0  # the last task number handed out
    skipped: set[int] = field(default_factory=set)  # numbers never to hand out: a forged record holds them
    claims: int = 0  # jobs in ``jobs`` whose result goes to a claim
    #: Called (under the lock) with each job whose arguments are needed no more: it is DONE, and a
    #: result its named crew's controller made is stored (else a next controller runs it again).
    released: Callable[[Job], None] = field(default=lambda job: None)

    # ------------------------------------------------------------------ claims
    def unclaim(self, job: Job) -> Claim | None:
        """Take the job's claim away (the crew stops): its result will go nowhere."""
        claim, job.claim = job.claim, None
        self.claims -= claim is not None and job.id in self.jobs
        return claim

    def attach(self, job_id: int, claim: Claim) -> bool:
        """Give an unclaimed job (or its result being stored) to ``claim``; False if there is none."""
        job = self.jobs.get(job_id)
        if job is not None:
            if job.claim is None:
                job.claim = claim
                self.claims += 1
                if job.state is JobState.ASSIGNED:
                    claim.started()
            return True
        for staged, _ in self.unsaved:  # a result its controller made, being stored: the claim gets it then
            if staged.id == job_id and staged.claim is None:
                staged.claim = claim
                return True
        return False

    def fail_claims(self, make: Callable[[Job], Result], spare: Callable[[Claim], bool] | None = None) -> None:
        """The crew stops: every claim gets the result ``make`` gives its job, instead of silence.

        An unsaved result's job loses its claim too: it runs again under a next controller.
        ``spare``: claims to leave as they are (their owners hear the error themselves)."""
        for job in [*self.jobs.values(), *(job for job, _ in self.unsaved)]:
            if spare is not None and job.claim is not None and spare(job.claim):
                continue
            claim = self.unclaim(job)
            if claim is not None:
                self.claimed.append((claim, make(job)))

    def take_claimed(self, claim: Claim | None = None) -> list[tuple[Claim, Result]]:
        """Results due to claims (all, or ``claim``'s only), to hand over outside the lock."""
        if claim is None:
            taken, self.claimed = self.claimed, []
            return taken
        taken = [entry for entry in self.claimed if entry[0] is claim]
        self.claimed = [entry for entry in self.claimed if entry[0] is not claim]
        return taken

    # ------------------------------------------------------------------ counters
    def charge(self, job: Job, ran: bool) -> None:
        """A try is charged: the job's worker died with it (``ran``: it had started), or its data was lost."""
        job.tries += 1
        job.runs += ran

    def next_seq(self) -> int:
        """A crew-wide task number: every task record of any worker gets the next one."""
        self.issued += 1
        while self.issued in self.skipped:
            self.skipped.discard(self.issued)
            self.issued += 1
        return self.issued

    def __len__(self) -> int:
        """Jobs accepted and not yet answered."""
        return len(self.jobs)

    # ------------------------------------------------------------------ transitions
    def accept(self, job: Job, function: bytes, queue: bool = True) -> None:
        """A new job: WAITING at the back of the backlog (``queue``), or for the caller to assign."""
        self.jobs[job.id] = job
        self.claims += job.claim is not None
        if job.function not in self.functions:
            self.functions[job.function] = function
        self._uses[job.function] = self._uses.get(job.function, 0) + 1
        if queue:
            self.backlog.push(job)

    def assign(self, worker: str, incarnation: int, jobs: list[Job], now: float, seq: int | None = None) -> Task:
        """WAITING jobs (already taken off the backlog) become ASSIGNED to a new task.

        ``seq``: a task an earlier controller of a named crew wrote (restored in seq order).
        """
        task = Task(self.next_seq() if seq is None else seq, worker, incarnation, jobs, now)
        for job in jobs:
            job.state, job.task = JobState.ASSIGNED, task
            if job.claim is not None:
                job.claim.started()
        self.tasks[task.seq] = task
        queue = self._by_worker.setdefault(worker, {})
        if not queue:
            task.running_since = now
        queue[task.seq] = task
        return task

    def tasks_of(self, worker: str) -> list[Task]:
        """The worker's outstanding tasks, oldest (the one running, presumably) first."""
        return list(self._by_worker.get(worker, {}).values())

    def queued_behind(self) -> bool:
        """True when some worker has a task queued behind the one it runs (a prefetch)."""
        return len(self.tasks) > sum(1 for queue in self._by_worker.values() if queue)

    def has_tasks(self, worker: str) -> bool:
        return bool(self._by_worker.get(worker))

    def close_task(self, seq: int, now: float) -> Task | None:
        """Take an answered, revoked or lost task out; its jobs stay ASSIGNED until moved on."""
        task = self.tasks.pop(seq, None)
        if task is None:
            return None
        queue = self._by_worker.get(task.worker, {})
        queue.pop(seq, None)
        if queue:
            oldest = next(iter(queue.values()))
            if oldest.running_since is None:
                oldest.running_since = now
        return task

    def give_back(self, task: Task, ids: set[int]) -> None:
        """A forwarder handed some of a task's jobs back unrun: they wait again, the rest stay."""
        back = [job for job in task.jobs if job.id in ids]
        task.jobs = [job for job in task.jobs if job.id not in ids]
        self.requeue(back)

    def requeue(self, jobs: Iterable[Job]) -> None:
        """Jobs go back to the front of the backlog, WAITING (they were taken before the rest)."""
        jobs = [job for job in jobs if job.state is not JobState.DONE]
        for job in jobs:
            job.state, job.task, job.holder = JobState.WAITING, None, None
        self.backlog.push_front(jobs)

    def hold(self, worker: str, jobs: Iterable[Job]) -> None:
        """A worker died holding these jobs: they wait for it to restart."""
        held = self.held.setdefault(worker, [])
        for job in jobs:
            if job.state is not JobState.DONE:
                job.state, job.task, job.holder = JobState.HELD, None, worker
                held.append(job)

    def release(self, worker: str) -> list[Job]:
        """The jobs a worker held (their state is the caller's next move)."""
        return [job for job in self.held.pop(worker, []) if job.state is JobState.HELD]

    def finish(self, job: Job, result: Result, unsaved: bool = False) -> bool:
        """DONE, with a result to receive. False (and nothing changes) if it was DONE already.

        ``unsaved``: the result must be stored before anyone has it; it waits until :meth:`saved`.
        """
        if job.state is JobState.DONE:
            return False
        if job.state is JobState.WAITING:
            self.backlog.remove(job)
        job.state, job.task, job.holder = JobState.DONE, None, None
        self._forget(job, release=not unsaved)
        if unsaved:
            self.unsaved.append((job, result))
        else:
            self._hand_out(job, result)
        return True

    def take_unsaved(self, jobs: set[Job] | None = None) -> list[tuple[Job, Result]]:
        """Take results out of ``unsaved`` (all, or those of ``jobs``) once stored; see :meth:`saved`."""
        if jobs is None:
            taken, self.unsaved = self.unsaved, []
            return taken
        taken = [entry for entry in self.unsaved if entry[0] in jobs]
        self.unsaved = [entry for entry in self.unsaved if entry[0] not in jobs]
        return taken

    def restore(self, result: Result) -> None:
        """A result an earlier controller of a named crew had, for a job never accepted here: DONE at once."""
        self.results.append(result)

    def saved(self, entries: Iterable[tuple[Job, Result]]) -> None:
        """Results taken from ``unsaved`` are stored: they go to their claims, or to ``results``."""
        for job, result in entries:
            self.released(job)
            self._hand_out(job, result)

    def _hand_out(self, job: Job, result: Result) -> None:
        if job.claim is not None:
            self.claimed.append((job.claim, result))
        else:
            self.results.append(result)

    def withdraw(self, job: Job) -> bool:
        """A WAITING job leaves without a result (cancelled); False if it is past waiting.

        A job sent but not accepted yet is marked DONE: it is never accepted."""
        if job.state is not JobState.WAITING:
            return False
        if job.id not in self.jobs:
            job.state = JobState.DONE
            return True
        self.backlog.remove(job)
        job.state = JobState.DONE
        self._forget(job)
        return True

    def _forget(self, job: Job, release: bool = True) -> None:
        del self.jobs[job.id]
        if release:
            self.released(job)
        self.claims -= job.claim is not None
        uses = self._uses[job.function] - 1
        if uses:
            self._uses[job.function] = uses
        else:
            del self._uses[job.function], self.functions[job.function]

    # ------------------------------------------------------------------ results
    def pop_result(self, wanted: frozenset[str]) -> Result | None:
        """The oldest result for a job carrying every tag in ``wanted``."""
        if not wanted:
            return self.results.popleft() if self.results else None
        for index, result in enumerate(self.results):
            if wanted <= result.tags:
                del self.results[index]
                return result
        return None

    def take_result(self, job_id: int) -> Result | None:
        """Job ``job_id``'s result, if it waits to be received (it is taken)."""
        for result in self.results:
            if result.id == job_id:
                self.results.remove(result)
                return result
        return None

    def take_results(self) -> list[Result]:
        """Every result waiting to be received (taken)."""
        taken = list(self.results)
        self.results.clear()
        return taken

    def give_results(self, results: Iterable[Result]) -> None:
        """Results taken out and not used (a ``map`` that gave up): they wait for ``receive`` again."""
        self.results.extend(results)

    def has_result(self, wanted: frozenset[str]) -> bool:
        return any(wanted <= result.tags for result in self.results)
