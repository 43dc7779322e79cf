"""The simulated world: a crew's real controller, simulated workers, store, backends and clock.

One :class:`World` is one seeded schedule. Each step advances the clock, lets faults happen, runs
the backend calls that are due (started, polled and killed late, in any order), steps every live
worker, steps the controller once (``Manager.step``), collects what it delivers, and checks the
invariants. Nothing runs in another thread and nothing reads the wall clock, so a seed replays a
run exactly: a failure names the seed and the last events.

``named=True`` makes the crew durable, as ``Crew(name=...)`` does (``named.py``), and adds the
fault ``controller_dies``: the controller's process dies, at one of its store requests or between
two steps, with nothing written on its way out; the workers live on, and after a moment the next
controller opens the crew from what the store holds and adopts them.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from crew_core.durable.journal import EPOCH_SPAN
from crew_core.engine.ledger import Job, Ledger, Task
from crew_core.errors import WorkerInitError
from crew_core.plugin.worker import Launch
from crew_core.results import CANCELLED, SUCCESS, Result
from crew_core.runner.manager import Manager, Settings
from crew_core.testing.simulator.agents import SIM_INITIALIZER, SimAgent, SimWorker
from crew_core.testing.simulator.invariants import KNOWN_BUGS, Tally, check_ledger, check_runs
from crew_core.testing.simulator.named import Front, open_named, resume_named
from crew_core.testing.simulator.store import ControllerCrashed, ControllerLink, MemoryStore
from crew_core.wire import protocol


class InvariantError(AssertionError):
    """An invariant broke; the message names the seed that replays the run."""


@dataclass(frozen=True)
class Faults:
    """How often each fault happens, per simulated second (``refuse``: per launch)."""

    kill: float = 0.0  # a worker dies (no exit note)
    lose_record: float = 0.0  # a task record vanishes from the store before its worker read it
    forge: float = 0.0  # a forged task record is planted at another worker's outstanding task number
    replay: float = 0.0  # an answer or journal object is put back as written (saved by someone who can write)
    outage: float = 0.0  # the store is down for up to ``outage_seconds``
    outage_seconds: float = 3.0
    refuse: float = 0.0  # a backend refuses a launch
    backend_delay: float = 0.0  # backend calls come back up to this late
    launch_delay: float = 0.5  # a started worker runs its first step up to this late
    cancel: float = 0.0  # the user cancels a job (now and then twice, or with every job of a tag)
    controller_dies: float = 0.0  # a named crew's controller dies (once a job was sent) and the next resumes

    @classmethod
    def everything(cls) -> Faults:
        return cls(kill=0.3, lose_record=0.2, forge=0.2, replay=0.2, outage=0.05, refuse=0.1,
                   backend_delay=2.0, launch_delay=2.0, cancel=0.2)  # fmt: skip

    @classmethod
    def everything_named(cls) -> Faults:
        """Every fault, and controllers that die (for ``World(named=True)``)."""
        return replace(cls.everything(), controller_dies=0.1)


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
        if not self.calls:
            return
        due = sorted(call for call in self.calls if call[0] <= now)
        self.calls = [call for call in self.calls if call[0] > now]
        for _, _, call, future in due:
            future.set_result(call())

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.calls.clear()


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
        named: bool = False,
        bound: frozenset[str] = frozenset(),
        init_fails: frozenset[str] = frozenset(),
    ) -> None:
        """``durations``: seconds some jobs take (the rest are drawn); ``deadly``: jobs that kill
        the worker that begins them, every time (a segfault, the OOM killer); ``big_every``: every
        so many jobs needs tag "big", which only worker w0 carries (None: no job does); ``named``:
        a named crew, whose controllers may die (``Faults.controller_dies``) and are resumed;
        ``bound``: workers (of a named crew) whose launches end with the controller that started
        them, as default local workers do (``Worker.ends_with_controller``); ``init_fails``: workers
        whose initializer fails at every launch (every worker then has one: ``recruit(initializer=)``)."""
        self.seed = seed
        self.rng = random.Random(seed)
        self.faults = faults
        self.now = 0.0
        self.store = MemoryStore()
        self.agents: dict[str, SimAgent] = {}  # the current launch of each worker
        self.launches: dict[tuple[str, int], SimAgent] = {}  # every launch, by worker and incarnation
        self.solo: set[tuple[int, str, int]] = set()  # (job, worker, incarnation) of every one-job task
        self.given: set[tuple[int, str, int, int]] = set()  # (job, worker, incarnation, task) of every task
        self.stragglers: list[SimAgent] = []  # earlier launches still alive (a kill that did not land)
        self.tally = Tally()
        self.outage_until = -1.0
        self.controller_calls = 0  # store requests the controller made (workers make the rest)
        self._answers_seen: dict[str, bytes] = {}  # answers and journal objects as written, for replays
        self.settings = settings or Settings(max_tries=3, heartbeat_interval=1.0, heartbeat_timeout=8.0,
                                             stop_grace=2.0, auto_restart=True, lease_timeout=300.0,
                                             capture_output=False)  # fmt: skip
        self.pool = _Pool(self)
        self.crew_id = f"sim{seed}"
        self.secret = random.Random(seed).randbytes(32)
        self.tasks_max = tasks_max
        self.jobs = jobs
        self.sent = 0  # jobs 1..sent were sent (send returned)
        self._durations = {job_id: self._draw_duration(job_id) for job_id in range(1, jobs + 1)} | (durations or {})
        self.deadly = frozenset(deadly)
        self.big_every = big_every
        self.named = named
        self.init_fails = init_fails
        self.initializer = SIM_INITIALIZER if init_fails else ""  # the digest every launch is given
        self.up = True  # the controller is alive
        self.resume_at = math.inf  # when the next controller opens the crew, while none is up
        self._last_outage = -math.inf
        self._tampered: list[tuple[float, str]] = []  # (when, key) of task records lost, or forged
        self._carried: dict[int, list[int]] = {}  # task number -> its jobs
        self._landed = False  # the journal write of the send under way reached the store
        self._handed_at: list[float] = []  # when each of ``tally.handouts`` was handed out
        self._broken: list[str] = []  # invariants found broken in a call from the controller
        self._inbox = protocol.inbox_prefix(self.crew_id)
        self._journal = protocol.journal_prefix(self.crew_id)
        if faults.replay:
            self.store.written = self._remember_answer
        roster = [(f"w{index}", frozenset({"big"}) if index == 0 else frozenset(), f"w{index}" in bound)
                  for index in range(workers)]  # fmt: skip
        self.link: ControllerLink | None = None
        self.front: Front
        if named:
            self.link = ControllerLink(self.store, self.rng, self._written)
            self.front = open_named(self, self.link, roster)
        else:
            manager = Manager(self.crew_id, self.store, {"name": "simulated"}, self.settings, self.secret,
                              clock=lambda: self.now, backend_pool=self.pool, draw=self.rng.random)  # fmt: skip
            self.watch(manager)
            self.front = Front(manager)
            for name, tags, _ in roster:
                manager.add_worker(SimWorker(name, self, tags=tags), (tasks_max, None), self.initializer)

    @property
    def manager(self) -> Manager:
        """The current controller (the last one, while none is up)."""
        return self.front.manager

    def watch(self, manager: Manager) -> None:
        """See every task the controller makes, even one it closes in the step that made it."""
        ledger = manager.ledger

        def assign(worker: str, incarnation: int, jobs: list[Job], now: float, seq: int | None = None) -> Task:
            task = Ledger.assign(ledger, worker, incarnation, jobs, now, seq)  # the class's: mutants patch it
            self._given(manager, task, restored=seq is not None)
            return task

        ledger.assign = assign  # type: ignore[method-assign]

    def _given(self, manager: Manager, task: Task, restored: bool) -> None:
        self.given.update((job.id, task.worker, task.incarnation, task.seq) for job in task.jobs)
        if len(task.jobs) == 1:
            self.solo.add((task.jobs[0].id, task.worker, task.incarnation))
        self._carried.setdefault(task.seq, [job.id for job in task.jobs])
        agent = self.launches.get((task.worker, task.incarnation))
        if not restored and agent is not None and agent.bound and agent.controller != manager.epoch:
            self._broken.append(f"controller {manager.epoch} gave task {task.seq} to {task.worker}.{task.incarnation},"
                                f" which ends with controller {agent.controller}, dead: it leaves, maybe mid-job")
        record = manager.records.get(task.worker)
        if not restored and record is not None and record.down_pending:  # its first run would be charged
            self._broken.append(f"task {task.seq} went to {task.worker}.{task.incarnation}, which its backend"
                                " had said had ended")

    def known_bug(self, name: str, what: str) -> None:
        self.tally.known[name] += 1
        self.log(f"known bug ({KNOWN_BUGS[name].partition(':')[0]}): {what}")

    # ------------------------------------------------------------------ what jobs do
    def _draw_duration(self, job_id: int) -> float:
        draw = random.Random(self.seed * 1_000_003 + job_id)
        if draw.random() < 0.8:
            return draw.choice([0.001, 0.005, 0.02, 0.05])
        # Some run longer than a cancel's allowance: a worker that does not stop one is killed.
        return draw.uniform(0.5, 4.0) if draw.random() < 0.6 else draw.uniform(4.0, 12.0)

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
        agent = SimAgent(self, launch, starts, controller=self.manager.epoch, bound=worker.bound)
        self.agents[worker.name] = self.launches[worker.name, launch.incarnation] = agent
        self.log(f"start {worker.name}.{launch.incarnation}")

    def refuse_launch(self) -> bool:
        return self.rng.random() < self.faults.refuse

    def kill(self, name: str, incarnation: int | None = None, by_controller: bool = False) -> None:
        """Kill a worker's launch (its current one by default)."""
        agent = self.agents.get(name) if incarnation is None else self.launches.get((name, incarnation))
        if agent is None or not agent.alive:
            return
        self.log(f"{'controller kills' if by_controller else 'fault kills'} {name}.{agent.incarnation}")
        if by_controller:
            self._check_kill(agent)
        agent.kill()
        self.tally.kills += 1

    def _check_kill(self, agent: SimAgent) -> None:
        """The controller kills only a worker that went silent, did not stop a job in time, or was
        asked to stop and did not (it finishes its job first): a simulated one beats and stops its
        jobs on time, unless the store was down, or one of its records was lost or forged, within
        the time the controller gives it (or a test made it hang)."""
        since = self.now - self.patience()
        if self.now < agent.starts or self._last_outage >= since:
            return
        if agent.feed.stopped or self.now - agent.beat_at >= self.settings.heartbeat_timeout:
            return
        if any(when >= since and key.startswith(agent.settings.prefix) for when, key in self._tampered):
            return  # a record it never read (or refused: a forged one where the next would go)
        # Raised by check(): an exception here would go to the controller, which logs a failed kill.
        self._broken.append(f"the controller killed {agent.name}.{agent.incarnation}, which beat and stopped its"
                            f" jobs on time (no store outage, lost or forged record in the last {self.patience():g} s)")

    def patience(self) -> float:
        """How long after a store outage the controller may still give a live worker up for dead:
        its heartbeat timeout, and the time it gives a worker to stop a job, and a poll."""
        s = self.settings
        return s.heartbeat_timeout + s.heartbeat_interval + s.stop_grace + self.store.poll_interval[1]

    def running(self, name: str, incarnation: int) -> bool:
        agent = self.launches.get((name, incarnation))
        return agent is not None and agent.alive

    def began(self, agent: SimAgent, job_id: int, task: int) -> None:
        if agent.name in self.init_fails:
            self.fail(f"{agent.name}.{agent.incarnation}, whose initializer failed, runs job {job_id}")
        if task < agent.first_task:  # written by an earlier controller, for an earlier launch
            self.fail(f"{agent.name}.{agent.incarnation} (launched by controller {agent.controller}) runs job"
                      f" {job_id} of task {task}, which an earlier controller wrote for an earlier launch")  # fmt: skip
        if self.tally.runs[job_id] and self.now - self._last_outage <= self.patience():
            self.tally.excused[job_id] += 1  # a worker was given up for dead in an outage
        self.tally.runs[job_id] += 1

    def log(self, event: str) -> None:
        self.tally.events.append(f"{self.now:8.2f} {event}")

    # ------------------------------------------------------------------ the user's side
    def _job(self, job_id: int) -> Job:
        tags = frozenset({"big"}) if self.big_every and job_id % self.big_every == 0 else frozenset()
        return Job(job_id, "simfn", b"", tags, "sim.job", timeout=self.timeout(job_id))

    def _send(self) -> None:
        """Send the jobs over the first seconds, a few at a time, as a user's loop would."""
        while self.sent < self.jobs and self.rng.random() < 0.3:
            self._landed = False
            try:
                if not self.front.send(self._job(self.sent + 1)):
                    return  # not accepted (its journal write failed): sent again later
            except ControllerCrashed:
                if self._landed:  # journaled as the controller died: the next one has it
                    self.sent += 1
                raise
            self.sent += 1

    def cancel(self) -> None:
        """The user cancels a job: now and then twice, or with every job of a tag."""
        if self.up:
            self._as_controller(self._cancel)

    def _cancel(self) -> None:
        pending = sorted(self.manager.ledger.jobs)
        if pending:
            job_id = self.rng.choice(pending)
            self.tally.cancelled.add(job_id)  # before the call: its result may come out of it
            self.log(f"cancel job {job_id}")
            self.front.cancel(job_id, None)
            draw = self.rng.random()
            if draw < 0.3:
                self.front.cancel(job_id, None)  # twice: the second finds it done
            elif draw >= 0.8:  # and every job tagged "big" (w0's), or every job in flight: several
                tags = frozenset({"big"}) if draw < 0.95 else frozenset()  # cancels reach one worker at once
                self.tally.cancelled.update(job.id for job in self.manager.ledger.jobs.values() if tags <= job.tags)
                self.log(f"cancel every job tagged {sorted(tags)}")
                self.front.cancel(None, tags)

    def _deliver(self, result: Result) -> None:
        if result.id in self.tally.delivered:
            if result.id not in self.tally.repeatable:
                again = " (it was not handed out after the last receipt before a controller died)" if self.named else ""
                self.fail(f"job {result.id} was delivered twice{again}: {self.tally.delivered[result.id]} and {result}")
            self.tally.repeatable.discard(result.id)
        self.tally.delivered[result.id] = result
        if result.status == SUCCESS and result.value != self.value(result.id):
            self.fail(f"job {result.id} was delivered another job's value {result.value!r}: {result}")
        if result.status == CANCELLED and result.id not in self.tally.cancelled:
            self.fail(f"job {result.id} came back cancelled, but nobody cancelled it")
        carriers = {name for name, record in self.manager.records.items() if record.tags >= result.tags}
        if isinstance(result.error, WorkerInitError) and not carriers <= self.init_fails:
            self.fail(f"job {result.id} ended with a WorkerInitError, but {sorted(carriers - self.init_fails)}"
                      f" could run it: {result}")  # fmt: skip
        if result.status == SUCCESS and carriers <= self.init_fails:
            self.fail(f"job {result.id} succeeded, but only workers whose initializer fails could run it")
        if self.named:
            self.tally.handouts.append(result.id)
            self._handed_at.append(self.now)
        self.log(f"deliver {result.id} {result.status} tries={result.tries}")

    def _written(self, key: str) -> None:
        """A controller's put reached the store (named crews: receipts and the journal are watched)."""
        if key.startswith(protocol.receipt_prefix(self.crew_id)):
            self.tally.receipted = len(self.tally.handouts)  # they are in it: the user has them for good
        elif key.startswith(protocol.journal_prefix(self.crew_id)):
            self._landed = True

    # ------------------------------------------------------------------ a named crew's controllers
    def _as_controller(self, call: Callable[[], object]) -> None:
        """Run a call into the controller (from its loop or from the user's thread); it may die in it."""
        try:
            call()
        except ControllerCrashed as exc:
            self._died(str(exc))

    def kill_controller(self) -> None:
        """The controller's process dies now (once a job was sent: before, the crew starts afresh)."""
        if self.up and self.sent:
            self._died("the controller was killed")

    def _doom(self) -> None:
        """The controller's process will die: now, at one of its next writes, or in its next delete."""
        if not self.up or self.sent == 0:  # before the first send returned it would start afresh
            return
        assert self.link is not None
        draw = self.rng.random()
        if draw < 0.4:
            self._died("the controller died between two steps")
        elif not self.link.doomed:
            self.link.doom(self.rng.randint(1, 40) if draw < 0.8 else 1, deletes=draw >= 0.8)

    def _died(self, how: str) -> None:
        """No close, nothing written on its way out: its memory, thread and backend calls are gone."""
        assert self.link is not None
        self.link.dead = True
        self.up = False
        # The guarantee (docs/guide/named-crews.md, "What resuming does"): only the results handed
        # out since the last receipt was written can come again; where receive() writes it (a store
        # of microsecond requests, up all the while), only the last one handed out.
        since = self.tally.handouts[self.tally.receipted :]
        if len(since) > 1 and self._last_outage < self._handed_at[self.tally.receipted]:
            self.fail(f"the controller died with {len(since)} results handed out since the last receipt, the store"
                      f" up all the while: a next one hands out all of {since} again, not just the last")
        self.tally.repeatable.update(since)
        self.pool.shutdown()
        self.pool = _Pool(self)  # the next controller's
        for agent in self.launches.values():  # its bound launches notice at their next heartbeat
            if agent.alive and agent.bound and agent.controller == self.manager.epoch:
                agent.orphan_at = min(agent.orphan_at, self.now + self.rng.uniform(0, self.settings.heartbeat_interval))
        self.resume_at = self.now + self.rng.uniform(0.1, 3.0)
        self.log(f"{how} (controller {self.manager.epoch})")

    def _resume(self) -> None:
        self.link = ControllerLink(self.store, self.rng, self._written)
        try:
            self.front = resume_named(self, self.link)
        except Exception as exc:
            self.fail(f"the next controller could not resume the crew: {exc!r}")
        self.up = True
        self.resume_at = math.inf
        self.tally.controllers += 1
        adopted = sorted(record.name for record in self.manager.records.values() if record.adopted)
        self.tally.adopted += len(adopted)
        self.log(f"controller {self.manager.epoch} resumes the crew, adopting {', '.join(adopted) or 'nobody'}")
        for task in self.manager.ledger.tasks.values():
            agent = self.launches.get((task.worker, task.incarnation))
            if agent is not None and task.seq in agent.feed.finished:  # it never reads that task again
                self.fail(f"the resumed controller gives {agent.name}.{agent.incarnation} task {task.seq} again,"
                          " which it answered already: its jobs would wait for ever")  # fmt: skip

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
        if self.store.down:
            self._last_outage = self.now
        if rng.random() < f.kill * dt:
            live = sorted(name for name, agent in self.agents.items() if agent.alive)
            if live:
                self.kill(rng.choice(live))
        if rng.random() < f.lose_record * dt:
            keys = sorted(k for k in self.store.objects if "/workers/" in k)
            if keys:
                self.lose(rng.choice(keys))
        if rng.random() < f.forge * dt:
            self.forge()
        if rng.random() < f.replay * dt and self._answers_seen:
            key, data = rng.choice(sorted(self._answers_seen.items()))
            self.store.objects[key] = data
            self.log(f"replayed {key}")
        if rng.random() < f.cancel * dt:
            self.cancel()
        if self.named and rng.random() < f.controller_dies * dt:
            self._doom()

    def lose(self, key: str) -> None:
        """A task record vanishes from the store (deleted by someone else, lost by the store)."""
        del self.store.objects[key]
        self._tampered.append((self.now, key))
        self.tally.lost.update(self._carried.get(protocol.seq_of(key) or 0, ()))
        self.log(f"record lost {key}")

    def forge(self) -> None:
        """Plant an unsigned task record where another worker's outstanding task number is."""
        if not self.up:
            return
        tasks = sorted(self.manager.ledger.tasks.values(), key=lambda task: task.seq)
        live = sorted(self.agents.values(), key=lambda agent: agent.name)
        if not tasks or not live:
            return
        task, victim = self.rng.choice(tasks), self.rng.choice(live)
        seq = self.rng.choice([task.seq, self.manager.ledger.issued + 1])
        key = protocol.task_key(victim.settings.prefix, seq)
        # Not where a record was lost: one planted there hides the loss from the controller's check
        # that a record is still there (a denial of service, as the specification allows: §4.2).
        if key not in self.store.objects and not any(key == lost for _, lost in self._tampered):
            self.store.objects[key] = b"\0" * 40 + b"forged"
            self._tampered.append((self.now, key))
            self.log(f"forged record at {key}")

    def _remember_answer(self, key: str) -> None:
        """An answer as written (by its worker), or a named crew's journal object, for replays: put
        back after the user received its jobs, neither may deliver them again, after any crash."""
        answer = key.startswith(self._inbox) and protocol.seq_of(key) is not None
        if len(self._answers_seen) < 200 and (answer or key.startswith(self._journal)):
            self._answers_seen.setdefault(key, self.store.objects[key])

    # ------------------------------------------------------------------ the run
    def step(self) -> None:
        self.now += self.DT
        if self.up:
            self._as_controller(self._send)
        self._faults()
        if self.up:
            self._as_controller(lambda: self.pool.run_due(self.now))
        agents = [agent for agent in [*self.agents.values(), *self.stragglers] if agent.alive]
        self.rng.shuffle(agents)
        for agent in agents:
            agent.step(self.now)
        if self.up:
            before = self.store.calls
            self._as_controller(self.manager.step)
            self.controller_calls += self.store.calls - before
        if self.up:
            self._as_controller(lambda: self.front.receive(self._deliver))
        elif self.now >= self.resume_at and not self.store.down:
            self._resume()
        self.check()

    def check(self) -> None:
        if self._broken:
            self.fail(self._broken[0])
        if self.up:  # a dead controller's memory may be half way through a change: nobody reads it
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
        if self.link is not None and self.link.doomed and not self.link.dead:
            self.link.doom(None)  # the faults are over
        deadline = self.now + settle
        while len(self.tally.delivered) < self.jobs and self.now < deadline:
            self.step()
        missing = sorted(set(range(1, self.jobs + 1)) - set(self.tally.delivered))
        if missing:
            where = {job_id: self._whereabouts(job_id) for job_id in missing[:5]}
            if not sum(self.tally.known.values()):
                self.fail(f"{len(missing)} job(s) never came back after {settle:.0f} s without faults: {where}")
            self.log(f"{len(missing)} job(s) never came back, after a known bug: {where}")
        # A killed worker leaves no exit note, and beats are not read: the controller cannot tell
        # whether it had begun the one job of its oldest task, and charges it. Those deaths count.
        for job_id, worker, incarnation in self.solo:
            agent = self.launches.get((worker, incarnation))
            if agent is not None and agent.killed and job_id not in agent.begun:
                self.tally.unbegun[job_id] += 1
        # So does every launch that ended without a word (killed, or its exit note lost), or with its
        # controller (orphaned), before it answered a task it was given: it may be charged the
        # oldest such job, begun or not, and the job it ran when orphaned runs again.
        for job_id, worker, incarnation, seq in self.given:
            agent = self.launches.get((worker, incarnation))
            if agent is None or not (agent.killed or agent.unsaid or agent.orphaned):
                continue
            if agent.orphaned and agent.first_task + EPOCH_SPAN <= seq:
                continue  # a later controller's task: its rerun is not excused (it should not have had it)
            if seq not in agent.feed.finished:
                self.tally.deaths[job_id] += 1
        check_runs(self.tally, self.settings.max_tries, self.fail)
        for name in self.init_fails:  # retired once its controller heard: not launched in a loop
            heard = [agent for (worker, _), agent in self.launches.items()
                     if worker == name and agent.init_failed and not agent.unsaid]  # fmt: skip
            if len(heard) > self.tally.controllers:
                self.fail(f"{name} was launched {len(heard)} times after its initializer failed and said so,"
                          f" under {self.tally.controllers} controller(s)")  # fmt: skip
        return self.tally

    def _whereabouts(self, job_id: int) -> str:
        job = self.manager.ledger.jobs.get(job_id)
        if job is None:
            return "not in the ledger"
        task = job.task
        return f"{job.state.value}" + (f" in task {task.seq} of {task.worker}.{task.incarnation}" if task else "")

    def fail(self, message: str) -> NoReturn:
        trail = "\n".join(self.tally.events)
        raise InvariantError(f"seed {self.seed}, t={self.now:.2f}: {message}\nlast events:\n{trail}")

