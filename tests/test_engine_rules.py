"""The supervisor's and dispatcher's rules, one at a time, with a simulated clock (no waiting).

Each test builds a small simulated world (``crew_core.testing.simulator``) whose jobs take exactly
the time it gives them, then checks when the controller acted, in simulated seconds: a test here
never depends on how fast this machine is.
"""

from __future__ import annotations

import logging
import math

import pytest

from crew_core.engine.workers import LIFE, IllegalTransition, Life, WorkerRecord
from crew_core.plugin.worker import Worker
from crew_core.results import CRASH, SUCCESS
from crew_core.testing.simulator import World


@pytest.fixture(autouse=True)
def _quiet_crew_log(caplog):
    caplog.set_level(logging.CRITICAL, logger="crew")


def _until(world: World, done, seconds: float = 60.0) -> None:
    deadline = world.now + seconds
    while not done():
        assert world.now < deadline, "not within the simulated deadline"
        world.step()


# ---------------------------------------------------------------------- a worker's life
class _Backend(Worker):
    worker_class = "rules"

    def start(self, launch):  # never called: these tests move records by hand
        raise AssertionError

    def is_running(self):
        return False

    def kill(self):
        pass


def test_every_life_can_be_reached_and_left_and_down_is_where_it_ends():
    reachable = {Life.DOWN}
    while True:
        more = {to for state in reachable for to in LIFE[state]} - reachable
        if not more:
            break
        reachable |= more
    assert reachable == set(Life)
    assert all(Life.DOWN in LIFE[state] or state is Life.DOWN for state in Life)


@pytest.mark.parametrize(("start", "to"), [(Life.DOWN, Life.KILLING), (Life.ENDED, Life.UP), (Life.KILLING, Life.UP),
                                           (Life.LEAVING, Life.STOPPING), (Life.STARTING, Life.ENDED)])  # fmt: skip
def test_a_move_the_table_does_not_allow_raises(start, to):
    record = WorkerRecord(_Backend("w"), life=start)
    with pytest.raises(IllegalTransition, match=f"from {start.value} to {to.value}"):
        record.move(to)
    assert record.life is start


# ---------------------------------------------------------------------- supervisor rules
def test_a_worker_silent_while_holding_a_job_is_killed_after_the_heartbeat_timeout_and_the_job_runs_again():
    world = World(1, jobs=1, workers=1, durations={1: 30.0})
    _until(world, lambda: 1 in world.tally.runs)
    agent = world.agents["w0"]
    silent_since = world.now
    agent.next_beat = math.inf  # hangs: no more beats (a job holding the GIL, say)
    _until(world, lambda: not agent.alive)
    timeout = world.settings.heartbeat_timeout
    assert timeout <= world.now - silent_since <= timeout + world.settings.heartbeat_interval + 1.0
    _until(world, lambda: 1 in world.tally.delivered, seconds=120)
    result = world.tally.delivered[1]
    assert result.status == SUCCESS and result.tries == 2  # its first run ended with its worker dead


def test_a_worker_asked_to_stop_that_does_not_is_killed_after_its_stop_grace_and_its_job_goes_back_uncharged():
    world = World(1, jobs=1, workers=1, durations={1: 30.0})
    _until(world, lambda: 1 in world.tally.runs)
    agent = world.agents["w0"]
    asked = world.now
    world.manager.request_stop_named(["w0"], idle_only=False)  # it finishes its job first: 30 s
    _until(world, lambda: not agent.alive)
    grace = world.settings.stop_grace
    assert grace <= world.now - asked <= grace + 1.0
    _until(world, lambda: 1 in world.tally.delivered, seconds=120)
    assert world.tally.delivered[1].tries == 1  # stopped on purpose: not charged


def test_a_job_that_kills_every_worker_comes_back_crashed_after_max_tries_and_the_rest_are_not_charged():
    world = World(2, jobs=10, workers=2, deadly={7})  # (job 11 would time out: World.timeout)
    _until(world, lambda: len(world.tally.delivered) == 10, seconds=300)
    crashed = world.tally.delivered[7]
    assert crashed.status == CRASH and crashed.tries == world.settings.max_tries
    others = [result for job_id, result in world.tally.delivered.items() if job_id != 7]
    assert all(result.status == SUCCESS and result.tries == 1 for result in others)


def test_short_jobs_travel_in_batches_and_a_batch_that_dies_runs_again_job_by_job_uncharged():
    durations = dict.fromkeys(range(1, 41), 0.002)
    world = World(3, jobs=40, workers=1, durations=durations, deadly={30})
    world.faults = type(world.faults)(launch_delay=0.0)
    _until(world, lambda: len(world.tally.delivered) == 40, seconds=300)
    assert world.tally.delivered[30].status == CRASH
    assert world.tally.runs[30] >= world.settings.max_tries  # a death in a batch is not charged
    others = [world.tally.delivered[i] for i in range(1, 41) if i != 30]
    assert all(result.status == SUCCESS and result.tries == 1 for result in others)  # batch-mates uncharged
    assert world.manager.dispatcher.durations.of("sim.job") is not None  # it measured the jobs' length


def test_an_adopted_launch_that_ends_with_its_dead_controller_finishes_its_job_and_takes_no_new_one():
    world = World(7, jobs=2, workers=1, durations={1: 2.0, 2: 0.5}, big_every=None, named=True,
                  bound=frozenset({"w0"}))  # fmt: skip
    _until(world, lambda: 1 in world.tally.runs)
    agent = world.agents["w0"]
    world.kill_controller()
    world.resume_at = world.now + 0.05  # the next controller opens the crew before the worker notices
    agent.orphan_at = world.now + 5.0  # (at its next look at its parent, after its job has ended)
    _until(world, lambda: world.up)
    record = world.manager.records["w0"]
    assert record.adopted and record.life is Life.STOPPING and not record.accepting
    _until(world, lambda: len(world.tally.delivered) == 2, seconds=120)
    assert not agent.alive and not agent.orphaned  # it ended its job, answered, then left as asked
    assert all(result.status == SUCCESS and result.tries == 1 for result in world.tally.delivered.values())
    assert world.tally.runs == {1: 1, 2: 1} and world.agents["w0"].incarnation == 2  # job 2 on a new launch


# ---------------------------------------------------------------------- dispatcher rules
def test_a_busy_worker_gets_its_next_task_before_the_running_one_ends():
    world = World(5, jobs=30, workers=1, durations=dict.fromkeys(range(1, 31), 0.3), big_every=None)
    prefetched = []

    def watch() -> bool:
        if world.manager.ledger.queued_behind():
            prefetched.append(world.now)
        return len(world.tally.delivered) == 30

    _until(world, watch, seconds=120)
    assert prefetched, "no task was ever written behind a running one"


def test_a_task_prefetched_behind_a_job_that_runs_long_is_revoked_and_runs_on_an_idle_worker():
    durations = dict.fromkeys(range(1, 31), 0.05)
    durations[12] = 40.0  # runs far past what its kind's jobs took so far
    world = World(6, jobs=30, workers=2, durations=durations, big_every=None)
    _until(world, lambda: len(world.tally.delivered) == 29 and 12 not in world.tally.delivered, seconds=60)
    assert world.now < 20, "jobs waited behind the long one instead of going to the idle worker"
    _until(world, lambda: 12 in world.tally.delivered, seconds=60)


def test_a_worker_asked_to_stop_while_it_starts_is_stopping_once_started_not_up():
    world = World(1, jobs=0, workers=1)
    record = world.manager.records["w0"]
    record.move(Life.STARTING)
    record.incarnation = 1
    supervisor = world.manager.supervisor
    assert supervisor.request_stop(record, world.now)
    assert record.life is Life.STARTING  # its Stop is written: the launch reads it first
    supervisor.launched([(record, 1)], None, world.now)
    assert record.life is Life.STOPPING and not record.accepting


def test_the_engine_gives_orders_for_a_launch_as_it_was_even_once_its_worker_is_launched_again():
    """The engine leaves what must happen outside its state as orders (``engine/orders.py``) that
    the runner carries out later: a cleanup ordered for an ended launch must not reach the next."""
    from crew_core.engine.orders import Cleanup, RosterChanged, WriteControl
    from crew_core.wire import protocol

    world = World(1, jobs=1, workers=1)
    m = world.manager
    _until(world, lambda: 1 in world.tally.delivered)  # its worker is up, and idle
    record = m.records["w0"]
    old = record.prefix
    assert m.supervisor.request_stop(record, world.now)
    m.supervisor.down(record, world.now)
    m.supervisor.prepare([record], world.now)  # launched again before the orders are carried out
    assert record.prefix != old
    orders = m.orders.take()
    assert [type(order) for order in orders] == [WriteControl, RosterChanged, Cleanup]
    stop, cleanup = orders[0], orders[2]
    assert isinstance(stop.control, protocol.Stop) and stop.place.prefix == old
    assert cleanup.place.prefix == old and cleanup.place.incarnation == record.incarnation - 1
