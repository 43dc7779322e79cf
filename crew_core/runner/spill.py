"""Jobs' pickled arguments: kept in the controller's memory up to a budget, written to the store beyond it.

The controller keeps a job's arguments until the job ends, since a job whose worker dies runs
again. Kept in memory, they travel inside the job's task record; that is fastest for small ones,
but 50 jobs of a 100 MB array would hold 5 GB. So ``send`` keeps them in memory only while the
arguments held stay within the crew's ``args_memory`` and those of this job are at most an eighth
of it; the others it writes to the store itself (``args/<digest>.<n>``, signed like a
``crew.put`` object) before it returns, and the task record names the object, which the worker
reads. Equal arguments are written once while a job in flight has them (their digest says so),
and each object is deleted once no job in flight has it: the controller's memory stays bounded
whatever the arguments' sizes, and the store holds each distinct large argument once.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from crew_core.engine.ledger import Job
from crew_core.wire import protocol
from crew_core.wire.serialize import digest
from crew_core.wire.signing import Sealed

#: Bytes in the ``MB`` of the ``args_memory`` setting.
MB = 1_000_000
#: Arguments larger than this share of the budget go to the store even when there is room: kept
#: in memory they would be copied again into their task record, for little gain.
LARGEST_SHARE = 8
#: Bytes of arguments too few to count: no more than the job's own bookkeeping, which no budget
#: bounds either, and counting them would slow every tiny job's ``send``.
UNCOUNTED = 1024


@dataclass(slots=True)
class _Written:
    """Arguments in the store, and how many jobs in flight have them."""

    digest: str
    key: str
    uses: int


class ArgsKeeper:
    """Where each job's pickled arguments are kept (see the module docstring); safe from any thread.

    ``budget``: bytes of arguments kept in memory (None: no limit). ``discard`` is given the keys
    of objects no job needs any more (under the crew's lock: the loop deletes them).
    """

    def __init__(
        self, sealed: Sealed, crew_id: str, budget: float | None, discard: Callable[[list[str]], None]
    ) -> None:
        self.sealed = sealed
        self.crew_id = crew_id
        self.budget = math.inf if budget is None else budget
        self.largest = self.budget / LARGEST_SHARE
        self.uncounted = UNCOUNTED if self.budget else -1  # a budget of 0: every job's go to the store
        self.discard = discard
        self.held = 0  # bytes of arguments kept in memory for jobs not ended
        self._by_digest: dict[str, _Written] = {}
        self._by_key: dict[str, _Written] = {}
        self._lock = threading.Lock()  # its own: sends never wait for the crew's lock (the loop holds it)

    def take(self, data: bytes) -> tuple[bytes, str]:
        """Keep a new job's pickled arguments: ``(data, "")`` in memory, or ``(b"", key)`` once in
        the store (written now, in the caller's thread, unless a job in flight has equal ones)."""
        size = len(data)
        if size <= self.uncounted:
            return data, ""
        if size <= self.largest and self.held + size <= self.budget:
            with self._lock:
                if self.held + size <= self.budget:  # checked again: another send may have taken the room
                    self.held += size
                    return data, ""
        name = digest(data)
        with self._lock:
            written = self._by_digest.get(name)
            if written is not None:
                written.uses += 1
                return b"", written.key
        key = protocol.args_key(self.crew_id, f"{name}.{secrets.token_hex(4)}")
        self.sealed.put(key, data)  # a failure fails the send: nothing was taken
        with self._lock:
            written = _Written(name, key, 1)
            self._by_digest.setdefault(name, written)  # another send may have written equal ones meanwhile
            self._by_key[key] = written
        return b"", key

    def release(self, job: Job) -> None:
        """The job's arguments are needed no more (it ended, or was never accepted)."""
        if not job.args_key and len(job.args) <= self.uncounted:
            return
        with self._lock:
            if not job.args_key:
                self.held -= len(job.args)
                return
            written = self._by_key.get(job.args_key)
            if written is None:
                return
            written.uses -= 1
            if written.uses:
                return
            del self._by_key[written.key]
            if self._by_digest.get(written.digest) is written:
                del self._by_digest[written.digest]
        self.discard([written.key])

    def restored(self, jobs: Iterable[Job]) -> None:
        """Jobs a resumed named crew took over from the controller before it: their arguments count."""
        prefix = protocol.args_key(self.crew_id, "")
        with self._lock:
            for job in jobs:
                if not job.args_key:
                    self.held += len(job.args) if len(job.args) > self.uncounted else 0
                    continue
                written = self._by_key.get(job.args_key)
                if written is None:
                    name = job.args_key[len(prefix) :].partition(".")[0]
                    written = self._by_key[job.args_key] = _Written(name, job.args_key, 0)
                    self._by_digest.setdefault(name, written)
                written.uses += 1
