"""What must hold of the controller's state after every step, and of a run once it is over."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from crew_core.engine.ledger import JobState, Ledger
from crew_core.results import CRASH, ERROR, SUCCESS, TIMEOUT, Result


def check_ledger(ledger: Ledger) -> None:
    """Every job is exactly where its state says, and the ledger's counters agree with its jobs."""
    waiting = {job.id for job in ledger.backlog}
    held = {job.id for jobs in ledger.held.values() for job in jobs if job.state is _HELD}
    carried = {job.id for task in ledger.tasks.values() for job in task.jobs if job.state is _ASSIGNED}
    tasks, functions, claims = ledger.tasks, set(), 0
    for job in ledger.jobs.values():
        state, job_id = job.state, job.id
        assert state is not _DONE, f"job {job_id} is DONE but still in the ledger"
        assert (job_id in waiting) == (state is _WAITING), f"job {job_id} ({state}) vs the backlog"
        assert (job_id in held) == (state is _HELD), f"job {job_id} ({state}) vs held jobs"
        assert (job_id in carried) == (state is _ASSIGNED), f"job {job_id} ({state}) vs the tasks"
        if state is _ASSIGNED:
            assert job.task is not None and tasks.get(job.task.seq) is job.task, f"job {job_id}'s task"
        assert job.runs <= job.tries or job.tries == 0 or job.runs <= job.tries, f"job {job_id} tries/runs"
        functions.add(job.function)
        claims += job.claim is not None
    assert not (waiting | held | carried) - ledger.jobs.keys(), "a finished job is still waiting, held or carried"
    assert ledger.claims == claims, "claim count"
    assert ledger.functions.keys() == functions, "functions kept"
    ids = [r.id for r in ledger.results] + [r.id for _, r in ledger.claimed] + [j.id for j, _ in ledger.unsaved]
    assert len(ids) == len(set(ids)), "a result waits in two places"
    assert not ledger.jobs.keys() & ids, "a job has a result and is still in the ledger"


_WAITING, _ASSIGNED, _HELD, _DONE = JobState.WAITING, JobState.ASSIGNED, JobState.HELD, JobState.DONE


#: Bugs of the controller the simulator found and that are not fixed yet. A run that meets one
#: counts it in ``Tally.known`` and logs it, instead of failing on what follows from it; the tests
#: named after each (``tests/test_simulation.py``) replay a seed that meets it and fail once it is fixed.
#: None now: "resurrected task" (a resumed controller gave an adopted worker back a batch it had
#: answered with a revoke or a refusal, whose answer was deleted before the task's record) is fixed.
KNOWN_BUGS: dict[str, str] = {}


@dataclass
class Tally:
    """What happened, for the invariants and for the report."""

    delivered: dict[int, Result] = field(default_factory=dict)
    runs: Counter[int] = field(default_factory=Counter)  # job id -> runs begun on a worker
    unbegun: Counter[int] = field(default_factory=Counter)  # deaths of a worker given the job alone, not begun
    deaths: Counter[int] = field(default_factory=Counter)  # launches given the job that ended without a word
    lost: Counter[int] = field(default_factory=Counter)  # task records holding the job that were lost
    excused: Counter[int] = field(default_factory=Counter)  # runs begun again soon after a store outage
    kills: int = 0
    cancelled: set[int] = field(default_factory=set)  # jobs the user cancelled
    controllers: int = 1  # controllers that ran the crew (a named crew's, one more per death)
    adopted: int = 0  # workers a resuming controller adopted
    handouts: list[int] = field(default_factory=list)  # jobs whose results the user got, in order (named)
    receipted: int = 0  # the first of ``handouts`` after the last receipt written
    repeatable: set[int] = field(default_factory=set)  # results a next controller may hand out again
    known: Counter[str] = field(default_factory=Counter)  # KNOWN_BUGS met
    events: deque[str] = field(default_factory=lambda: deque(maxlen=40))


def check_runs(tally: Tally, max_tries: int, fail: Callable[[str], None]) -> None:
    """Once every job is back: tries counted right, and no job ran more often than faults explain."""
    for job_id, result in tally.delivered.items():
        runs, unbegun, deaths = tally.runs[job_id], tally.unbegun[job_id], tally.deaths[job_id]
        if result.status in (SUCCESS, ERROR, TIMEOUT) and result.tries > runs + unbegun:
            fail(f"job {job_id} says {result.tries} tries but began {runs} time(s) ({unbegun} more deaths"
                 " of a worker that had it, not begun)")  # fmt: skip
        # Tries count the run that ended it and one for each death of a worker that had it: never
        # two for one death (an adopted worker's job included), nor one for a worker still alive.
        if result.status in (SUCCESS, ERROR, TIMEOUT) and result.tries > deaths + 1:
            fail(f"job {job_id} says {result.tries} tries but the workers given it died {deaths} time(s): {result}")
        if result.status == CRASH and result.tries > max_tries:
            fail(f"job {job_id} crashed after {result.tries} tries, past max_tries")
        # A job runs again only when a worker given it died, its task record was lost, or a worker
        # was given up for dead while the store was down (silent, or not beating once adopted).
        lost, excused = tally.lost[job_id], tally.excused[job_id]
        if runs > 1 + deaths + lost + excused:
            fail(f"job {job_id} began {runs} times, but the workers given it died {deaths} time(s), its task"
                 f" records were lost {lost} time(s), and {excused} run(s) began soon after a store outage")
