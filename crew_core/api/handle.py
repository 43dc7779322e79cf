"""The :class:`WorkerHandle` users get in ``crew.workers``: ask about one worker, or act on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crew_core.deprecation import renamed
from crew_core.plugin.worker import Worker

if TYPE_CHECKING:
    from crew_core.runner.manager import Manager


class WorkerHandle:
    """One worker of a crew, as its user sees it.

    ``backend`` is the plugin's :class:`~crew_core.Worker` object (a process id, a Batch job id,
    ...); the crew drives it, users only read it.
    """

    __slots__ = ("_manager", "backend")

    def __init__(self, manager: Manager, backend: Worker) -> None:
        self._manager = manager
        self.backend = backend

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def tags(self) -> frozenset[str]:
        return self.backend.tags

    @property
    def idle_timeout(self) -> float | None:
        """Seconds the worker may stay idle before it stops (None: no limit)."""
        return self.backend.timeout

    @property
    def timeout(self) -> float | None:
        """Deprecated name of :attr:`idle_timeout`."""
        renamed("WorkerHandle.timeout", "WorkerHandle.idle_timeout")
        return self.backend.timeout

    @property
    def worker_class(self) -> str:
        return self.backend.worker_class

    def up(self) -> bool:
        """True while the worker is launched and has not ended (starting counts as up)."""
        return self._manager.worker_up(self.name)

    def busy(self) -> bool:
        """True while the worker holds jobs (running, queued for it, or held while stuck)."""
        return self._manager.worker_busy(self.name)

    def stuck(self) -> bool:
        """True when the worker is down but still holds jobs: :meth:`restart` runs them again."""
        return self._manager.worker_stuck(self.name)

    def launch(self) -> None:
        """Start the worker if it is down (jobs will find it; its idle timeout ends it)."""
        self._manager.launch_named([self.name])

    def restart(self) -> None:
        """Relaunch a stuck worker so that the jobs it held run again."""
        self._manager.restart_named([self.name])

    def stop(self) -> None:
        """Ask the worker to stop through the store (killed if it does not answer in time).

        It stays in the crew: :meth:`launch` (or work that comes) starts it again."""
        self._manager.request_stop_named([self.name], idle_only=False)

    def shutdown(self) -> None:
        """Deprecated name of :meth:`stop`."""
        renamed("WorkerHandle.shutdown()", "WorkerHandle.stop()")
        self.stop()

    def __repr__(self) -> str:
        tags = ", ".join(sorted(self.tags))
        return f"<Worker {self.name!r} ({self.worker_class}) tags={{{tags}}} idle_timeout={self.idle_timeout}>"
