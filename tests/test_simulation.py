"""The controller against simulated workers, store and backends, over many seeded fault schedules.

Every run checks the invariants after every step (see ``crew_core.testing.simulator``); a failure
names its seed, and ``World(seed, Faults.everything()).run()`` replays it exactly (named crews:
``World(seed, Faults.everything_named(), named=True)``). The mutation tests put known bugs back
into the code and check that the simulator finds each; bugs it found that are not fixed yet are
tolerated by the world and replayed, as expected failures, by the last tests here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from crew_core.agent import feed
from crew_core.durable import journal, receipts
from crew_core.engine import deaths, dispatcher, ledger, supervisor
from crew_core.runner import inbox, outbox, resume
from crew_core.testing.simulator import Faults, InvariantError, World
from crew_core.testing.simulator.mutants import mutate

#: Seeds per CI run; set CREW_SIM_SEEDS higher to search longer.
SEEDS = int(os.environ.get("CREW_SIM_SEEDS", "1000"))
#: Seeds of named crews whose controllers die (CREW_SIM_NAMED_SEEDS); each resume costs more.
NAMED_SEEDS = int(os.environ.get("CREW_SIM_NAMED_SEEDS", "300"))


@pytest.fixture(autouse=True)
def _quiet_crew_log(caplog):
    caplog.set_level(logging.CRITICAL, logger="crew")  # thousands of expected warnings otherwise


def test_without_faults_every_job_comes_back_once_and_no_worker_is_killed():
    for seed in range(20):
        world = World(seed)
        tally = world.run(seconds=10)
        assert sorted(tally.delivered) == list(range(1, world.jobs + 1))
        assert all(result.ok for result in tally.delivered.values()) or any(
            result.status == "timeout" for result in tally.delivered.values()
        )
        assert tally.kills == 0


@pytest.mark.parametrize("chunk", range(4))
def test_seeded_fault_schedules_keep_every_invariant(chunk):
    for seed in range(chunk, SEEDS, 4):
        World(seed, Faults.everything()).run(seconds=30)


@pytest.mark.parametrize("chunk", range(2))
def test_named_crews_keep_every_invariant_across_controllers_that_die(chunk):
    """Controllers die (between steps, in a write, part way through a batch delete) and the next
    resumes from the store: each job ends once for the user, but for results handed out after the
    last receipt; none runs more often than faults explain; adopted workers' jobs are not charged."""
    deaths = adopted = 0
    for seed in range(chunk, NAMED_SEEDS, 2):
        tally = World(seed, Faults.everything_named(), named=True).run(seconds=30)
        deaths, adopted = deaths + tally.controllers - 1, adopted + tally.adopted
    assert deaths > NAMED_SEEDS // 2 and adopted > deaths  # the schedules do kill controllers and adopt workers


@pytest.mark.parametrize("chunk", range(2))
def test_named_crews_whose_workers_end_with_their_controller_keep_every_invariant(chunk):
    """Worker w2's launches end with the controller that started them (a default local worker): a
    resumed controller gives it nothing new, and nothing it held runs more often than its death explains."""
    orphaned = 0
    for seed in range(chunk, NAMED_SEEDS, 2):
        world = World(seed, Faults.everything_named(), named=True, bound=frozenset({"w2"}))
        world.run(seconds=30)
        orphaned += sum(agent.orphaned for agent in world.launches.values())
    assert orphaned > NAMED_SEEDS // 4  # the schedules do leave launches orphaned


def test_tasks_max_holds_under_faults():
    for seed in range(60):
        World(seed, Faults(kill=0.2, lose_record=0.1, cancel=0.1, backend_delay=1.0), tasks_max=3).run(seconds=20)


@pytest.mark.parametrize("fails", [frozenset({"w0"}), frozenset({"w0", "w1", "w2"})], ids=["w0", "all"])
def test_workers_whose_initializer_fails_are_retired_and_only_their_jobs_fail(fails):
    """w0 alone carries "big": with its initializer failing, "big" jobs end with a WorkerInitError
    and the rest run on the others; with every worker's failing, every job does. None waits for
    ever, none succeeds that no healthy worker could run, and no worker is relaunched in a loop."""
    for seed in range(120):
        World(seed, Faults.everything(), init_fails=fails).run(seconds=30)
    for seed in range(40):
        World(seed, Faults.everything_named(), named=True, init_fails=fails).run(seconds=30)


# ---------------------------------------------------------------------- known bugs, put back
def _finds(faults: Faults, seeds: int = 60, **options) -> str | None:
    for seed in range(seeds):
        try:
            World(seed, faults, **options).run(seconds=30)
        except InvariantError as exc:
            return str(exc).splitlines()[0]
    return None


MUTANTS = {
    "a task record that vanished is never noticed": (
        supervisor, "patience = self.m.settings.heartbeat_timeout", "patience = math.inf",
        Faults(lose_record=0.5), {},
    ),
    "tasks_max ignored within a batch": (
        dispatcher,
        "        if tasks_max is not None:  # the worker leaves after tasks_max jobs: a batch never goes past it\n"
        "            limit = min(limit, max(1, tasks_max - record.given))\n",
        "",
        Faults(), {"tasks_max": 3, "jobs": 60},
    ),
    "a requeue revives a finished job": (
        ledger, "jobs = [job for job in jobs if job.state is not JobState.DONE]", "jobs = list(jobs)",
        Faults(kill=0.5, cancel=0.5), {},
    ),
    "a batch death is charged to every job of the batch": (
        deaths, "        if len(running.jobs) > 1:\n", "        if False:\n",
        Faults(kill=0.5), {},
    ),
    "a write that failed in an outage is dropped, not written again": (
        outbox, "            self.items[:0] = retry\n", "",
        Faults(outage=0.3), {},
    ),
    "a refused record is answered under another worker's answer key (the cross-answer hang)": (
        feed, "refusal = protocol.refusal_key(s.crew, s.name, s.incarnation, seq, secrets.token_hex(8))",
        "refusal = protocol.answer_key(s.crew, seq)", Faults(forge=0.5), {},
    ),
    # Issue #20: journal and inbox objects saved and put back after the user received their jobs
    # were delivered again by the next controller, once the receipts were deleted with the journal
    # objects they covered. A receipt now stays for the life of the run; the merged one that
    # replaces a few names every job received so far.
    "a receipt is deleted though the objects of its jobs may be put back": (
        receipts, "merged = sorted(self.receipts) if merge else []", "merged = sorted(self.receipts)",
        replace(Faults(controller_dies=0.5), replay=2.0), {"named": True},
    ),
    "a merged receipt names only the jobs received since the last receipt": (
        receipts, "record = Receipt((), receipted.ranges()) if merge else Receipt(tuple(ids))",
        "record = Receipt(tuple(ids))", replace(Faults(controller_dies=0.5), replay=2.0), {"named": True},
    ),
    "a resumed controller reads a merged receipt's job ids but not its ranges": (
        journal, "found.received.update(receipt.job_ids, receipt.ranges)", "found.received.update(receipt.job_ids)",
        replace(Faults(controller_dies=0.5), replay=2.0), {"named": True},
    ),
    # The backend object a resumed controller made never started an adopted worker, and would say it
    # is not running: its job is charged a try for a death that never happened, and runs again.
    "an adopted worker's job is charged: its backend object, which never started it, is asked about it": (
        supervisor, "if record.phase is Phase.UP and not record.down_pending and not record.adopted:",
        "if record.phase is Phase.UP and not record.down_pending:",
        Faults(controller_dies=0.5), {"named": True},
    ),
    # Two cancels reaching one worker at once (the job it runs, the one queued behind): a worker that
    # kept only the last (the bug fixed in 749918b, in the task feed's set now) runs the first job on,
    # past its stop deadline, and the controller kills it. The controller's own second cancel of a
    # job is a no-op (the first took the job out of the ledger): there is no guard there to remove.
    "two cancels reach one worker: it keeps only the last, and is killed for the job it runs on": (
        feed, "                self.cancelled.add(record.job_id)\n",
        "                self.cancelled.clear()\n                self.cancelled.add(record.job_id)\n",
        Faults(cancel=2.0), {},
    ),
    # take_over gives an adopted worker back the batches it holds; without that they run twice.
    "a resumed controller leaves an adopted worker's batches to the backlog (they run twice)": (
        resume, "        if name not in adopted:\n            continue\n", "        continue\n",
        Faults(kill=0.5, backend_delay=2.0, controller_dies=0.5), {"named": True},
    ),
    # Issue #24: a resumed controller gave new work to a launch bound to its dead controller (a
    # default local worker), which left mid-job at its next heartbeat: the job ran twice.
    "a resumed controller gives new work to a launch that ends with its dead controller": (
        supervisor, "        if record.backend.ends_with_controller:\n", "        if False:\n",
        Faults(controller_dies=0.5), {"named": True, "bound": frozenset({"w2"})},
    ),
    # The bug the simulator found (named seeds 92 and 1106), fixed by e7bb59d: recovery takes a
    # batch for answered only if the launch that had it answered (or refused) it.
    "a resumed controller takes another worker's refusal for the answer of a worker's batch": (
        journal, "        if (record.seq, *owners[key]) not in found.answered:",
        "        if record.seq not in {seq for seq, _, _ in found.answered}:",
        Faults(forge=1.0, controller_dies=0.5), {"named": True},
    ),
    # The bug found as a strict xfail (seed 267), in its two halves: an answered task's record stays
    # in a named crew's store after its answer went, and a resumed controller then gives it out again.
    "a named crew deletes a revoked task's answer but keeps its record": (
        inbox, "        if self.prompt or self.keep_results:\n", "        if self.prompt:\n",
        replace(Faults.everything_named(), controller_dies=0.5), {"named": True, "seeds": 150},
    ),
    "a resumed controller keeps the records of answered tasks, whose answers go later": (
        journal, "takes it for unanswered\n            found.garbage.append(key)\n",
        "takes it for unanswered\n            pass\n",
        Faults(kill=0.5, backend_delay=2.0, launch_delay=2.0, controller_dies=1.0), {"named": True},
    ),
    # recruit(initializer=): a worker whose initializer failed must be retired, and the jobs only it
    # could run must end rather than wait for it.
    "a worker whose initializer failed is launched again": (
        supervisor, "        record.retired = True\n        record.init_error = error\n",
        "        record.init_error = error\n", Faults(), {"init_fails": frozenset({"w0"})},
    ),
    "a job that only workers whose initializer failed could run waits for ever": (
        dispatcher, "            self._fail_uninitialized()  # 0.", "            pass",
        Faults(), {"init_fails": frozenset({"w0"})},
    ),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_the_simulator_finds_a_known_bug_put_back(name, monkeypatch):
    module, old, new, faults, options = MUTANTS[name]
    mutate(monkeypatch, module, old, new)
    found = _finds(faults, **options)
    assert found is not None, f"the simulator did not find: {name}"


# ---------------------------------------------------------------------- the same model, explored
class CrewMachine(RuleBasedStateMachine):
    """Hypothesis chooses the schedule: when time passes and which fault strikes, in what order."""

    named = False

    def __init__(self) -> None:
        super().__init__()
        self.world = World(0, Faults(launch_delay=0.5), jobs=12, named=self.named)

    @rule(steps=st.integers(1, 100))
    def time_passes(self, steps: int) -> None:
        for _ in range(steps):
            self.world.step()

    @rule(which=st.integers(0, 2))
    def a_worker_dies(self, which: int) -> None:
        self.world.kill(f"w{which}")

    @rule(data=st.data())
    def a_task_record_vanishes(self, data: st.DataObject) -> None:
        keys = sorted(k for k in self.world.store.objects if "/workers/" in k)
        if keys:
            self.world.lose(data.draw(st.sampled_from(keys)))

    @rule()
    def a_record_is_forged(self) -> None:
        self.world.forge()

    @rule(down=st.booleans())
    def the_store_fails_or_mends(self, down: bool) -> None:
        self.world.store.down = down

    @rule()
    def the_user_cancels(self) -> None:
        self.world.cancel()

    @invariant()
    def invariants_hold(self) -> None:
        self.world.check()

    def teardown(self) -> None:
        self.world.store.down = False
        self.world.run(seconds=self.world.now, settle=120.0)  # every job comes back once the faults stop


class NamedCrewMachine(CrewMachine):
    """The same for a named crew, whose controller may also die at any point (and is resumed)."""

    named = True

    @rule()
    def the_controller_dies(self) -> None:
        self.world.kill_controller()


TestCrewMachine = CrewMachine.TestCase
TestCrewMachine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None, derandomize=True)
TestNamedCrewMachine = NamedCrewMachine.TestCase
TestNamedCrewMachine.settings = settings(max_examples=20, stateful_step_count=25, deadline=None, derandomize=True)


@pytest.mark.parametrize("name", ["tasks_max ignored within a batch", "a merged receipt names only the jobs received"
                                  " since the last receipt"])  # fmt: skip
def test_a_mutation_that_changes_nothing_finds_nothing(name, monkeypatch):
    """The control: putting the same text back changes no behaviour, so no invariant breaks."""
    module, old, _, faults, options = MUTANTS[name]
    mutate(monkeypatch, module, old, old)
    assert _finds(faults, seeds=20, **options) is None


@pytest.mark.parametrize("seed", range(20))
def test_a_store_gone_for_good_ends_the_crew_with_store_gone_error(seed):
    from crew_core.errors import StoreGoneError

    world = World(seed, Faults(kill=0.2, backend_delay=1.0))
    while world.now < 3 + seed % 5:
        world.step()
    world.store.gone = True
    requests = None
    for _ in range(500):  # 10 simulated seconds
        world.step()
        if world.manager.gone is not None and requests is None:
            requests = world.controller_calls
    assert isinstance(world.manager.gone, StoreGoneError)
    with pytest.raises(StoreGoneError):
        world.manager.check_store()
    assert requests is not None and world.controller_calls == requests  # it stops asking a store that is gone


# ---------------------------------------------------------------------- bugs the simulator found
def test_a_refusal_by_another_worker_is_not_the_answer_of_a_workers_batch():
    """Found by the simulator (named seeds 92 and 1106) as by a review (e7bb59d fixed it; see also
    tests/test_resume_refusal.py): a worker refused a record planted under its prefix with the
    number of another worker's batch, and a resumed controller took that for the batch's answer and
    ran its jobs again while their worker ran them."""
    for seed in (92, 1106):
        World(seed, Faults.everything_named(), named=True).run(seconds=30)


def test_a_resumed_controller_never_gives_a_worker_a_task_it_answered_already():
    """Found by the simulator (named seed 267, once a strict xfail): w1 gave back a batch (a revoke);
    the controller deleted that answer but, on S3-like stores, kept the task record until the launch
    ended; it died, and the next controller took the record without an answer for a batch w1 still
    held and gave it w1 again, which never reads a task twice: its jobs waited for ever. A named
    crew now deletes an answered task's record, and before its answer."""
    World(267, Faults.everything_named(), named=True).run(seconds=30)
