"""The simulated world: a crew's real controller, simulated workers, store, backends and clock.

One :class:`World` is one seeded schedule. Each step advances the clock, lets faults happen, runs
the backend calls that are due (started, polled and killed late, in any order), steps every live
worker, steps the controller once (``Manager.step``), collects what it delivers, and checks the
invariants. Nothing runs in another thread and nothing reads the wall clock, so a seed replays a
run exactly: a failure names the seed and the last events.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from crew_core.engine.ledger import Job
from crew_core.plugin.worker import Launch
from crew_core.results import CANCELLED, CRASH, ERROR, SUCCESS, TIMEOUT, Result
from crew_core.runner.manager import Manager, Settings
from crew_core.testing.simulator.agents import SimAgent, SimWorker
from crew_core.testing.simulator.invariants import check_ledger
from crew_core.testing.simulator.store import MemoryStore
from crew_core.wire import protocol


class InvariantError(AssertionError):
    """An invariant broke; the message names the seed that replays the run."""


@dataclass(frozen=True)
class Faults:
    """How often each fault happens, per simulated second (``refuse``: per launch)."""

    kill: float = 0.0  # a worker dies (no exit note)
    lose_record: float = 0.0  # a task record vanishes from the store before its worker read it
    forge: float = 0.0  # a forged task record is planted at another worker's outstanding task number
    replay: float = 0.0  # an answer the controller read is put back (saved by someone who can write)
    outage: float = 0.0  # the store is down for up to ``outage_seconds``
    outage_seconds: float = 3.0
    refuse: float = 0.0  # a backend refuses a launch
    backend_delay: float = 0.0  # backend calls come back up to this late
    launch_delay: float = 0.5  # a started worker runs its first step up to this late
    cancel: float = 0.0  # the user cancels a job (now and then twice)

    @classmethod
    def everything(cls) -> Faults:
        return cls(kill=0.3, lose_record=0.2, forge=0.2, replay=0.2, outage=0.05, refuse=0.1,
                   backend_delay=2.0, launch_delay=2.0, cancel=0.2)  # fmt: skip


class _Pool(Executor):
    """Backend calls, run by the world when due (late, and in any order), not in threads."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.calls: list[tuple[float, int, Callable[[], Any], Future[Any]]] = []
        self._order = itertools.count()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        due = self.world.now + self.world.rng.uniform(0, self.world.faults.backend_delay)
        self.calls.append((due, next(self._order), lambda: fn(*args, **kwargs), future))
        return future

    def run_due(self, now: float) -> None:
        due = sorted(call for call in self.calls if call[0] <= now)
        self.calls = [call for call in self.calls if call[0] > now]
        for _, _, call, future in due:
            future.set_result(call())

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.calls.clear()


@dataclass
class Tally:
    """What happened, for the invariants and for the report."""

    delivered: dict[int, Result] = field(default_factory=dict)
    runs: Counter[int] = field(default_factory=Counter)  # job id -> runs begun on a worker
    unbegun: Counter[int] = field(default_factory=Counter)  # deaths of a worker given the job alone, not begun
    kills: int = 0
    cancelled: set[int] = field(default_factory=set)  # jobs the user cancelled
    events: deque[str] = field(default_factory=lambda: deque(maxlen=40))


class World:
    """One seeded run of a crew against simulated workers, store and backends."""

    DT = 0.02  # seconds of simulated time per step

    def __init__(
        self,
        seed: int,
        faults: Faults = Faults(),
        *,
        jobs: int = 30,
        workers: int = 3,
        tasks_max: int | None = None,
        settings: Settings | None = None,
        durations: dict[int, float] | None = None,
        deadly: set[int] | frozenset[int] = frozenset(),
        big_every: int | None = 5,
    ) -> None:
        """``durations``: seconds some jobs take (the rest are drawn); ``deadly``: jobs that kill
        the worker that begins them, every time (a segfault, the OOM killer); ``big_every``: every
        so many jobs needs tag "big", which only worker w0 carries (None: no job does)."""
        self.seed = seed
        self.rng = random.Random(seed)
        self.faults = faults
        self.now = 0.0
        self.store = MemoryStore()
        self.agents: dict[str, SimAgent] = {}  # the current launch of each worker
        self.launches: dict[tuple[str, int], SimAgent] = {}  # every launch, by worker and incarnation
        self.solo: set[tuple[int, str, int]] = set()  # (job, worker, incarnation) of every one-job task
        self.stragglers: list[SimAgent] = []  # earlier launches still alive (a kill that did not land)
        self.tally = Tally()
        self.outage_until = -1.0
        self.controller_calls = 0  # store requests the controller made (workers make the rest)
        self._answers_seen: dict[str, bytes] = {}  # answers as written, for replays
        self.settings = settings or Settings(max_tries=3, heartbeat_interval=1.0, heartbeat_timeout=8.0,
                                             stop_grace=2.0, auto_restart=True, lease_timeout=300.0,
                                             capture_output=False)  # fmt: skip
        self.pool = _Pool(self)
        self.crew_id = f"sim{seed}"
        secret = random.Random(seed).randbytes(32)
        self.manager = Manager(self.crew_id, self.store, {"name": "simulated"}, self.settings, secret,
                               clock=lambda: self.now, backend_pool=self.pool, draw=self.rng.random)  # fmt: skip
        self.tasks_max = tasks_max
        for index in range(workers):
            tags = {"big"} if index == 0 else set()
            self.manager.add_worker(SimWorker(f"w{index}", self, tags=tags), (tasks_max, None))
        self.jobs = jobs
        self._sent = 0
        self._durations = {job_id: self._draw_duration(job_id) for job_id in range(1, jobs + 1)} | (durations or {})
        self.deadly = frozenset(deadly)
        self.big_every = big_every

    # ------------------------------------------------------------------ what jobs do
    def _draw_duration(self, job_id: int) -> float:
        draw = random.Random(self.seed * 1_000_003 + job_id)
        return draw.choice([0.001, 0.005, 0.02, 0.05]) if draw.random() < 0.8 else draw.uniform(0.5, 4.0)

    def duration(self, job_id: int) -> float:
        return self._durations[job_id]

    def value(self, job_id: int) -> int:
        return job_id * 7 + 3

    def timeout(self, job_id: int) -> float | None:
        return 1.0 if job_id % 11 == 0 else None  # some long ones time out on the worker

    # ------------------------------------------------------------------ the backend's side
    def start(self, worker: SimWorker, launch: Launch) -> None:
        old = self.agents.get(worker.name)
        if old is not None and old.alive:
            self.stragglers.append(old)
        starts = self.now + self.rng.uniform(0, self.faults.launch_delay)
        self.agents[worker.name] = self.launches[worker.name, launch.incarnation] = SimAgent(self, launch, starts)
        self.log(f"start {worker.name}.{launch.incarnation}")

    def refuse_launch(self) -> bool:
        return self.rng.random() < self.faults.refuse

    def kill(self, name: str, by_controller: bool = False) -> None:
        agent = self.agents.get(name)
        if agent is not None and agent.alive:
            agent.kill()
            self.tally.kills += 1
            self.log(f"{'controller kills' if by_controller else 'fault kills'} {name}.{agent.incarnation}")

    def running(self, name: str) -> bool:
        agent = self.agents.get(name)
        return agent is not None and agent.alive

    def began(self, agent: SimAgent, job_id: int) -> None:
        self.tally.runs[job_id] += 1

    def log(self, event: str) -> None:
        self.tally.events.append(f"{self.now:8.2f} {event}")

    # ------------------------------------------------------------------ the user's side
    def _send(self) -> None:
        """Send the jobs over the first seconds, a few at a time, as a user's loop would."""
        while self._sent < self.jobs and self.rng.random() < 0.3:
            self._sent += 1
            job_id = self._sent
            tags = frozenset({"big"}) if self.big_every and job_id % self.big_every == 0 else frozenset()
            job = Job(job_id, "simfn", b"", tags, "sim.job", timeout=self.timeout(job_id))
            self.manager.submit(job, b"function")

    def _cancel(self) -> None:
        pending = sorted(self.manager.ledger.jobs)
        if pending:
            job_id = self.rng.choice(pending)
            self.tally.cancelled.add(job_id)
            self.manager.cancel(job_id, None)
            if self.rng.random() < 0.3:
                self.manager.cancel(job_id, None)  # twice: the second finds it done
            self.log(f"cancel job {job_id}")

    def _collect(self) -> None:
        ledger = self.manager.ledger
        while (result := ledger.pop_result(frozenset())) is not None:
            self._deliver(result)

    def _deliver(self, result: Result) -> None:
        if result.id in self.tally.delivered:
            self.fail(f"job {result.id} was delivered twice: {self.tally.delivered[result.id]} and {result}")
        self.tally.delivered[result.id] = result
        if result.status == SUCCESS and result.value != self.value(result.id):
            self.fail(f"job {result.id} was delivered another job's value {result.value!r}: {result}")
        if result.status == CANCELLED and result.id not in self.tally.cancelled:
            self.fail(f"job {result.id} came back cancelled, but nobody cancelled it")
        self.log(f"deliver {result.id} {result.status} tries={result.tries}")

    # ------------------------------------------------------------------ faults
    def _faults(self) -> None:
        f, dt, rng = self.faults, self.DT, self.rng
        if self.now >= self.outage_until and self.store.down:
            self.store.down = False
            self.log("store back")
        if rng.random() < f.outage * dt and not self.store.down:
            self.store.down = True
            self.outage_until = self.now + rng.uniform(0.1, f.outage_seconds)
            self.log(f"store down until {self.outage_until:.2f}")
        if rng.random() < f.kill * dt:
            live = sorted(name for name, agent in self.agents.items() if agent.alive)
            if live:
                self.kill(rng.choice(live))
        if rng.random() < f.lose_record * dt:
            keys = sorted(k for k in self.store.objects if "/workers/" in k)
            if keys:
                key = rng.choice(keys)
                del self.store.objects[key]
                self.log(f"record lost {key}")
        if rng.random() < f.forge * dt:
            self._forge()
        if rng.random() < f.replay * dt and self._answers_seen:
            key, data = rng.choice(sorted(self._answers_seen.items()))
            self.store.objects[key] = data
            self.log(f"answer replayed {key}")
        if rng.random() < f.cancel * dt:
            self._cancel()

    def _forge(self) -> None:
        """Plant an unsigned task record where another worker's outstanding task number is."""
        tasks = sorted(self.manager.ledger.tasks.values(), key=lambda task: task.seq)
        live = sorted(self.agents.values(), key=lambda agent: agent.name)
        if not tasks or not live:
            return
        task, victim = self.rng.choice(tasks), self.rng.choice(live)
        seq = self.rng.choice([task.seq, self.manager.ledger.issued + 1])
        key = protocol.task_key(victim.settings.prefix, seq)
        if key not in self.store.objects:
            self.store.objects[key] = b"\0" * 40 + b"forged"
            self.log(f"forged record at {key}")

    def _remember_answers(self) -> None:
        inbox = protocol.inbox_prefix(self.crew_id)
        for key, data in self.store.objects.items():
            if key.startswith(inbox) and protocol.seq_of(key) is not None and len(self._answers_seen) < 200:
                self._answers_seen.setdefault(key, data)

    # ------------------------------------------------------------------ the run
    def step(self) -> None:
        self.now += self.DT
        self._send()
        self._faults()
        if self.faults.replay:
            self._remember_answers()
        self.pool.run_due(self.now)
        agents = [agent for agent in [*self.agents.values(), *self.stragglers] if agent.alive]
        self.rng.shuffle(agents)
        for agent in agents:
            agent.step(self.now)
        before = self.store.calls
        self.manager.step()
        self.controller_calls += self.store.calls - before
        self.solo.update((task.jobs[0].id, task.worker, task.incarnation)
                         for task in self.manager.ledger.tasks.values() if len(task.jobs) == 1)  # fmt: skip
        self._collect()
        self.check()

    def check(self) -> None:
        try:
            check_ledger(self.manager.ledger)
        except AssertionError as exc:
            self.fail(f"the ledger is inconsistent: {exc}")
        if self.tasks_max is not None:
            for agent in self.agents.values():
                if agent.jobs_run > self.tasks_max:
                    self.fail(f"{agent.name}.{agent.incarnation} ran {agent.jobs_run} jobs, past tasks_max")

    def run(self, seconds: float = 40.0, settle: float = 120.0) -> Tally:
        """Run with faults for ``seconds``, then without until every job is back (or fail)."""
        while self.now < seconds:
            self.step()
        self.faults = Faults(launch_delay=self.faults.launch_delay)
        self.store.down = False
        deadline = self.now + settle
        while len(self.tally.delivered) < self.jobs and self.now < deadline:
            self.step()
        missing = sorted(set(range(1, self.jobs + 1)) - set(self.tally.delivered))
        if missing:
            where = {job_id: self._whereabouts(job_id) for job_id in missing[:5]}
            self.fail(f"{len(missing)} job(s) never came back after {settle:.0f} s without faults: {where}")
        # A killed worker leaves no exit note, and beats are not read: the controller cannot tell
        # whether it had begun the one job of its oldest task, and charges it. Those deaths count.
        for job_id, worker, incarnation in self.solo:
            agent = self.launches.get((worker, incarnation))
            if agent is not None and agent.killed and job_id not in agent.begun:
                self.tally.unbegun[job_id] += 1
        for job_id, result in self.tally.delivered.items():
            runs, unbegun = self.tally.runs[job_id], self.tally.unbegun[job_id]
            if result.status in (SUCCESS, ERROR, TIMEOUT) and result.tries > runs + unbegun:
                self.fail(f"job {job_id} says {result.tries} tries but began {runs} time(s) ({unbegun} more deaths"
                          " of a worker that had it, not begun)")
            if result.status == CRASH and result.tries > self.settings.max_tries:
                self.fail(f"job {job_id} crashed after {result.tries} tries, past max_tries")
        return self.tally

    def _whereabouts(self, job_id: int) -> str:
        job = self.manager.ledger.jobs.get(job_id)
        if job is None:
            return "not in the ledger"
        task = job.task
        return f"{job.state.value}" + (f" in task {task.seq} of {task.worker}.{task.incarnation}" if task else "")

    def fail(self, message: str) -> None:
        trail = "\n".join(self.tally.events)
        raise InvariantError(f"seed {self.seed}, t={self.now:.2f}: {message}\nlast events:\n{trail}")

