"""Simulated workers: the real task feed (``crew_core.agent.feed``) around simulated job runs.

A :class:`SimAgent` is one launch of a worker. It reads its task records with the worker's own
:class:`~crew_core.agent.feed.TaskFeed` (so forged records, stops, revokes and cancels are handled
by the code real workers run) and answers, beats and leaves as ``crew_core.agent.runtime`` does;
only running a job is simulated: it takes the time the world gives it and returns a value the world
can check. :class:`SimWorker` is the backend class the controller starts them through.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from crew_core.agent.feed import TaskFeed
from crew_core.durable.journal import EPOCH_SPAN
from crew_core.errors import JobCancelledError, JobTimeoutError, StoreError, WorkerLaunchError
from crew_core.plugin.launches import SECRET_ENV
from crew_core.plugin.worker import BackendJob, Launch, Worker
from crew_core.results import CANCELLED, SUCCESS, TIMEOUT
from crew_core.wire import protocol
from crew_core.wire.protocol import Batch, ExitNote, Heartbeat, Outcome, ResultBatch, WorkerSettings
from crew_core.wire.serialize import dump_outcome
from crew_core.wire.signing import LaunchKeys, Sealed

if TYPE_CHECKING:
    from crew_core.testing.simulator.world import World


#: The initializer digest simulated launches are given (``World(init_fails=...)``): never read.
SIM_INITIALIZER = "5ed0" * 8


def _direct(method: Callable[..., Any], *args: Any) -> Any:
    return method(*args)


class _Feed(TaskFeed):
    """The real task feed, noting the batches its worker is done with (it never reads them again)."""

    def __init__(self, sealed: Sealed, settings: WorkerSettings) -> None:
        super().__init__(sealed, settings, _direct)
        self.finished: set[int] = set()  # task numbers answered (run, or handed back) or refused

    def answer(self, result: ResultBatch, ring: bool = True) -> None:
        super().answer(result, ring)
        if not result.part:
            self.finished.add(result.seq)

    def _refuse(self, key: str) -> None:
        super()._refuse(key)
        seq = protocol.seq_of(key)
        if seq is not None:
            self.finished.add(seq)


@dataclass
class _Running:
    batch: Batch
    index: int  # the call that runs
    ends: float  # when it ends
    outcomes: list[tuple[int, bytes]]


class SimAgent:
    """One launch of a simulated worker, stepped by the world."""

    def __init__(self, world: World, launch: Launch, starts: float, controller: int, bound: bool = False) -> None:
        """``controller``: the epoch of the controller that started it, whose task numbers begin at
        ``epoch * EPOCH_SPAN``: one below was written by an earlier controller, for another launch.
        ``bound``: it ends with that controller (``Worker.ends_with_controller``), as a local worker
        watching its parent process does."""
        self.world = world
        self.controller = controller
        self.first_task = controller * EPOCH_SPAN
        self.bound = bound
        self.orphan_at = math.inf  # bound, its controller died: it notices then (its next heartbeat)
        self.orphaned = False  # it left because its controller died, stopping the job it ran
        self.label = launch.label  # how its backend finds it (Worker.find)
        self.settings = WorkerSettings.from_args(launch.args)
        s = self.settings
        keys = LaunchKeys(s.name, s.incarnation, bytes.fromhex(launch.secrets[SECRET_ENV]), bytes.fromhex(s.task_key),
                          s.tasks_mac)  # fmt: skip
        self.sealed = Sealed(world.store, keys)
        self.feed = _Feed(self.sealed, self.settings)
        self.starts = starts  # queued on its backend until then
        self.alive = True
        self.killed = False
        self.unsaid = False  # it left, but its exit note was never written
        self.beats = 0
        self.next_beat = starts
        self.beat_at = starts  # when its last beat was written
        self.running: _Running | None = None
        self.jobs_run = 0
        self.unsent: list[ResultBatch] = []  # answers whose write failed: written again next step
        self.begun: set[int] = set()  # jobs it began
        self.initialized = False  # its initializer ran (World(init_fails=...) gives every launch one)
        self.init_failed = False  # its initializer failed: it ran nothing and left saying so

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def incarnation(self) -> int:
        return self.settings.incarnation

    def step(self, now: float) -> None:
        if not self.alive or now < self.starts:
            return
        try:
            self._step(now)
        except StoreError:
            pass  # a real worker rides out an outage by retrying: this one tries again next step

    def _send(self) -> None:
        """Write the answers not written yet (a real worker retries a write through an outage)."""
        while self.unsent:
            self.feed.answer(self.unsent[0])
            self.unsent.pop(0)

    def _step(self, now: float) -> None:
        s = self.settings
        self._send()
        if now >= self.orphan_at:  # as the runtime's heartbeat thread does (``WorkerLoop._orphan``)
            self.orphaned = True
            self.running = None  # stopped where it was: no answer
            self.leave("orphaned")
            return
        if now >= self.next_beat:
            self.beats += 1
            record = Heartbeat(self.beats, 0, "simulated", self.feed.last_started)
            self.sealed.put(protocol.beat_key(s.crew, s.name, s.incarnation, self.beats), protocol.encode_json(record))
            self.beat_at, self.next_beat = now, now + s.heartbeat
            if self.running is not None:
                self.feed.read()  # prefetched batches, revokes and cancels, while a job runs
        if s.initializer and not self.initialized:  # after its first beat, as the runtime's initializer runs
            if self.name in self.world.init_fails:
                self.init_failed = True
                self.leave(protocol.INIT_FAILED, "RuntimeError: a simulated initializer failed")
                return
            self.initialized = True
        if self.running is not None:
            self._run(now)
            return
        if s.tasks_max is not None and self.jobs_run >= s.tasks_max:
            self.leave("tasks_max")
            return
        batch = self.feed.pop()
        if batch is None:
            if self.feed.stopped:
                self.leave("stopped")
            else:
                self.feed.read()
            return
        if not batch.calls:
            self.unsent.append(ResultBatch(batch.seq, s.name, s.incarnation, ()))
            self._send()
            return
        self.running = _Running(batch, 0, 0.0, [])
        self._begin(batch.calls[0].job_id, now)
        if self.alive:  # a deadly job ends it as it begins
            self._run(now)

    def _begin(self, job_id: int, now: float) -> None:
        assert self.running is not None
        self.running.ends = now + self.world.duration(job_id)
        self.begun.add(job_id)
        self.world.began(self, job_id, self.running.batch.seq)
        if job_id in self.world.deadly:
            self.world.kill(self.name, self.incarnation)

    def _run(self, now: float) -> None:
        """End the calls of the running batch that are due (a cancel or a timeout ends one early)."""
        s = self.settings
        running = self.running
        assert running is not None
        while True:
            call = running.batch.calls[running.index]
            started = running.ends - self.world.duration(call.job_id)
            if call.job_id in self.feed.cancelled:
                outcome = Outcome(CANCELLED, error=JobCancelledError(f"job {call.job_id} was cancelled"))
            elif call.timeout is not None and now >= started + call.timeout:
                outcome = Outcome(TIMEOUT, error=JobTimeoutError(f"job {call.job_id} timed out"), seconds=call.timeout)
            elif now >= running.ends:
                seconds = self.world.duration(call.job_id)
                outcome = Outcome(SUCCESS, value=self.world.value(call.job_id), seconds=seconds)
            else:
                return
            running.outcomes.append((call.job_id, dump_outcome(outcome)))
            self.jobs_run += 1
            running.index += 1
            if running.index == len(running.batch.calls):
                self.running = None
                self.unsent.append(ResultBatch(running.batch.seq, s.name, s.incarnation, tuple(running.outcomes)))
                self._send()
                return
            self._begin(running.batch.calls[running.index].job_id, now)
            if not self.alive:
                return

    def leave(self, reason: str, error: str | None = None) -> None:
        """Write the exit note and end, as a worker leaving does."""
        s = self.settings
        self.alive = False
        note = ExitNote(reason, self.feed.last_started, error)
        try:
            self.sealed.put(protocol.exit_key(s.crew, s.name, s.incarnation), protocol.encode_json(note))
        except StoreError:  # as a real worker's last write may fail: its backend says it ended
            self.unsaid = True  # to the controller, as good as dead with what it was given

    def kill(self) -> None:
        """Killed (by its backend, or a fault): no exit note, no answer to what it ran."""
        self.alive = False
        self.killed = True
        self.running = None


class SimWorker(Worker):
    """The backend the controller starts simulated workers through; the world decides the rest.

    Like a real backend object (a local worker's process handle), it knows only the launches it
    started itself: a controller that resumed a named crew cannot ask it about an adopted worker,
    and finds that one by its crew's label instead (``place``, ``find``, ``end``).
    """

    worker_class = "simulated"
    status_interval: ClassVar[float] = 1.0

    def __init__(self, name: str, world: World, bound: bool = False, **options: Any) -> None:
        """``bound``: its launches end with the controller that started them (a roster option)."""
        super().__init__(name, **options)
        self.world = world
        self.bound = bound
        self.started: list[int] = []  # incarnations started through this object

    @property
    def ends_with_controller(self) -> bool:
        return self.bound

    @classmethod
    def start_many(cls, launches: list[tuple[Any, Launch]]) -> None:
        world = launches[0][0].world
        if world.refuse_launch():
            names = ", ".join(worker.name for worker, _ in launches)
            raise WorkerLaunchError(f"simulated backend refused to start {names}")
        for worker, launch in launches:
            worker.start(launch)

    def start(self, launch: Launch) -> None:
        self.started.append(launch.incarnation)
        self.world.start(self, launch)

    def is_running(self) -> bool:
        return bool(self.started) and self.world.running(self.name, self.started[-1])

    def kill(self) -> None:
        if self.started:
            self.world.kill(self.name, self.started[-1], by_controller=True)

    @classmethod
    def running(cls, workers: list[Any]) -> dict[str, bool]:
        return {worker.name: worker.is_running() for worker in workers}

    def place(self) -> dict[str, Any] | None:
        return {"backend": "simulated"}

    @classmethod
    def find(cls, label: str, place: Mapping[str, Any], via: Worker | None = None) -> list[BackendJob]:
        assert isinstance(via, SimWorker)
        return [BackendJob(cls.worker_class, label, f"{agent.name}.{agent.incarnation}", "RUNNING", agent.name,
                           agent.incarnation, dict(place))
                for agent in via.world.launches.values() if agent.alive and agent.label == label]  # fmt: skip

    @classmethod
    def end(cls, jobs: list[BackendJob], via: Worker | None = None) -> None:
        assert isinstance(via, SimWorker)
        for job in jobs:
            via.world.kill(job.worker, job.incarnation, by_controller=True)
