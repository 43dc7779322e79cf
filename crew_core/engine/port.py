"""The seam between the engine and the runner: all the engine reads from and asks of its owner.

The dispatcher and the supervisor see their controller only through :class:`Controller`, which
``crew_core.runner.manager.Manager`` satisfies (mypy checks it) and a test can fake. The methods
under "asks" are the engine's instructions to the runner. Engine v2's next step has the engine
return them as records instead of calling them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from crew_core.engine.dispatcher import Dispatcher
    from crew_core.engine.ledger import Job, Ledger, Task
    from crew_core.engine.supervisor import Supervisor
    from crew_core.engine.workers import WorkerRecord
    from crew_core.plugin.store import Store
    from crew_core.results import Result
    from crew_core.settings import Settings
    from crew_core.wire.protocol import Cancel, Revoke, Stop


class Controller(Protocol):
    """What one crew's engine reads and asks for (see the module docstring)."""

    # ---------------------------------------------------------------- reads
    crew_id: str
    label: str  # how its launches are found on their backends
    store_spec: dict[str, Any]  # how a worker rebuilds the store
    secret: bytes
    settings: Settings
    store: Store  # its poll_interval only
    prefetch_horizon: float
    ledger: Ledger
    records: dict[str, WorkerRecord]
    supervisor: Supervisor
    dispatcher: Dispatcher

    def poll_floor(self) -> float:
        """Half the shortest running job: the controller polls no faster than that."""

    # ---------------------------------------------------------------- asks
    def write_batch(self, record: WorkerRecord, task: Task) -> None:
        """Write the task's record for the worker's current launch."""

    def write_control(self, record: WorkerRecord, control: Stop | Revoke | Cancel) -> None:
        """Write a control record (stop, revoke a prefetched task, cancel a job) for the worker."""

    def cleanup(self, record: WorkerRecord, straggler: bool) -> None:
        """Delete an ended launch's records; leave a Stop for it if it may still run (``straggler``)."""

    def roster_changed(self, name: str, live: bool | None) -> None:
        """A named crew's worker ended (``live`` False) or was dismissed (None): update its roster."""

    def report(self, error: BaseException) -> None:
        """An error the user must hear of, raised by their next call that waits or asks."""

    def poll_soon(self) -> None:
        """Look at the inbox within the shortest poll interval."""

    def mark_down(self, record: WorkerRecord) -> None:
        """The worker's process ended: settle it once the inbox was read again."""

    def finish(self, job: Job, result: Result) -> None:
        """End a job with a result the controller made (a named crew stores it first)."""

    def finish_error(self, job: Job, error: BaseException) -> None:
        """End a job with an error result the controller made."""
