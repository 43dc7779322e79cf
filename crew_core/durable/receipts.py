"""What the user of a named crew has received, kept in the store for the life of the run.

A **receipt** names jobs whose results the user has: a controller that resumes the crew after a
crash delivers none of them again, and runs none of them again, whatever else the store holds.
So receipts are never deleted while the run lives (``close()`` and ``crew stop`` remove them
with the rest): a store writer who saved journal and inbox objects and puts them back after the
user received them (their receipts written, the objects deleted) gets nothing delivered again,
after any number of crashes. To keep their number small, every :data:`MERGE_AT` receipts the
controller writes one that names every id received so far as runs of ids (``Receipt.ranges``)
and only then deletes the ones it merges: about :data:`MERGE_AT` receipt objects stand at once,
and a resuming controller reads that many.

The :class:`Keeper` also decides when the journal, result and verdict objects of received jobs
go: only once a receipt covers every job they serve.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from crew_core.errors import CorruptObjectError, KeyNotFoundError
from crew_core.wire import protocol
from crew_core.wire.keys import EPOCH_SPAN
from crew_core.wire.protocol import Receipt
from crew_core.wire.signing import Sealed

log = logging.getLogger("crew")

#: Receipt objects a run keeps before they are merged into one (that one included).
MERGE_AT = 8


class JobIds:
    """A set of job ids kept as sorted runs (``first``, ``last``): small however many are received,
    since results come back in roughly the order their jobs were sent."""

    def __init__(self, ids: Iterable[int] = (), ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        self.update(ids, ranges)

    def update(self, ids: Iterable[int] = (), ranges: Iterable[tuple[int, int]] = ()) -> None:
        """Add ``ids`` and every id of each (first, last) in ``ranges``."""
        runs = sorted([*zip(self._firsts, self._lasts, strict=True), *((i, i) for i in ids), *ranges])
        firsts: list[int] = []
        lasts: list[int] = []
        for first, last in runs:
            if lasts and first <= lasts[-1] + 1:
                lasts[-1] = max(lasts[-1], last)
            else:
                firsts.append(first)
                lasts.append(last)
        self._firsts, self._lasts = firsts, lasts

    def union(self, ids: Iterable[int] = (), ranges: Iterable[tuple[int, int]] = ()) -> JobIds:
        """A new set: these ids, ``ids`` and the ids of ``ranges``."""
        return JobIds(ids, (*self.ranges(), *ranges))

    def ranges(self) -> tuple[tuple[int, int], ...]:
        """The ids as sorted, disjoint runs (first, last)."""
        return tuple(zip(self._firsts, self._lasts, strict=True))

    def __contains__(self, job_id: object) -> bool:
        if not isinstance(job_id, int):
            return False
        at = bisect.bisect_right(self._firsts, job_id) - 1
        return at >= 0 and job_id <= self._lasts[at]

    def __iter__(self) -> Iterator[int]:
        for first, last in zip(self._firsts, self._lasts, strict=True):
            yield from range(first, last + 1)

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last in zip(self._firsts, self._lasts, strict=True))

    def __repr__(self) -> str:
        return f"JobIds({', '.join(f'{a}-{b}' if a != b else str(a) for a, b in self.ranges())})"


@dataclass
class Keeper:
    """Which journal, result and verdict objects still matter (the rest is deleted), and the receipts.

    Order keeps recovery right: a result, verdict or journal object goes only after the receipt
    for its jobs is in the store, and a receipt only after a merged receipt that names its jobs is.
    """

    sealed: Sealed
    crew_id: str
    epoch: int
    journal_of: dict[int, str] = field(default_factory=dict)  # job id -> journal key
    result_of: dict[int, str] = field(default_factory=dict)  # job id -> result or verdict key holding its outcome
    left: dict[str, set[int]] = field(default_factory=dict)  # journal, result or verdict key -> jobs it serves
    receipts: set[str] = field(default_factory=set)  # this run's receipt objects in the store
    unreceipted: list[int] = field(default_factory=list)  # received by the user, no receipt written yet
    receipted: JobIds = field(default_factory=JobIds)  # every job the receipts in the store name
    # A task's record stays while an answer to it is kept: it shows whom the task went to (a
    # resuming controller takes from an answer only the jobs its record gave the launch that signed it).
    records: dict[int, str] = field(default_factory=dict)  # task seq -> its record's key
    answers_to: dict[int, set[str]] = field(default_factory=dict)  # task seq -> its answer keys kept

    def __post_init__(self) -> None:
        self._seqs = itertools.count(self.epoch * EPOCH_SPAN + 1)
        self._earlier_read = False  # the receipts of the controllers before this one are in ``receipted``

    def journaled(self, job_id: int, key: str) -> None:
        self.journal_of[job_id] = key
        self.left.setdefault(key, set()).add(job_id)

    def answered(self, job_id: int, key: str) -> None:
        """The job's outcome lies in result (or verdict) object ``key``: keep it until the user has it."""
        self.result_of[job_id] = key
        self.left.setdefault(key, set()).add(job_id)
        seq = self._task_of(key)
        if seq is not None:
            self.answers_to.setdefault(seq, set()).add(key)

    def hold_record(self, seq: int, key: str) -> bool:
        """Task ``seq`` is answered: keep its record ``key`` while an answer to it is kept (it goes
        first, with the last of them). False if none is: the record may go now."""
        if not self.answers_to.get(seq):
            return False
        self.records[seq] = key
        return True

    def _task_of(self, key: str) -> int | None:
        """The task an answer key answers (None for a verdict key)."""
        if not key.startswith(protocol.inbox_prefix(self.crew_id)):
            return None
        entry = protocol.parse_inbox_key(key)
        return entry.seq if entry is not None and entry.kind == "result" else None

    def received(self, job_id: int) -> None:
        """The user has the job's result: the next receipt names it."""
        self.unreceipted.append(job_id)

    def write_receipt(self, lock: AbstractContextManager[Any]) -> list[str]:
        """Write a receipt for the results handed out since the last one; return keys now garbage.

        Every :data:`MERGE_AT`-th receipt names every job received in the run, and the receipts
        before it are garbage too (it is in the store: they may go in any order). ``lock`` guards
        this bookkeeping (the controller's lock); the store requests go without it, so that users'
        threads do not wait on the store meanwhile.
        """
        with lock:
            ids, self.unreceipted = self.unreceipted, []
        if not ids:
            return []
        try:
            if not self._earlier_read:
                self._read_earlier_receipts(lock)
            merge = len(self.receipts) + 1 >= MERGE_AT
            receipted = self.receipted.union(ids)
            record = Receipt((), receipted.ranges()) if merge else Receipt(tuple(ids))
            key = protocol.numbered_key(protocol.receipt_prefix(self.crew_id), next(self._seqs))
            self.sealed.put(key, protocol.encode_receipt(record))
        except BaseException:
            with lock:
                self.unreceipted[:0] = ids
            raise
        with lock:
            self.receipted = receipted
            merged = sorted(self.receipts) if merge else []  # only now that the merged one is in the store
            if merge:
                self.receipts.clear()
            self.receipts.add(key)
            return self._receipted(ids) + merged

    def _read_earlier_receipts(self, lock: AbstractContextManager[Any]) -> None:
        """Learn the receipts the controllers before this one left (the next merge names their jobs
        and frees them), from the store: ``recover`` hands the next controller what they name, not them."""
        found: list[str] = []
        ranges: list[tuple[int, int]] = []
        for key in self.sealed.store.list(protocol.receipt_prefix(self.crew_id)):
            try:
                receipt = protocol.decode_receipt(self.sealed.get(key), key)
            except KeyNotFoundError:
                continue  # freed by the controller before, and deleted meanwhile
            except CorruptObjectError as exc:  # not this run's: it names nothing, and is not ours to delete
                log.warning("crew %s: ignoring %s", self.crew_id, exc)
                continue
            found.append(key)
            ranges += [(i, i) for i in receipt.job_ids] + list(receipt.ranges)
        with lock:
            self.receipts.update(found)
            self.receipted = self.receipted.union((), ranges)
            self._earlier_read = True

    def _receipted(self, ids: list[int]) -> list[str]:
        garbage = []
        for job_id in ids:
            for key_of in (self.journal_of, self.result_of):
                held = key_of.pop(job_id, None)
                if held is not None:
                    jobs = self.left.get(held)
                    if jobs is not None:
                        jobs.discard(job_id)
                        if not jobs:
                            del self.left[held]
                            garbage.append(held)
                            garbage += self._release_record(held)
        return garbage

    def _release_record(self, answer: str) -> list[str]:
        """The record of the task ``answer`` answers, if that was the last answer to it kept."""
        seq = self._task_of(answer)
        keys = self.answers_to.get(seq) if seq is not None else None
        if seq is None or keys is None:
            return []
        keys.discard(answer)
        if keys:
            return []
        del self.answers_to[seq]
        record = self.records.pop(seq, None)
        return [record] if record is not None else []
