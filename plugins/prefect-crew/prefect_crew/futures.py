""":class:`PrefectCrewFuture`: a Prefect future for a task run that goes to a crew."""

from __future__ import annotations

import concurrent.futures
from typing import Any, TypeVar

from prefect.client.schemas.objects import State
from prefect.futures import PrefectWrappedFuture

R = TypeVar("R")


class PrefectCrewFuture(PrefectWrappedFuture[R, "concurrent.futures.Future[State[Any]]"]):
    """A Prefect future wrapping the :class:`concurrent.futures.Future` of one task run on a crew.

    The wrapped future follows the run from its submission: it waits in the controller for the
    run's upstream futures, then for the crew job that runs it (a crew worker runs Prefect's task
    engine), and its result is always the run's final :class:`~prefect.State`, the one Prefect's
    engine reported (or a ``Crashed`` state when crew could not run the job); it is cancelled
    when the task runner exits before the run was sent.
    """

    def __init__(self, task_run_id: Any, wrapped_future: concurrent.futures.Future[State[Any]]) -> None:
        super().__init__(task_run_id, wrapped_future)
        # First of its callbacks: the final state is there before Prefect's wait() and
        # as_completed() are told, and before the user's done-callbacks run.
        wrapped_future.add_done_callback(self._settle)

    def _settle(self, future: concurrent.futures.Future[State[Any]]) -> None:
        if not future.cancelled():
            self._final_state = future.result()

    def wait(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds (None: until it ends) for the task run to end."""
        try:
            self._final_state = self._wrapped_future.result(timeout=timeout)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            return

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """The task run's result, once it ends; its exception if it failed and ``raise_on_failure``."""
        if self._final_state is None:
            try:
                self._final_state = self._wrapped_future.result(timeout=timeout)
            except concurrent.futures.TimeoutError as exc:
                raise TimeoutError(f"Task run {self.task_run_id} did not complete within {timeout} seconds") from exc
        value: R = self._final_state.result(raise_on_failure=raise_on_failure, _sync=True)  # type: ignore[call-overload]
        return value

    @property
    def state(self) -> State[Any]:
        """The final state once the run ended, else the state the Prefect API has for it."""
        future = self._wrapped_future
        if self._final_state is None and future.done() and not future.cancelled():
            self._final_state = future.result()
        return super().state
