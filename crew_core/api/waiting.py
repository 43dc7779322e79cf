"""What :meth:`Crew.result` waits on: a claim on one job, so that :meth:`Crew.receive` never sees it.

The same machinery as a future's claim (``executor.py``) and a ``map`` call's (``gather.py``):
the ledger hands the job's result to the claim instead of to ``receive``. A wait that ends
without it (a timeout, an error, Ctrl-C) gives the job back to ``receive``.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from crew_core.errors import CrewError
from crew_core.results import Result

if TYPE_CHECKING:
    from crew_core.api.crew import Crew


class OneJob:
    """A claim on job ``job_id``'s result for one :meth:`Crew.result` call."""

    raises_errors = True  # wait() raises what the crew could not do, as receive() does

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.attached = False  # the ledger will hand the result here
        self._result: Result | None = None
        self._lock = threading.Lock()
        self._gave_up = False  # the wait ended without the result: a late one goes back to receive()
        self._crew: Crew | None = None

    def started(self) -> None:
        pass

    def finished(self, result: Result) -> None:
        """Called outside the crew's lock by the thread handing results over."""
        with self._lock:
            if not self._gave_up:
                self._result = result
                return
        crew = self._crew
        if crew is not None:  # it came while the waiter gave up: it is receive()'s again
            with crew._manager.lock:
                crew._manager.ledger.give_results([result])
                crew._manager.changed.notify_all()

    def wait(self, crew: Crew, deadline: float | None) -> Result:
        """Drive the crew until the result is here; ``TimeoutError`` once ``deadline`` passes."""
        self._crew = crew
        manager = crew._manager
        try:
            while True:
                manager.sync()
                with self._lock:
                    if self._result is not None:
                        return self._result
                manager.raise_errors()
                if crew._closed:
                    raise CrewError(f"the crew was closed while result() waited for job {self.job_id}")
                left = 1.0 if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {self.job_id} did not finish in time; its result goes to receive()")
                manager.drive(min(left, 1.0))
        except BaseException:
            self._give_back(crew)
            raise

    def _give_back(self, crew: Crew) -> None:
        """The wait ended without the result: the job (or its result) goes back to receive()."""
        manager = crew._manager
        with manager.lock:
            job = manager.ledger.jobs.get(self.job_id)
            if job is not None and job.claim is self:
                manager.ledger.unclaim(job)
            for staged, _ in manager.ledger.unsaved:
                if staged.claim is self:
                    staged.claim = None
            late = [result for _, result in manager.ledger.take_claimed(self)]
            with self._lock:
                self._gave_up = True
                if self._result is not None:
                    late.append(self._result)
                    self._result = None
            manager.ledger.give_results(late)
