"""A worker whose loop runs as one task inside a ``concurrent.futures.Executor``."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from crew_core.plugin import Launch, Worker, WorkerLaunchError, process_alive


def _run_in_own_pool(args: list[str], environment: dict[str, str], controller: int) -> str:
    """The worker's loop in the process of its own pool. Once its controller is gone, nobody will
    shut that pool down: the process ends here, and with it the pool's forkserver and resource
    tracker, which would otherwise wait for it for ever."""
    from crew_core.plugin import run_worker

    for name in ("CREW_SECRET", "CREW_INNER_SECRET"):  # the controller's, inherited: not for jobs here
        os.environ.pop(name, None)
    reason = run_worker(args, environment)
    if not process_alive(controller):
        os._exit(0)
    return reason


_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
_CONTEXT = multiprocessing.get_context(_METHOD)


class ExecutorWorker(Worker):
    """Runs the worker loop with ``executor.submit``: one long task per worker.

    By default each worker gets a private one-process :class:`ProcessPoolExecutor`, which
    :meth:`kill` can end. Pass ``executor=`` to use your own (a loky executor, a
    ``dask.distributed.Client``, ...): it must have a free slot per worker, and since crew cannot
    kill a task in someone else's executor, a worker there ends only by answering a stop request
    or by its idle timeout.
    """

    worker_class = "executor"
    status_interval = 0.05

    def __init__(
        self,
        name: str,
        *,
        tags: Iterable[str] | str | None = None,
        timeout: float | None = None,
        executor: Executor | Any | None = None,
    ) -> None:
        super().__init__(name, tags=tags, timeout=timeout)
        self.executor = executor
        self._own: ProcessPoolExecutor | None = None  # kept warm from one incarnation to the next
        self._future: Future[str] | Any = None
        self._lock = threading.Lock()  # the crew calls start, is_running and kill from several threads

    @property
    def ends_with_controller(self) -> bool:
        """True with the worker's own process pool, whose process watches the controller's; a
        user's executor may outlive the controller, and its worker leaves when the lease stands still."""
        return self.executor is None

    @property
    def beside_controller(self) -> bool:  # type: ignore[override]
        """True with the worker's own process pool or a local pool; a user's executor may run elsewhere."""
        return self.executor is None or type(self.executor) in (ProcessPoolExecutor, ThreadPoolExecutor)

    def start(self, launch: Launch) -> None:
        with self._lock:
            executor = self.executor
            args = list(launch.args)
            if executor is None:
                if self._own is not None and getattr(self._own, "_broken", False):  # its process died
                    self._own.shutdown(wait=False, cancel_futures=True)
                    self._own = None
                if self._own is None:
                    # forkserver, not fork: a forked copy of a controller whose threads hold locks can deadlock.
                    self._own = ProcessPoolExecutor(max_workers=1, mp_context=_CONTEXT)
                executor = self._own
                args += ["--parent-pid", str(os.getpid())]
            from crew_core.plugin import run_worker  # here: a controller's start-up never pays for it

            try:
                # The secret goes with the call (pickled through the pool's pipe), not into os.environ:
                # a thread pool shares the controller's environment.
                environment = {**launch.environment, **launch.secrets}
                if executor is self._own:
                    self._future = executor.submit(_run_in_own_pool, args, environment, os.getpid())
                else:
                    self._future = executor.submit(run_worker, args, environment)
            except Exception as exc:
                raise WorkerLaunchError(f"executor {executor!r} refused worker {self.name!r}: {exc}") from exc

    def is_running(self) -> bool:
        future = self._future
        return future is not None and not future.done()

    def kill(self) -> None:
        with self._lock:
            if self._future is not None:
                self._future.cancel()
            own, self._own = self._own, None
        if own is not None:
            processes = list(getattr(own, "_processes", {}).values())  # no public kill before 3.14
            for process in processes:
                process.kill()
            own.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        if self.is_running():
            self.kill()  # not expected: close() comes once the worker is down for good
        with self._lock:
            own, self._own = self._own, None
        if own is not None:
            own.shutdown(wait=True, cancel_futures=True)
