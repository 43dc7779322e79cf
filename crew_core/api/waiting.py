"""How a :class:`Crew` hands results out: :meth:`~Crew.receive`, :meth:`~Crew.receivable`,
:meth:`~Crew.results` and :meth:`~Crew.result` (the :class:`Waiting` part of the crew).

:meth:`Crew.result` waits on a :class:`OneJob`, a claim on one job, so that :meth:`Crew.receive`
never sees it: the same machinery as a future's claim (``executor.py``) and a ``map`` call's
(``gather.py``): the ledger hands the job's result to the claim instead of to ``receive``. A wait
that ends without it (a timeout, an error, Ctrl-C) gives the job back to ``receive``.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from crew_core.api import checks
from crew_core.errors import CrewError
from crew_core.plugin.worker import as_tags
from crew_core.results import Result

if TYPE_CHECKING:
    from crew_core.runner.manager import Manager


class Waiting:
    """The :class:`Crew`'s methods that wait for results and hand them out (a part of :class:`Crew`)."""

    # What these methods read of the crew (set by Crew.__init__).
    _manager: Manager
    _closed: bool
    _last_id: int
    _sent_tags: set[str]
    _tag_sets: tuple[frozenset[str], ...]

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...

    def receive(self, timeout: float | None = None, tags: str | Iterable[str] | None = None) -> Result | None:
        """Return the next finished job's :class:`Result`, waiting up to ``timeout`` seconds (None: for ever).

        A poll, as ``queue.Queue.get`` with a timeout but without the exception: it returns None
        when the timeout passes, or at once when no job (with ``tags``) is in flight.
        ``tags`` that no job sent to this crew carried and no worker of it carries are an error
        (:class:`UnknownTagError`: no result could ever match); tags some job or worker carries
        are not, even when no such job is in flight now (None at once).
        Raises what the crew could not do meanwhile (the store failing, a worker that could not
        start), once, when it has no result to hand out; a store gone for good
        (:class:`StoreGoneError`) at every call from then on.
        """
        self._check_open()
        wanted = self._receive_tags(tags)
        deadline = None if timeout is None else time.monotonic() + checks.seconds("timeout", timeout)
        manager = self._manager
        manager.sync()
        if manager.keeper is not None:
            manager.write_receipts_now()
        while True:
            with manager.lock:
                result = manager.ledger.pop_result(wanted)
                if result is not None:
                    manager.received(result.id)  # a named crew writes a receipt at once
                    return result  # results already collected come first, whatever fails meanwhile
                manager.raise_errors()
                if self._closed:
                    raise CrewError("the crew was closed while this call waited for a result")
                if not manager.incoming and not manager.waiting_on(wanted):
                    return None
            manager.sync()
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return None
            manager.drive(min(left, 1.0))

    def receivable(self, tags: str | Iterable[str] | None = None) -> bool:
        """True when :meth:`receive` would return a result at once (for jobs with ``tags``).

        ``tags`` that no job sent to this crew carried and no worker carries are an error, as in :meth:`receive`.
        """
        self._check_open()
        wanted = self._receive_tags(tags)
        with self._manager.lock:
            if self._manager.ledger.has_result(wanted):
                return True
            self._manager.raise_errors()
            return False

    def results(self, timeout: float | None = None) -> Iterator[Result]:
        """Yield results as they finish until nothing is in flight, as ``as_completed`` does.

        ``timeout``: seconds from this call (None: for ever). When it passes with jobs still in
        flight, iteration stops with a :class:`FutureWarning`: from the next minor release it
        raises ``TimeoutError`` there, as :func:`concurrent.futures.as_completed` does.
        """
        deadline = None if timeout is None else time.monotonic() + checks.seconds("timeout", timeout)
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            result = self.receive(timeout=left)
            if result is None:
                if deadline is not None and self._in_flight():
                    warnings.warn("crew.results(timeout=) ran out with jobs in flight: it stops iterating now and"
                                  " raises TimeoutError from the next minor release, as as_completed() does",
                                  FutureWarning, stacklevel=2)  # fmt: skip
                return
            yield result

    def _in_flight(self) -> bool:
        """True while some job has no result yet (or one waits for :meth:`receive`)."""
        manager = self._manager
        with manager.lock:
            return bool(manager.incoming) or manager.waiting_on(frozenset()) or bool(manager.ledger.results)

    def result(self, job_id: int, timeout: float | None = None) -> Result:
        """Wait for job ``job_id``'s :class:`Result` (as :meth:`concurrent.futures.Future.result` waits).

        ``timeout``: seconds to wait (None: for ever); when it passes, ``TimeoutError`` is raised
        and the job's result goes to :meth:`receive` as usual. A result this call returns is not
        handed out again by :meth:`receive`. Raises ``ValueError`` for an id this crew never
        sent, or whose result :meth:`receive`, :meth:`results` or an earlier ``result`` took;
        and what the crew could not do meanwhile, as :meth:`receive` does.
        """
        self._check_open()
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise TypeError(f"job_id must be a job id (an int from send()), not {job_id!r}")
        deadline = None if timeout is None else time.monotonic() + checks.seconds("timeout", timeout)
        one = OneJob(job_id)
        found = self._attach(job_id, one)
        if found is not None:
            return found
        if not one.attached:
            if not 1 <= job_id <= self._last_id:
                raise ValueError(f"job {job_id} was never sent by this crew (its ids run from 1 to {self._last_id})")
            raise ValueError(f"the result of job {job_id} was already taken (by receive(), results(), map() or"
                             " result()), or a future holds it")  # fmt: skip
        return one.wait(self, deadline)

    def _attach(self, job_id: int, claim: OneJob) -> Result | None:
        """Give job ``job_id`` to ``claim``, or return its result if it waits for :meth:`receive`.

        Sets ``claim.attached`` when the claim will get the result (None is returned then)."""
        manager = self._manager
        with manager.lock:
            manager._accept()
            job = manager.ledger.jobs.get(job_id)
            if job is not None and job.claim is not None:
                return None  # a future or a map() takes it
            if manager.ledger.attach(job_id, claim):
                claim.attached = True
                return None
            found = manager.ledger.take_result(job_id)
            if found is not None:
                manager.received(job_id)
            return found

    def _receive_tags(self, tags: str | Iterable[str] | None) -> frozenset[str]:
        """:meth:`receive`'s ``tags``, refused when no job sent here carried them and no worker carries them."""
        wanted = as_tags(tags)
        if not wanted or wanted <= self._sent_tags or wanted <= self._sent_tags.union(*self._tag_sets):
            return wanted
        with self._manager.lock:  # and the jobs and results a resumed named crew took over
            ledger = self._manager.ledger
            taken = set().union(*(job.tags for job in ledger.jobs.values()), *(r.tags for r in ledger.results))
        checks.receive_tags(wanted, self._sent_tags | taken, self._tag_sets)
        return wanted


class OneJob:
    """A claim on job ``job_id``'s result for one :meth:`Crew.result` call."""

    raises_errors = True  # wait() raises what the crew could not do, as receive() does

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.attached = False  # the ledger will hand the result here
        self._result: Result | None = None
        self._lock = threading.Lock()
        self._gave_up = False  # the wait ended without the result: a late one goes back to receive()
        self._crew: Waiting | None = None

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

    def wait(self, crew: Waiting, deadline: float | None) -> Result:
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

    def _give_back(self, crew: Waiting) -> None:
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
