""":class:`CrewTaskRunner`: a Prefect 3 task runner whose task runs are crew jobs.

How one task run travels (the same path as on ``prefect_dask.DaskTaskRunner``: Prefect's task
engine runs where the task runs, and reports to the Prefect API from there)::

    flow's thread: submit(task, parameters, wait_for)
        |  upstream futures not done yet? they count down in their done-callbacks, then the
        |  dispatcher thread replaces each by its final state
        v
    CrewExecutor.submit(worker.run_task, task, run id, parameters, wait_for, context)
        |  one crew job: on a crew worker Prefect's engine runs the task run (states, retries,
        |  results, logs, all to the Prefect API) and returns its final State
        v
    the crew future's done-callback -> the run's State -> its PrefectCrewFuture
        (crew could not run the job: a Crashed state, which the dispatcher thread reports)

Upstream futures wait in the controller, not on a worker: a task run goes to a crew worker only
once it can start, so no worker sits blocked on another's result.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import os
import queue
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import RunInput, State
from prefect.context import EngineContext, SettingsContext, TagsContext, TaskRunContext, serialize_context
from prefect.futures import PrefectFuture
from prefect.states import Crashed
from prefect.task_runners import TaskRunner
from prefect.utilities.annotations import quote
from prefect.utilities.collections import StopVisiting, visit_collection

from crew_core import Crew, CrewExecutor
from prefect_crew.futures import PrefectCrewFuture
from prefect_crew.worker import on_crew_worker, run_task

if TYPE_CHECKING:
    from prefect.tasks import Task


@dataclass(eq=False)
class _TaskRun:
    """One submitted task run, from ``submit`` until its final state is known."""

    task: Task[Any, Any]
    id: uuid.UUID
    parameters: dict[str, Any]
    wait_for: list[PrefectFuture[Any]]
    dependencies: dict[str, set[RunInput]] | None
    context: dict[str, Any]  # the flow's, serialized when it was submitted
    crew_tags: frozenset[str]  # the workers it may run on must carry these (from ``crew:`` tags)
    state: concurrent.futures.Future[State[Any]] = field(default_factory=concurrent.futures.Future)
    upstream: int = 0  # upstream futures not done yet


class CrewTaskRunner(TaskRunner[PrefectCrewFuture[Any]]):
    """A Prefect task runner that runs each task run as a job on a crew's workers.

    >>> @flow(task_runner=CrewTaskRunner(store="/shared/crew", recruit=[dict(workers=4)]))
    ... def my_flow(): ...

    Entering it (Prefect does, when a flow run starts) opens a :class:`crew_core.Crew` on
    ``store`` (a store name, URL or path; None: crew's default) with ``worker_classes`` and the
    other keyword ``crew_settings`` (``max_tries``, ``job_timeout``, ``name``, ...), and
    recruits workers: one ``crew.recruit(**options)`` for each dict in ``recruit`` (default: as
    many workers of the default class as there are CPUs). Leaving it lets the task runs already
    on a worker finish, cancels the rest, and closes the crew.

    A task's Prefect tags ``crew:<tag>`` (on the task, or from a ``with tags(...)`` block) send
    its runs to workers that carry ``<tag>``.

    ``crew=`` runs the task runs on a crew of yours instead (its workers stay warm between flow
    runs); the runner leaves it open.

    Tasks' functions, parameters and results travel through crew's store, pickled (with
    cloudpickle): a task's module must be importable on the workers, as with dask.
    """

    def __init__(
        self,
        store: Any = None,
        worker_classes: Iterable[Any] | None = None,
        recruit: Iterable[dict[str, Any]] | None = None,
        *,
        crew: Crew | None = None,
        **crew_settings: Any,
    ) -> None:
        if crew is not None:
            if not isinstance(crew, Crew):
                raise TypeError(f"crew must be a crew_core.Crew, not {type(crew).__name__}")
            given = [name for name, value in (("store", store), ("worker_classes", worker_classes),
                     ("recruit", recruit)) if value is not None] + sorted(crew_settings)  # fmt: skip
            if given:
                raise ValueError(f"CrewTaskRunner(crew=...) runs on that crew as it is; {', '.join(given)} would "
                                 "make a new one: recruit on the crew instead")  # fmt: skip
        self.store = store
        self.worker_classes = list(worker_classes) if worker_classes is not None else None
        self.recruit = [dict(options) for options in recruit] if recruit is not None else None
        self.crew_settings = crew_settings
        self._given_crew = crew
        self._crew: Crew | None = None
        self._executor: CrewExecutor | None = None
        self._lock = threading.Lock()
        self._closing = False
        self._waiting: set[_TaskRun] = set()  # submitted, their upstream futures not all done
        self._work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._dispatcher: threading.Thread | None = None
        self._serialized: tuple[tuple[Any, ...], frozenset[str], dict[str, Any]] | None = None
        super().__init__()

    @property
    def crew(self) -> Crew | None:
        """The crew the task runs go to while the runner is open (None before)."""
        return self._crew

    def duplicate(self) -> CrewTaskRunner:
        """A runner with the same settings, not started (Prefect makes one for each flow run)."""
        if self._given_crew is not None:
            return type(self)(crew=self._given_crew)
        return type(self)(store=self.store, worker_classes=self.worker_classes, recruit=self.recruit,
                          **self.crew_settings)  # fmt: skip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CrewTaskRunner):
            return False
        return (
            self.store == other.store
            and self.worker_classes == other.worker_classes
            and self.recruit == other.recruit
            and self.crew_settings == other.crew_settings
            and self._given_crew is other._given_crew
        )

    __hash__ = None  # type: ignore[assignment]  # equal by settings, which can change

    # ------------------------------------------------------------------ submitting
    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
        dependencies: dict[str, set[RunInput]] | None = None,
    ) -> PrefectCrewFuture[Any]:
        """Run ``task`` with ``parameters`` as a crew job, once the futures it waits for are done."""
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        self._open()  # on a crew worker, only now (a task that submits tasks)
        context, context_tags = self._context()
        run = _TaskRun(task, uuid.uuid4(), parameters, list(wait_for or ()), dependencies, context,
                       crew_tags_of(task.tags | context_tags))  # fmt: skip
        future: PrefectCrewFuture[Any] = PrefectCrewFuture(run.id, run.state)
        waits_on = [f for f in run.wait_for if isinstance(f, PrefectFuture)]  # the engine takes states as they are
        upstream = {id(f): f for f in [*_futures_in(parameters), *waits_on]}
        if not upstream:
            self._send(run, parameters, run.wait_for or None)
            return future
        with self._lock:
            run.upstream = len(upstream)
            self._waiting.add(run)
        for upstream_future in upstream.values():
            upstream_future.add_done_callback(partial(self._upstream_done, run))
        return future

    def _context(self) -> tuple[dict[str, Any], frozenset[str]]:
        """Prefect's serialized context and its tags; serialized again only when one of its parts changed.

        Serializing the settings costs tens of milliseconds, more than a short task run; within a
        flow run they and the flow run's context stay the same objects until changed.
        """
        contexts = (EngineContext.get(), TaskRunContext.get(), SettingsContext.get())
        tags = frozenset(TagsContext.get().current_tags)  # a new object each time when none are set
        last = self._serialized
        if last is None or tags != last[1] or any(now is not then for now, then in zip(contexts, last[0], strict=True)):
            last = self._serialized = (contexts, tags, serialize_context())
        return last[2], last[1]

    def _upstream_done(self, run: _TaskRun, _: PrefectFuture[Any]) -> None:
        """A done-callback (in whichever thread finished that future): the last one hands ``run`` on."""
        with self._lock:
            run.upstream -= 1
            if run.upstream or run not in self._waiting:
                return
            self._waiting.discard(run)
        self._work.put(partial(self._resolve_and_send, run))

    def _resolve_and_send(self, run: _TaskRun) -> None:
        """In the dispatcher thread: futures become their final states, which pickle (futures do not).

        Prefect's engine on the worker takes states as it takes futures: a failed upstream
        leaves the run ``NotReady``, ``allow_failure`` lets it run, as with the other runners.
        """
        if self._closing:
            run.state.cancel()
            return
        try:
            parameters = visit_collection(run.parameters, _to_final_state, return_data=True)
            wait_for = [_final_state(f) if isinstance(f, PrefectFuture) else f for f in run.wait_for] or None
        except Exception as exc:
            self._crashed(run, exc)
            return
        self._send(run, parameters, wait_for)

    def _send(self, run: _TaskRun, parameters: dict[str, Any], wait_for: list[Any] | None) -> None:
        with self._lock:  # never after _close began: it waits only for jobs it can see
            executor = self._executor
            if self._closing or executor is None:
                run.state.cancel()
                return
            try:
                if run.crew_tags:
                    executor = executor.options(tags=run.crew_tags)  # UnknownTagError: no worker carries them
                job = executor.submit(run_task, run.task, run.id, parameters, wait_for, run.dependencies, run.context)
            except Exception as exc:  # the task or a parameter cannot be pickled, the crew has failed
                self._work.put(partial(self._crashed, run, exc))
                return
        job.add_done_callback(partial(self._job_done, run))

    def _job_done(self, run: _TaskRun, job: concurrent.futures.Future[Any]) -> None:
        """The crew job's done-callback (crew's thread: it must not wait)."""
        if job.cancelled():
            run.state.cancel()
            return
        error = job.exception()
        if error is None:
            _settle(run.state, job.result())
        else:  # crew could not run it (its worker died max_tries times, a timeout, a cancel)
            self._work.put(partial(self._crashed, run, error))

    def _crashed(self, run: _TaskRun, error: BaseException) -> None:
        """In the dispatcher thread: the run ends ``Crashed``, in the API too (its engine could not say so)."""
        state: State[Any] = Crashed(message=f"crew could not run the task run: {type(error).__name__}: {error}",
                                    data=error)  # fmt: skip
        state.state_details.task_run_id = run.id
        try:
            with get_client(sync_client=True) as client:
                client.set_task_run_state(run.id, state, force=True)
        except Exception as exc:  # a run its engine never started is unknown to the API
            self.logger.debug("Could not report task run %s as crashed: %s", run.id, exc)
        _settle(run.state, state)

    def _dispatch(self) -> None:
        while (work := self._work.get()) is not None:
            try:
                work()
            except Exception:
                self.logger.exception("CrewTaskRunner: handing on a task run failed")

    # ------------------------------------------------------------------ opening and closing
    def _open(self) -> None:
        with self._lock:
            if self._executor is not None:
                return
            if self._given_crew is not None:
                crew = self._given_crew
            else:
                crew = Crew(store=self.store, worker_classes=self.worker_classes, **self.crew_settings)
                try:
                    for options in self.recruit if self.recruit is not None else [dict(workers=os.cpu_count() or 1)]:
                        crew.recruit(**options)
                except BaseException:
                    crew.close()
                    raise
            try:
                executor = CrewExecutor(crew=crew)  # raises if the crew has no workers
            except BaseException:
                if crew is not self._given_crew:
                    crew.close()
                raise
            self._crew, self._executor, self._closing = crew, executor, False
            # The flow's context (its Prefect settings: the API it reports to) for crash reports.
            context = contextvars.copy_context()
            self._dispatcher = threading.Thread(target=context.run, args=(self._dispatch,),
                                                name="prefect-crew-dispatcher", daemon=True)  # fmt: skip
            self._dispatcher.start()
        self.logger.debug("Task runs go to crew %s (%d workers)", crew.id, len(crew.workers))

    def _close(self) -> None:
        with self._lock:
            self._closing = True
            crew, executor, dispatcher = self._crew, self._executor, self._dispatcher
            waiting = list(self._waiting)
            self._waiting.clear()
        for run in waiting:  # never sent: cancelled, as ThreadPoolTaskRunner cancels what has not started
            run.state.cancel()
        if executor is None or crew is None:
            return
        try:
            executor.shutdown(wait=True, cancel_futures=True)  # runs on a worker finish; the backlog is cancelled
        finally:
            self._work.put(None)  # after the crash reports the shutdown may have queued
            if dispatcher is not None:
                dispatcher.join()
            with self._lock:
                self._crew = self._executor = self._dispatcher = self._serialized = None
            if crew is not self._given_crew:
                crew.close()

    def __enter__(self) -> CrewTaskRunner:
        super().__enter__()
        if not on_crew_worker.get():  # on a worker, Prefect enters the flow's runner for each task run
            try:
                self._open()
            except BaseException:
                super().__exit__(None, None, None)
                raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._close()
        finally:
            super().__exit__(*exc_info)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        """Settings only: Prefect pickles the flow, with its task runner, into each task run's context.

        A runner unpickled on a worker opens its own crew only if a task submits tasks there;
        a crew of yours (``crew=``), a :class:`~crew_core.Store` object and ``plugins`` stay behind.
        """
        store = self.store if self.store is None or isinstance(self.store, str | os.PathLike) else None
        settings = {name: value for name, value in self.crew_settings.items() if name != "plugins"}
        return dict(store=store, worker_classes=self.worker_classes, recruit=self.recruit, crew_settings=settings)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["store"], state["worker_classes"], state["recruit"], **state["crew_settings"])  # type: ignore[misc]

    def __repr__(self) -> str:
        where = f"crew={self._crew.id}" if self._crew is not None else "not started"
        return f"<CrewTaskRunner store={self.store!r} {where}>"


#: A task's (or a ``with tags(...)`` block's) Prefect tags that start so name crew tags its run's worker must carry.
CREW_TAG_PREFIX = "crew:"


def crew_tags_of(prefect_tags: Iterable[str]) -> frozenset[str]:
    """The crew tags in Prefect ``tags``: ``{"crew:gpu", "nightly"}`` gives ``{"gpu"}``."""
    return frozenset(tag.removeprefix(CREW_TAG_PREFIX) for tag in prefect_tags
                     if tag.startswith(CREW_TAG_PREFIX) and tag != CREW_TAG_PREFIX)  # fmt: skip


def _futures_in(parameters: dict[str, Any]) -> list[PrefectFuture[Any]]:
    """The futures among ``parameters`` (at any depth, not inside ``quote``), as Prefect finds them."""
    found: list[PrefectFuture[Any]] = []

    def visit(expr: Any) -> Any:
        if isinstance(expr, quote):
            raise StopVisiting
        if isinstance(expr, PrefectFuture):
            found.append(expr)
        return expr

    visit_collection(parameters, visit, return_data=False)
    return found


def _final_state(future: PrefectFuture[Any]) -> State[Any]:
    future.wait()  # done already: returns at once
    return future.state


def _to_final_state(expr: Any) -> Any:
    if isinstance(expr, quote):
        raise StopVisiting
    return _final_state(expr) if isinstance(expr, PrefectFuture) else expr


def _settle(future: concurrent.futures.Future[State[Any]], state: State[Any]) -> None:
    try:
        future.set_result(state)
    except concurrent.futures.InvalidStateError:  # cancelled meanwhile (the runner exited)
        pass
