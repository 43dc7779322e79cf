"""The backend pool: starting, asking after and killing workers on their backends, off the loop.

Backend calls are slow (a cloud API, a Slurm command), so the loop hands them to a small thread
pool and goes on; each call's outcome comes back as an event the loop applies under the lock at
its next step. Commands from users' threads (launch, restart, stop) call the same functions
directly and wait for them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from crew_core.engine.supervisor import WorkerRecord
from crew_core.errors import WorkerLaunchError
from crew_core.plugin.worker import Launch, Worker

if TYPE_CHECKING:
    from crew_core.runner.manager import Manager

log = logging.getLogger("crew")

Launches = dict[type[Worker], list[tuple[WorkerRecord, Launch]]]


class Pool:
    """Backend calls for one crew (see the module docstring): launches planned, calls in flight, their events."""

    def __init__(self, manager: Manager, executor: Executor) -> None:
        self.m = manager
        self.executor = executor
        self.planned: Launches = {}  # started at the loop's next write, one start_many per class
        self.events: deque[Callable[[float], None]] = deque()  # what the calls reported, for the loop

    # ------------------------------------------------------------------ from the loop (under the lock)
    def plan(self, cls: type[Worker], items: list[tuple[WorkerRecord, Launch]]) -> None:
        self.planned.setdefault(cls, []).extend(items)

    def take_planned(self) -> Launches:
        planned, self.planned = self.planned, {}
        return planned

    def apply_events(self, now: float) -> None:
        while self.events:
            self.events.popleft()(now)
        self.m.carry_out()

    # ------------------------------------------------------------------ calls handed to the pool
    def start(self, launches: Launches) -> None:
        for cls, items in launches.items():
            self.executor.submit(self._start, cls, items)

    def check_status(self, cls: type[Worker], group: list[tuple[WorkerRecord, int]]) -> None:
        self.executor.submit(self._status, cls, group)

    def kill(self, record: WorkerRecord) -> None:
        self.executor.submit(self._kill, record, record.incarnation)

    def shutdown(self, wait: bool) -> None:
        self.executor.shutdown(wait=wait, cancel_futures=True)

    def _event(self, apply: Callable[[float], None]) -> None:
        self.events.append(apply)
        self.m.wake()

    def _start(self, cls: type[Worker], items: list[tuple[WorkerRecord, Launch]]) -> None:
        error = self.start_many(cls, items)
        group = [(record, record.incarnation) for record, _ in items]
        self._event(lambda now: self.m.supervisor.launched(group, error, now))

    def _status(self, cls: type[Worker], group: list[tuple[WorkerRecord, int]]) -> None:
        try:
            answers = cls.running([record.backend for record, _ in group])
        except Exception as exc:  # cannot ask: count them as running; silence still finds the dead
            log.warning("cannot get the status of %s workers: %s", cls.__name__, exc)
            answers = {}
        report = [(record, inc, bool(answers.get(record.name, True))) for record, inc in group]
        self._event(lambda now: self.m.supervisor.on_status(cls, report, now))

    def _kill(self, record: WorkerRecord, incarnation: int) -> None:
        self.kill_backend(record)

        def killed(now: float) -> None:
            if record.incarnation == incarnation and record.up:
                self.m.mark_down(record)

        self._event(killed)

    # ------------------------------------------------------------------ the calls themselves (any thread)
    def start_many(self, cls: type[Worker], items: list[tuple[WorkerRecord, Launch]]) -> BaseException | None:
        """Start these launches of one class; the error if they failed (a :class:`WorkerLaunchError`)."""
        try:
            for record, _ in items:
                self.m.book.enroll(record)  # before it starts: a next controller must know this launch
            cls.start_many([(record.backend, launch) for record, launch in items])
        except WorkerLaunchError as exc:
            return exc
        except Exception as exc:
            names = ", ".join(repr(record.name) for record, _ in items)
            error = WorkerLaunchError(f"worker(s) {names} ({cls.__name__}) failed to start: {exc}")
            error.__cause__ = exc
            return error
        return None

    def kill_backend(self, record: WorkerRecord) -> None:
        """Kill the worker's current launch on its backend; a failure is logged, not raised."""
        try:
            if record.adopted:  # started by an earlier controller: its backend object never knew it
                self._end_adopted(record)
            else:
                record.backend.kill()
        except Exception as exc:
            log.warning("killing worker %r failed: %s", record.name, exc)

    def _end_adopted(self, record: WorkerRecord) -> None:
        """Find an adopted worker's launch on its backend by crew id (``Worker.find``) and end it."""
        backend = record.backend
        place = backend.place()
        if place is None:
            log.info("worker %r was adopted from an earlier controller and its class cannot find it on its"
                     " backend: a Stop in the store ends it", record.name)  # fmt: skip
            return
        cls = type(backend)
        found = [job for job in cls.find(self.m.label, place, via=backend) if (job.worker, job.incarnation) == (
                 record.name, record.incarnation)]  # fmt: skip
        if found:
            cls.end(found, via=backend)
            log.info("ended adopted worker %r on its backend (%s)", record.name, ", ".join(job.id for job in found))
