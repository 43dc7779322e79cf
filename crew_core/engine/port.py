"""The seam between the engine and the runner: all the engine reads of its owner.

The dispatcher, the supervisor and the reading of answers see their controller only through
:class:`Controller`, which ``crew_core.runner.manager.Manager`` satisfies (mypy checks it) and a
test can fake. They read through it and change their own state (the ledger, the worker records);
what must happen outside that state they give as :mod:`crew_core.engine.orders` in ``orders``,
which the runner carries out. Nothing here does I/O, waits or reads a clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from crew_core.engine.dispatcher import Dispatcher
    from crew_core.engine.ledger import Ledger
    from crew_core.engine.orders import Orders
    from crew_core.engine.supervisor import Supervisor, WorkerRecord
    from crew_core.errors import StoreGoneError
    from crew_core.plugin.store import Store
    from crew_core.settings import Settings


class KeySource(Protocol):
    """The keys the engine hands to launches (``wire.signing.RunKeys``; the engine signs nothing)."""

    @property
    def public(self) -> bytes:
        """The public half of the crew's signing key (on the worker's command line)."""

    def launch_secrets(self, worker: str, incarnation: int, forwarder: bool = False) -> dict[str, str]:
        """What one launch gets through its backend's secret mechanism (``Launch.secrets``)."""


class Controller(Protocol):
    """What one crew's engine reads, and where it leaves its orders (see the module docstring)."""

    crew_id: str
    label: str  # how its launches are found on their backends
    store_spec: dict[str, Any]  # how a worker rebuilds the store
    @property
    def keys(self) -> KeySource:
        """The run's keys: what each launch gets."""
    settings: Settings
    store: Store  # its poll_interval only
    prefetch_horizon: float
    ledger: Ledger
    records: dict[str, WorkerRecord]
    supervisor: Supervisor
    dispatcher: Dispatcher
    orders: Orders  # what the runner is to do, in order
    gone: StoreGoneError | None  # the store is gone for good: no inbox will be read again

    @property
    def polls(self) -> int:
        """Complete inbox polls so far: a worker found ended is settled after the next one."""

    @property
    def keeps_verdicts(self) -> bool:
        """A named crew: a result the controller makes is stored before anyone has it."""

    def poll_floor(self) -> float:
        """Half the shortest running job: the controller polls no faster than that."""
