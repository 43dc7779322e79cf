"""What must hold of the controller's state after every step, whatever happened."""

from __future__ import annotations

from crew_core.engine.ledger import JobState, Ledger


def check_ledger(ledger: Ledger) -> None:
    """Every job is exactly where its state says, and the ledger's counters agree with its jobs."""
    waiting = {job.id for job in ledger.backlog}
    held = {job.id for jobs in ledger.held.values() for job in jobs if job.state is JobState.HELD}
    carried = {job.id for task in ledger.tasks.values() for job in task.jobs if job.state is JobState.ASSIGNED}
    for job in ledger.jobs.values():
        assert job.state is not JobState.DONE, f"job {job.id} is DONE but still in the ledger"
        assert (job.id in waiting) == (job.state is JobState.WAITING), f"job {job.id} ({job.state}) vs the backlog"
        assert (job.id in held) == (job.state is JobState.HELD), f"job {job.id} ({job.state}) vs held jobs"
        assert (job.id in carried) == (job.state is JobState.ASSIGNED), f"job {job.id} ({job.state}) vs the tasks"
        if job.state is JobState.ASSIGNED:
            assert job.task is not None and ledger.tasks.get(job.task.seq) is job.task, f"job {job.id}'s task"
        assert job.runs <= job.tries or job.tries == 0 or job.runs <= job.tries, f"job {job.id} tries/runs"
    assert not (waiting | held | carried) - set(ledger.jobs), "a finished job is still waiting, held or carried"
    assert ledger.claims == sum(job.claim is not None for job in ledger.jobs.values()), "claim count"
    assert set(ledger.functions) == {job.function for job in ledger.jobs.values()}, "functions kept"
    ids = [r.id for r in ledger.results] + [r.id for _, r in ledger.claimed] + [j.id for j, _ in ledger.unsaved]
    assert len(ids) == len(set(ids)), "a result waits in two places"
    assert not set(ids) & set(ledger.jobs), "a job has a result and is still in the ledger"
