"""What the engine asks of the runner, as records: the effects of its decisions outside its state.

The engine changes its own state at once (the ledger's jobs, the worker records) and says what
must happen outside it as orders: write this task or control record, clean up an ended launch,
update the roster, tell the user, poll soon. It never calls the runner. The runner takes the
orders in the order they were given and carries them out (``Manager.carry_out``) before it writes,
polls or sleeps, as dask's worker carries out the instructions its state machine returns. A test
of an engine rule reads the orders instead of faking a controller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from crew_core.engine.ledger import Task
    from crew_core.engine.workers import WorkerRecord
    from crew_core.wire.protocol import Cancel, Revoke, Stop


class Place(NamedTuple):
    """Where a worker's launch reads its records, as it was when the order was given (a later
    relaunch of the worker has another place: an order for the old one never reaches the new)."""

    worker: str
    incarnation: int
    prefix: str
    channel: str
    nested: bool  # a forwarder: its calls carry their tags

    @classmethod
    def of(cls, record: WorkerRecord) -> Place:
        return cls(record.name, record.incarnation, record.prefix, record.channel, record.backend.nested)


class WriteTask(NamedTuple):
    """Write the task's record for the launch."""

    place: Place
    task: Task


class WriteControl(NamedTuple):
    """Write a control record for the launch: stop, revoke a prefetched task, cancel a job."""

    place: Place
    control: Stop | Revoke | Cancel


class Cleanup(NamedTuple):
    """Delete an ended launch's records; leave ``stop`` in their place if it may still run."""

    place: Place
    stop: Stop | None


class RosterChanged(NamedTuple):
    """A named crew's worker ended (``live`` False) or was dismissed (None): update its roster."""

    name: str
    live: bool | None


class Report(NamedTuple):
    """An error the user must hear of, raised by their next call that waits or asks."""

    error: BaseException


class PollSoon(NamedTuple):
    """Look at the inbox within the shortest poll interval."""


Order = WriteTask | WriteControl | Cleanup | RosterChanged | Report | PollSoon


class Orders(list[Order]):
    """The orders given and not yet carried out, oldest first (a list: the runner asks often
    whether there are any, which must cost no call)."""

    def add(self, order: Order) -> None:
        self.append(order)

    def take(self) -> list[Order]:
        """Every order given so far (the runner carries them out in this order)."""
        items = self[:]
        self.clear()
        return items
