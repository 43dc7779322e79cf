"""Results a named crew's controller makes itself, stored before anyone can have them.

A worker's answer is in the store before the controller reads it. A result the controller makes
(a job out of tries, a launch refused ``max_tries`` times, a cancel, a timeout its worker could
not stop, a job no worker is left for) would live only in its memory: were it to die before the
user had it, the next controller would run the job again (crashing more workers, running a
cancelled job). So in a named crew the ledger holds such a result back (``Ledger.unsaved``) until
a :class:`VerdictLog` has written it to ``<crew>/verdicts/<seq>``, with every other made since the
last write; a resuming controller delivers it instead of running the job (``durable.recover``).
Like an answer, the object is deleted once a receipt covers all its jobs (``durable.Keeper``).

A write that fails is tried again with the controller's other writes, and the results wait
meanwhile (``receive`` raises the store's error once, as for any failed write): handed out
unstored, a crash could still run their jobs again. If the controller dies first nothing is lost
either: the jobs are still in the journal, and the next controller runs them.
"""

from __future__ import annotations

import itertools
import threading

from crew_core.durable.journal import EPOCH_SPAN, Keeper
from crew_core.engine.ledger import Ledger
from crew_core.wire import protocol
from crew_core.wire.protocol import Verdicts
from crew_core.wire.serialize import dump_result
from crew_core.wire.signing import Sealed


class VerdictLog:
    """Writes the results waiting in a ledger's ``unsaved``, one object per write, from any thread."""

    def __init__(self, sealed: Sealed, crew_id: str, epoch: int) -> None:
        self.sealed = sealed
        self.prefix = protocol.verdict_prefix(crew_id)
        self._seqs = itertools.count(epoch * EPOCH_SPAN + 1)
        self._retry_key: str | None = None  # a write that failed may have landed: the next one replaces it
        self._writing = threading.Lock()  # one write at a time: who waited finds its results written

    def write(self, changed: threading.Condition, ledger: Ledger, keeper: Keeper) -> int:
        """Store what waits in ``ledger.unsaved``, then hand it out; return how many results.

        ``changed`` is the controller's condition (its lock guards the ledger), notified once they
        are out. They stay in ``ledger.unsaved`` while written, so that ``receive`` knows they
        are coming; if the write fails they stay there, and the error is raised.
        """
        with self._writing:
            with changed:
                entries = list(ledger.unsaved)
            if not entries:
                return 0
            key = self._retry_key or protocol.numbered_key(self.prefix, next(self._seqs))
            try:
                results = tuple((job.id, tuple(sorted(result.tags)), dump_result(result)) for job, result in entries)
                self.sealed.put(key, protocol.encode_verdicts(Verdicts(results)))
            except BaseException:
                self._retry_key = key  # the retry holds these results and maybe more: a superset
                raise
            self._retry_key = None
            written = {job for job, _ in entries}  # jobs compare by identity
            with changed:
                stored = ledger.take_unsaved(written)  # those not handed out meanwhile
                for job, _ in stored:
                    keeper.answered(job.id, key)  # kept in the store until a receipt covers it
                ledger.saved(stored)
                changed.notify_all()
            return len(stored)
