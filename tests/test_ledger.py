"""The ledger alone, driven by hypothesis: every job is in exactly one state, whatever happens to it.

A job's state is kept by the ledger only (engine v2: one owner for each fact). These tests move jobs
through every transition the controller makes (accept, assign, answer, lose a task, a worker dying
and restarting, cancel, withdraw, results a named crew must store first, claims) in random orders and
check after every step that the ledger's containers agree with each job's state and that no job is
delivered twice.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from crew_core.engine.ledger import Job, JobState, Ledger
from crew_core.results import CANCELLED, SUCCESS, Result

WORKERS = {"plain": frozenset(), "gpu": frozenset({"gpu"})}


class _Claim:
    """A claim as a future or map() makes one: counts its calls."""

    def __init__(self) -> None:
        self.starts = 0

    def started(self) -> None:
        self.starts += 1

    def finished(self, result: Result) -> None:  # called by the runner, outside the ledger
        raise AssertionError("the ledger never calls finished() itself")


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger()
        self.all: dict[int, Job] = {}
        self.delivered: list[int] = []  # ids whose result left the ledger (received or handed to a claim)
        self.withdrawn: set[int] = set()
        self.incarnation = dict.fromkeys(WORKERS, 1)
        self.now = 0.0

    # ------------------------------------------------------------------ helpers
    def _jobs(self, state: JobState) -> list[Job]:
        return [job for job in self.all.values() if job.state is state]

    def _tick(self) -> float:
        self.now += 1.0
        return self.now

    # ------------------------------------------------------------------ rules
    @rule(gpu=st.booleans(), claimed=st.booleans(), function=st.sampled_from(["f", "g"]))
    def accept(self, gpu: bool, claimed: bool, function: str) -> None:
        job = Job(len(self.all) + 1, function, b"args", frozenset({"gpu"}) if gpu else frozenset(), "kind",
                  claim=_Claim() if claimed else None)  # fmt: skip
        self.all[job.id] = job
        self.ledger.accept(job, function.encode())

    @rule(worker=st.sampled_from(sorted(WORKERS)), count=st.integers(1, 3))
    def assign(self, worker: str, count: int) -> None:
        jobs = []
        while len(jobs) < count and (job := self.ledger.backlog.pop(WORKERS[worker])) is not None:
            jobs.append(job)
        if jobs:
            self.ledger.assign(worker, self.incarnation[worker], jobs, self._tick())

    @precondition(lambda self: self.ledger.tasks)
    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        seq = data.draw(st.sampled_from(sorted(self.ledger.tasks)))
        task = self.ledger.close_task(seq, self._tick())
        assert task is not None
        for job in task.jobs:
            self.ledger.finish(job, Result(job.id, SUCCESS, value=job.id, tags=job.tags))

    @precondition(lambda self: self.ledger.tasks)
    @rule(data=st.data())
    def lose_task(self, data: st.DataObject) -> None:
        """Its record vanished, or it was revoked before it started: its jobs wait again."""
        seq = data.draw(st.sampled_from(sorted(self.ledger.tasks)))
        task = self.ledger.close_task(seq, self._tick())
        assert task is not None
        self.ledger.requeue(task.jobs)

    @rule(worker=st.sampled_from(sorted(WORKERS)), charge=st.booleans())
    def worker_dies(self, worker: str, charge: bool) -> None:
        """It died holding its tasks: their jobs are held for its restart, the first one charged."""
        jobs = []
        for task in self.ledger.tasks_of(worker):
            self.ledger.close_task(task.seq, self._tick())
            jobs += task.jobs
        if charge and jobs and jobs[0].state is not JobState.DONE:
            self.ledger.charge(jobs[0], ran=True)
        self.ledger.hold(worker, jobs)
        self.incarnation[worker] += 1

    @rule(worker=st.sampled_from(sorted(WORKERS)))
    def worker_restarts(self, worker: str) -> None:
        self.ledger.requeue(self.ledger.release(worker))

    @precondition(lambda self: self.ledger.jobs)
    @rule(data=st.data(), unsaved=st.booleans())
    def cancel(self, data: st.DataObject, unsaved: bool) -> None:
        """The controller makes the result itself (cancel, crash, timeout): stored first if named."""
        job = self.ledger.jobs[data.draw(st.sampled_from(sorted(self.ledger.jobs)))]
        assert self.ledger.finish(job, Result(job.id, CANCELLED, tags=job.tags), unsaved=unsaved)
        assert not self.ledger.finish(job, Result(job.id, CANCELLED, tags=job.tags)), "finished twice"

    @precondition(lambda self: any(job.state is JobState.WAITING for job in self.all.values()))
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(self._jobs(JobState.WAITING)))
        if self.ledger.withdraw(job):
            self.withdrawn.add(job.id)

    @precondition(lambda self: self.ledger.unsaved)
    @rule()
    def store_unsaved(self) -> None:
        self.ledger.saved(self.ledger.take_unsaved())

    @rule()
    def receive(self) -> None:
        while (result := self.ledger.pop_result(frozenset())) is not None:
            self.delivered.append(result.id)
        self.delivered += [result.id for _, result in self.ledger.take_claimed()]

    # ------------------------------------------------------------------ invariants
    @invariant()
    def each_job_is_in_exactly_the_place_its_state_says(self) -> None:
        ledger = self.ledger
        waiting = {job.id for job in ledger.backlog}
        held = {job.id for jobs in ledger.held.values() for job in jobs if job.state is JobState.HELD}
        carried = {job.id for task in ledger.tasks.values() for job in task.jobs if job.state is JobState.ASSIGNED}
        for job in self.all.values():
            assert (job.id in ledger.jobs) == (job.state is not JobState.DONE), job
            assert (job.id in waiting) == (job.state is JobState.WAITING), job
            assert (job.id in held) == (job.state is JobState.HELD), job
            assert (job.id in carried) == (job.state is JobState.ASSIGNED), job
            if job.state is JobState.ASSIGNED:
                assert job.task is not None and ledger.tasks[job.task.seq] is job.task
            if job.state is JobState.HELD:
                assert job.holder is not None and job in ledger.held[job.holder]

    @invariant()
    def no_result_leaves_twice_and_none_is_lost(self) -> None:
        ledger = self.ledger
        waiting = [r.id for r in ledger.results] + [r.id for _, r in ledger.claimed] + [j.id for j, _ in ledger.unsaved]
        out = self.delivered + waiting
        assert len(out) == len(set(out)), "a result is in two places, or was delivered twice"
        done = {job.id for job in self.all.values() if job.state is JobState.DONE}
        assert set(out) | self.withdrawn == done
        assert not set(out) & self.withdrawn

    @invariant()
    def counters_match_the_jobs(self) -> None:
        ledger = self.ledger
        assert ledger.claims == sum(job.claim is not None for job in ledger.jobs.values())
        assert set(ledger.functions) == {job.function for job in ledger.jobs.values()}
        assert len(ledger) == len(ledger.jobs)
        for job in self.all.values():
            assert job.runs <= job.tries
            if job.claim is not None and job.state is JobState.ASSIGNED:
                assert job.claim.starts >= 1


TestLedger = LedgerMachine.TestCase
TestLedger.settings = settings(max_examples=300, stateful_step_count=40, deadline=None, derandomize=True)
