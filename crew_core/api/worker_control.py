"""How a :class:`Crew` controls its workers: :meth:`~Crew.launch`, :meth:`~Crew.stop`,
:meth:`~Crew.dismiss` and :meth:`~Crew.restart` (the :class:`WorkerControl` part of the crew).

Each picks workers by their tags (``checks.select``) and asks the manager, which owns their
records, to act on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from crew_core.api import checks
from crew_core.api.handle import WorkerHandle

if TYPE_CHECKING:
    from crew_core.runner.manager import Manager


class WorkerControl:
    """The :class:`Crew`'s methods that start, stop, remove and relaunch workers (a part of :class:`Crew`)."""

    # What these methods read of the crew (set by Crew.__init__).
    _manager: Manager
    workers: dict[str, WorkerHandle]
    _tag_sets: tuple[frozenset[str], ...]

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...

    def launch(self, workers: int | None = None, tags: str | Iterable[str] | None = None) -> list[WorkerHandle]:
        """Start up to ``workers`` down workers carrying ``tags`` (all of them by default)."""
        self._check_open()
        checks.worker_count(workers)
        manager = self._manager
        manager.sync()
        with manager.lock:
            chosen = [
                manager.records[h.name]
                for h in checks.select(self.workers, tags)
                if not manager.records[h.name].up and not manager.supervisor.stuck(manager.records[h.name])
            ]
            chosen = chosen if workers is None else chosen[:workers]
        manager.launch(chosen)  # one backend call per class: job arrays, batched submissions
        return [self.workers[record.name] for record in chosen]

    def stop(self, tags: str | Iterable[str] | None = None, idle_only: bool = True) -> list[WorkerHandle]:
        """Ask workers carrying ``tags`` to stop (only idle ones by default); returns them.

        The request goes through the store; a worker that does not answer within ``stop_grace``
        seconds is killed. Jobs a stopped worker had not started go back to the backlog. The
        workers stay in the crew: :meth:`launch` (or work that comes) starts them again;
        :meth:`dismiss` removes them, :meth:`close` ends the crew.
        """
        self._check_open()
        if not isinstance(idle_only, bool):
            raise TypeError(f"idle_only must be True or False, not {idle_only!r}")
        chosen = self._manager.request_stop_named([h.name for h in checks.select(self.workers, tags)], idle_only)
        return [self.workers[name] for name in chosen]

    def dismiss(self, tags: str | Iterable[str] | None = None) -> list[WorkerHandle]:
        """Stop workers carrying ``tags`` now and remove them from the crew.

        Jobs they held go to the remaining workers; a job that no remaining worker can run comes
        back as an error result (:class:`WorkerLostError`).
        """
        self._check_open()
        chosen = list(checks.select(self.workers, tags))
        names = [handle.name for handle in chosen]
        self._manager.stop_now(names)
        for name in names:
            del self.workers[name]
        self._tag_sets = tuple(handle.tags for handle in self.workers.values())
        self._manager.remove(names)
        return chosen

    def restart(self) -> list[WorkerHandle]:
        """Relaunch every stuck worker (down while holding jobs) so its jobs run again."""
        self._check_open()
        manager = self._manager
        manager.sync()
        with manager.lock:
            stuck = [record for record in manager.records.values() if manager.supervisor.stuck(record)]
        manager.restart(stuck)
        return [self.workers[record.name] for record in stuck]
