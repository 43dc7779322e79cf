"""How :meth:`Crew.map` sends its calls and what it waits on: the results of its own jobs, which
:meth:`Crew.receive` never sees."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from crew_core.api import checks
from crew_core.api.progress import Progress, check_progress
from crew_core.engine.ledger import Job
from crew_core.errors import CrewError
from crew_core.results import Result, ResultList

if TYPE_CHECKING:
    from crew_core.api.crew import Crew


def gather(
    crew: Crew,
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    tags: str | Iterable[str] | None,
    progress: bool | None,
) -> ResultList:
    """:meth:`Crew.map`: send ``fn`` on each item of ``iterables`` and wait for every result."""
    checks.iterables(iterables)
    check_progress(progress)
    gathered = Gathered(fn, progress)
    # Every call is checked and pickled before any is sent: an input that cannot be pickled
    # is an error before anything runs, not after the earlier ones ran with their results lost.
    made: list[tuple[Job, bytes]] = []
    try:
        for call in zip(*iterables, strict=False):
            made.append(crew._make_job(fn, call, None, tags, gathered))
    except BaseException:
        crew._manager.release_args(job for job, _ in made)
        raise
    with crew.batch():  # a named crew writes them all at once
        for job, pickled in made:
            crew._accept(job, pickled)
            gathered.add(job)
    return gathered.wait(crew)


class Gathered:
    """A claim on the jobs of one ``map`` call: their results, by job id, and a progress bar."""

    raises_errors = True  # wait() raises what the crew could not do, a store gone for good too

    def __init__(self, fun: Any, progress: bool | None) -> None:
        self._fun = fun
        self._show = progress
        self._jobs: list[Job] = []
        self._done: dict[int, Result] = {}  # filled by whichever thread hands results over
        self._progress: Progress | None = None
        self._lock = threading.Lock()  # the bar counts each result once, early ones included

    def add(self, job: Job) -> None:
        self._jobs.append(job)

    def started(self) -> None:
        pass

    def finished(self, result: Result) -> None:
        with self._lock:
            self._done[result.id] = result
            if self._progress is not None:
                self._progress.finished(result.status)

    def wait(self, crew: Crew) -> ResultList:
        """Drive the crew until every job is back; results in the order the jobs were sent.

        If waiting fails (the store fails, the crew closes, Ctrl-C), the jobs and the results
        gathered so far go back to :meth:`Crew.receive`.
        """
        manager = crew._manager
        progress = Progress(len(self._jobs), self._fun, self._show)
        with self._lock:
            for result in self._done.values():
                progress.finished(result.status)
            self._progress = progress
        try:
            while True:
                manager.sync()
                with manager.lock:
                    if len(self._done) == len(self._jobs):
                        break
                    manager.raise_errors()
                    if crew._closed:
                        raise CrewError("the crew was closed while map() waited for its results")
                with manager.lock:  # the manager thread runs the loop: a map is many results at once
                    if len(self._done) < len(self._jobs):
                        manager.changed.wait(1.0)
        except BaseException:
            self._give_back(crew)
            raise
        finally:
            progress.close()
        return ResultList(self._done[job.id] for job in self._jobs)

    def _give_back(self, crew: Crew) -> None:
        manager = crew._manager
        with manager.lock:
            for job in self._jobs:
                if job.claim is self:
                    manager.ledger.unclaim(job)
            mine = [result for _, result in manager.ledger.take_claimed(self)]
            with self._lock:
                self._progress = None
                manager.ledger.give_results([*self._done.values(), *mine])
                self._done.clear()
