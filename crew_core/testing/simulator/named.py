"""The user's side of a simulated crew, and a named crew's controllers: opened, killed, resumed.

A :class:`Front` does what ``crew_core.api.crew.Crew`` does around the controller for ``send``,
``receive`` and ``cancel``; :class:`NamedFront` does it as a named crew does: a job is journaled
(the real :class:`~crew_core.durable.journal.JobJournal`) before ``send`` returns, ``receive``
writes the receipt of what it handed out before it hands out more, and ``cancel`` stores its
results before it returns. :func:`open_named` starts a named crew's first controller and
:func:`resume_named` opens the next one from what the store holds, as ``Crew(name=...)`` does:
``recover``, a claim on the next epoch, ``take_over`` (the workers that left no exit note are
adopted from the roster), and nothing the dead controller held in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from crew_core.durable import journal
from crew_core.durable.claim import claim_crew
from crew_core.durable.journal import JobJournal
from crew_core.engine.ledger import Job
from crew_core.errors import StoreError
from crew_core.results import Result
from crew_core.runner import resume
from crew_core.runner.manager import Manager
from crew_core.runner.resume import roster_entry
from crew_core.testing.simulator.agents import SimWorker
from crew_core.testing.simulator.store import ControllerLink
from crew_core.wire import protocol
from crew_core.wire.protocol import JournalJob, RosterEntry
from crew_core.wire.signing import Sealed

if TYPE_CHECKING:
    from crew_core.testing.simulator.world import World

#: What every simulated job's function pickles to (the agents run no function).
FUNCTION = b"function"


class Front:
    """The user's calls on an unnamed crew: ``send``, ``receive`` (every result there is), ``cancel``."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager

    def send(self, job: Job) -> bool:
        """Send ``job``; False if it was not accepted (a named crew could not journal it)."""
        self.manager.submit(job, FUNCTION)
        return True

    def receive(self, deliver: Callable[[Result], None]) -> None:
        """Hand every result waiting to ``deliver``, as a user calling ``receive()`` in a loop."""
        ledger = self.manager.ledger
        while (result := ledger.pop_result(frozenset())) is not None:
            deliver(result)

    def cancel(self, job_id: int | None, tags: frozenset[str] | None) -> None:
        """``Crew.cancel(job_id)`` or ``Crew.cancel(tags=tags)``."""
        self.manager.cancel(job_id, tags)


class NamedFront(Front):
    """The user's calls on a named crew, through the real journal and receipts (``Crew``'s named path)."""

    def __init__(self, manager: Manager, journal: JobJournal, accepted: bool) -> None:
        super().__init__(manager)
        self.journal = journal
        self.accepted = accepted  # the crew's "accepted" marker is in the store

    def send(self, job: Job) -> bool:
        """Journal the job, then hand it to the controller (``NamedRun._accept_durably`` in ``api/named.py``)."""
        saved = JournalJob(job.id, job.function, job.args, tuple(sorted(job.tags)), job.kind, job.timeout, ())
        m = self.manager
        try:
            key = self.journal.commit([(saved, FUNCTION)])
        except StoreError:
            return False  # send raised: the user sends it again later
        if not self.accepted:  # (the store goes down only between steps: this put finds it as the last did)
            m.store.put(f"{m.crew_id}/accepted", b"")
            self.accepted = True
        with m.lock:
            assert m.keeper is not None
            m.keeper.journaled(job.id, key)
        m.submit(job, FUNCTION)
        return True

    def receive(self, deliver: Callable[[Result], None]) -> None:
        """Each result as ``Crew.receive`` hands it out: the receipt of the ones before goes first."""
        m = self.manager
        m.sync()
        while True:
            m.write_receipts_now()  # receive() does this before it takes a result
            with m.lock:
                result = m.ledger.pop_result(frozenset())
                if result is None:
                    return
                m.received(result.id)
            deliver(result)

    def cancel(self, job_id: int | None, tags: frozenset[str] | None) -> None:
        """``Crew.cancel``: the results it makes are stored before it returns (if the store lets it)."""
        m = self.manager
        m.cancel(job_id, tags)
        m.save_verdicts_now()
        m.hand_over()


def _manager(world: World, link: ControllerLink, epoch: int) -> Manager:
    manager = Manager(world.crew_id, link, {"name": "simulated"}, world.settings, world.secret, epoch=epoch,
                      durable=True, jobs_sent=lambda: world.sent, clock=lambda: world.now,
                      backend_pool=world.pool, draw=world.rng.random)  # fmt: skip
    world.watch(manager)
    return manager


def open_named(world: World, link: ControllerLink, workers: list[tuple[str, frozenset[str], bool]]) -> NamedFront:
    """The first controller of a named crew, which recruits ``workers`` (name, tags, whether its
    launches end with their controller) into its roster."""
    manager = _manager(world, link, 0)
    for name, tags, bound in workers:
        entry = roster_entry(SimWorker, tags, None, {"bound": bound}, (world.tasks_max, None), world.initializer)
        manager.sealed.put(f"{protocol.roster_prefix(world.crew_id)}{name}", protocol.encode_json(entry))
        manager.rosters[name] = entry
        manager.add_worker(SimWorker(name, world, bound, tags=tags), (world.tasks_max, None), world.initializer)
    return NamedFront(manager, JobJournal(manager.sealed, world.crew_id, 0), accepted=False)


def resume_named(world: World, link: ControllerLink) -> NamedFront:
    """The next controller, from what the store holds: recover, claim, take over (``api.named.open_named``)."""
    # Looked up in their modules at each call, so that a mutant put into them is the one called.
    recovery = journal.recover(Sealed(link, world.secret), world.crew_id)
    if not recovery.accepted_jobs:  # the world kills controllers only once a send returned
        raise AssertionError("the crew never accepted a job: a new controller would start it afresh")
    last = recovery.lease.epoch if recovery.lease is not None else 0
    epoch = claim_crew(link, world.crew_id, last, world.settings.lease_timeout, open_here=False).epoch
    manager = _manager(world, link, epoch)

    def remake(name: str, entry: RosterEntry) -> SimWorker:
        return SimWorker(name, world, bool(entry.options.get("bound")), tags=entry.tags, timeout=entry.timeout)

    with manager.lock:
        resume.take_over(manager, recovery, remake)
    if manager.ledger.tasks:
        manager.poll_soon()  # Manager.start: adopted workers' answers may be waiting already
    return NamedFront(manager, JobJournal(manager.sealed, world.crew_id, epoch), accepted=True)

