"""What a crew keeps in the store for whoever comes next: its lease, and for a named crew its
rosters, receipts and the results it made itself.

The lease tells workers the controller lives (they leave once it stands still) and a next
controller which epoch and job ids came before. A named crew also writes down how to make each
worker again and which launch is current (rosters), which results the user has (receipts, via
``durable.journal.Keeper``), and the results it made itself before anyone can have them
(verdicts, ``durable.verdicts``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from crew_core.engine.supervisor import WorkerRecord
from crew_core.wire import protocol
from crew_core.wire.protocol import RosterEntry

if TYPE_CHECKING:
    from crew_core.durable.journal import Keeper
    from crew_core.durable.verdicts import VerdictLog
    from crew_core.runner.manager import Manager

log = logging.getLogger("crew")


class Bookkeeping:
    """One crew's durable book-keeping (see the module docstring); written by the loop, outside the lock."""

    def __init__(self, manager: Manager, durable: bool, jobs_sent: Callable[[], int]) -> None:
        self.m = manager
        self.keeper: Keeper | None = None  # receipts, and results kept until received
        self.verdicts: VerdictLog | None = None  # the results it makes itself: stored before handed out
        if durable:  # a named crew's modules load only when one opens
            from crew_core.durable.journal import Keeper
            from crew_core.durable.verdicts import VerdictLog

            self.keeper = Keeper(manager.sealed, manager.crew_id, manager.epoch)
            self.verdicts = VerdictLog(manager.sealed, manager.crew_id, manager.epoch)
        self.rosters: dict[str, RosterEntry] = {}  # named crews: how to make each worker again
        self.roster_updates: dict[str, RosterEntry | None] = {}  # to write (None: to delete)
        # Roster writes come from the loop and from backend threads (enroll): one at a time, and
        # only the current entry, so an older one never lands after a newer.
        self._roster_io = threading.Lock()
        self.jobs_sent = jobs_sent
        self.lease = 0
        self.lease_due = 0.0

    def write_out(self) -> None:
        """Write what is due (the loop, holding its I/O lock): rosters, then verdicts, then a receipt."""
        m = self.m
        if self.roster_updates:  # first: a worker that ended must not be adopted by a next controller
            self._write_rosters()
        if m.ledger.unsaved and m.clock() >= m.health.write_retry_at:
            self.save_verdicts()
        if self.keeper is not None and self.keeper.unreceipted and m.clock() >= m.health.write_retry_at:
            self.write_receipt()

    # ------------------------------------------------------------------ the lease
    def renew_lease(self) -> None:
        """Move the crew's lease on; workers leave once it has stood still for ``lease_timeout``."""
        m = self.m
        self.lease += 1
        lease = protocol.Lease(self.lease, m.settings.lease_timeout, m.epoch, self.jobs_sent(),
                               socket.gethostname(), os.getpid(), time.time())  # fmt: skip
        m.sealed.put(protocol.lease_key(m.crew_id), protocol.encode_json(lease))
        self.lease_due = m.clock() + protocol.lease_renewal(m.settings.lease_timeout)

    def renew_lease_if_due(self) -> None:
        m = self.m
        if m.clock() >= self.lease_due:
            try:
                self.renew_lease()
            except Exception as exc:
                log.warning("crew %s cannot renew its lease: %s", m.crew_id, exc)
                m.health.trouble(exc)
                self.lease_due = m.clock() + m.health.backoff.next()

    # ------------------------------------------------------------------ rosters
    def enroll(self, record: WorkerRecord) -> None:
        """A named crew writes down how to make the worker again, and which launch is current."""
        with self.m.lock:
            entry = self.rosters.get(record.name)
            if entry is None:
                return
            entry = self.rosters[record.name] = replace(entry, incarnation=record.incarnation, live=True)
            self.roster_updates.pop(record.name, None)  # an update for the launch before: superseded
        with self._roster_io:
            self.m.sealed.put(protocol.roster_key(self.m.crew_id, record.name), protocol.encode_json(entry))

    def roster_changed(self, name: str, live: bool | None) -> None:
        """A named crew's worker ended (``live`` False) or was dismissed (None): say so in the roster."""
        entry = self.rosters.get(name)
        if entry is None:
            return
        if live is None:
            del self.rosters[name]
            self.roster_updates[name] = None
        else:
            entry = self.rosters[name] = replace(entry, live=live)
            self.roster_updates[name] = entry

    def _write_rosters(self) -> None:
        m = self.m
        with m.lock:
            updates, self.roster_updates = self.roster_updates, {}
        for name, entry in updates.items():
            try:
                with self._roster_io:
                    if self.rosters.get(name) is not entry:
                        continue  # a launch enrolled since: its entry is newer, and written already
                    if entry is None:
                        m.store.delete([protocol.roster_key(m.crew_id, name)])
                    else:
                        m.sealed.put(protocol.roster_key(m.crew_id, name), protocol.encode_json(entry))
            except Exception as exc:
                log.warning("crew %s cannot update worker %r in its roster yet: %s", m.crew_id, name, exc)
                with m.lock:
                    self.roster_updates.setdefault(name, entry)

    # ------------------------------------------------------------------ receipts
    def receipts_due(self) -> bool:
        return self.keeper is not None and bool(self.keeper.unreceipted)

    def write_receipt(self) -> None:
        """Say in the store which results the user has: a next controller will not hand them out again."""
        m = self.m
        assert self.keeper is not None
        try:
            garbage = self.keeper.write_receipt(m.lock)  # the PUT without the lock: receive() goes on
        except Exception as exc:
            log.warning("crew %s cannot write a receipt yet: %s", m.crew_id, exc)
            with m.lock:
                m.health.write_failed()
            m.health.trouble(exc)
            return
        with m.lock:
            m.inbox.discard(garbage)
        try:
            self.renew_lease()  # its "jobs" high-water: ids go on from it after a resume
        except Exception as exc:
            log.warning("crew %s cannot renew its lease: %s", m.crew_id, exc)

    # ------------------------------------------------------------------ verdicts
    def save_verdicts(self) -> None:
        """Store the results this controller made and hand them out; if the store fails they wait
        (handed out unstored, a crash would run their jobs again) and the loop tries again later."""
        m = self.m
        assert self.verdicts is not None and self.keeper is not None
        try:
            self.verdicts.write(m.changed, m.ledger, self.keeper)
        except Exception as exc:
            log.warning("crew %s cannot store the results it made yet (they wait for the store): %s",
                        m.crew_id, exc)  # fmt: skip
            with m.lock:
                m.health.write_failed()
            m.health.trouble(exc)
