"""What one test of the worker suite started, and the check after it that all of it has ended.

``WorkerContract`` starts real workers in two ways: through crews made in the test's process
(its ``make_crew`` fixture), and through a controller process that the test kills (an orphaned
crew). Its autouse fixture gives each test a :class:`StartedWorkers` that records both; after
the test (and after ``make_crew`` has closed its crews) :meth:`StartedWorkers.end_all` waits,
up to a deadline, until

- every worker of every crew made here is down by its class's own ``running()``;
- at every place an orphaned crew noted, its worker class finds none of its jobs (``find()``);
- no process of this user on this machine runs a worker carrying one of those crews' labels
  (``CREW_LABEL``): the ground truth wherever the workers run here (local processes, the test
  control planes of crew-aws and crew-gcp, a one-node Slurm), and the only one for an orphaned
  crew of a class without ``place()``.

Whatever still runs at the deadline is ended (``kill()``, ``end()``, then SIGKILL of the local
processes) and described, so that the test fails naming it and still leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crew_core.api.crew import Crew
from crew_core.durable.leftovers import (
    BackendSearch,
    CrewSeen,
    end_backend_jobs,
    find_backend_jobs,
    find_crews,
)
from crew_core.plugin.launches import LABEL_ENV, crew_label, launch_in
from crew_core.plugin.processes import environment_variable, kill_tree, own_processes
from crew_core.plugin.store import Store
from crew_core.plugin.worker import BackendJob, Worker
from crew_core.wire import protocol


@dataclass(frozen=True)
class Leftover:
    """One worker still running after its test: what it is, and how to end it (None: it could
    not even be looked for, which fails the test as well)."""

    what: str
    end: Callable[[], None] | None = field(compare=False)


@dataclass
class _Orphan:
    """A crew whose controller the test killed: found through its store and its backends."""

    crew_id: str
    store: Store
    label: str
    places: list[tuple[str, dict[str, Any]]] | None = None  # noted by the crew: read once


class StartedWorkers:
    """The crews one test started workers through; :meth:`end_all` checks that they all ended.

    ``worker_class(name)`` returns the class registered under ``name`` (what ``find()`` and
    ``end()`` of an orphaned crew's places are called on).
    """

    def __init__(self, worker_class: Callable[[str], type[Worker]]) -> None:
        self.crews: list[Crew] = []
        self.orphans: list[_Orphan] = []
        self._labels: set[str] = set()  # of every crew recorded: what its workers' CREW_LABEL says
        self._worker_class = worker_class

    def add_crew(self, crew: Crew) -> Crew:
        """Record a crew made in this process; the test (or ``make_crew``) closes it."""
        self.crews.append(crew)
        self._labels.add(crew_label(crew.store.describe(), crew.id))
        return crew

    def add_orphan(self, crew_id: str, store: Store) -> None:
        """Record a crew whose controller process is gone. :meth:`end_all` deletes its objects
        and closes ``store`` once it has checked its workers."""
        self.orphans.append(_Orphan(crew_id, store, crew_label(store.describe(), crew_id)))
        self._labels.add(self.orphans[-1].label)

    # ------------------------------------------------------------------ looking
    def leftovers(self) -> list[Leftover]:
        """What still runs now, by each crew's worker classes and by this machine's processes."""
        return [*self._running_in_crews(), *self._found_on_backends(), *self._local_processes()]

    def _running_in_crews(self) -> list[Leftover]:
        found: list[Leftover] = []
        for crew in self.crews:
            by_class: dict[type[Worker], list[Worker]] = {}
            for handle in crew.workers.values():
                by_class.setdefault(type(handle.backend), []).append(handle.backend)
            for cls, backends in by_class.items():
                try:
                    answers = cls.running(backends)
                except Exception as exc:  # it cannot tell: count them running until it can
                    answers = {backend.name: True for backend in backends}
                    reason = f"{cls.__name__}.running() raised {exc!r}"
                else:
                    reason = f"{cls.__name__}.running() says it runs"
                found += [Leftover(f"worker {b.name!r} of crew {crew.id}: {reason}", b.kill)
                          for b in backends if answers.get(b.name, True)]  # fmt: skip
        return found

    def _found_on_backends(self) -> list[Leftover]:
        found: list[Leftover] = []
        for orphan in self.orphans:
            if orphan.places is None:
                seen = [crew for crew in find_crews(orphan.store) if crew.id == orphan.crew_id]
                orphan.places = seen[0].places if seen else []
            if not orphan.places:
                continue  # a class without place(): only its local processes can be checked
            noted = CrewSeen(orphan.crew_id, named=False, lease=None, places=orphan.places)
            search = find_backend_jobs(noted, orphan.store, self._worker_class)
            found += [Leftover(f"cannot tell whether orphaned crew {orphan.crew_id} still runs: {problem}", None)
                      for problem in search.problems]  # fmt: skip
            found += [Leftover(f"{job.worker_class} job {job.id} (worker {job.worker!r}, launch {job.incarnation})"
                               f" of orphaned crew {orphan.crew_id}: find() still returns it at {dict(job.place)}",
                               functools.partial(self._end_job, job)) for job in search.jobs]  # fmt: skip
        return found

    def _end_job(self, job: BackendJob) -> None:
        search = BackendSearch(jobs=[job])
        end_backend_jobs(search, self._worker_class)
        if search.problems:
            raise RuntimeError("; ".join(search.problems))

    def _local_processes(self) -> list[Leftover]:
        if not self._labels:
            return []
        found = []
        for pid, argv in own_processes().items():
            launch = launch_in(argv)
            label = environment_variable(pid, LABEL_ENV) if launch is not None else None
            if launch is None or label not in self._labels:
                continue
            found.append(Leftover(f"process {pid} on this machine runs worker {launch.worker!r} (launch"
                                  f" {launch.incarnation}) of crew {label.partition('@')[0]}",
                                  functools.partial(kill_tree, pid)))  # fmt: skip
        return found

    # ------------------------------------------------------------------ ending
    def end_all(self, timeout: float, interval: float = 0.1) -> list[str]:
        """Wait up to ``timeout`` s for everything started to end; end what has not, and return
        a line for each (empty: the test left nothing running). Then the crews are closed (a crew
        left open is not closed first: that would hide its workers) and orphaned crews' objects
        deleted."""
        try:
            left = self._wait_until_none(timeout, interval)
            if not left:
                return []
            lines = [leftover.what + (" (ended now)" if leftover.end else "") for leftover in left]
            for leftover in left:
                try:
                    if leftover.end is not None:
                        leftover.end()
                except Exception as exc:
                    lines.append(f"could not end {leftover.what}: {exc!r}")
            lines += [f"still running after it was ended: {leftover.what}"
                      for leftover in self._wait_until_none(timeout, interval)]  # fmt: skip
            return lines
        finally:
            for crew in self.crews:
                with contextlib.suppress(Exception):  # idempotent: make_crew has closed its own
                    crew.close()
            self._remove_orphans()

    def _wait_until_none(self, timeout: float, interval: float) -> list[Leftover]:
        deadline = time.monotonic() + timeout
        while True:
            left = self.leftovers()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(interval)

    def _remove_orphans(self) -> None:
        for orphan in self.orphans:
            with contextlib.suppress(Exception):  # the backend's fixture may have removed it all
                orphan.store.delete_prefix(protocol.crew_prefix(orphan.crew_id))
            with contextlib.suppress(Exception):
                orphan.store.close()
