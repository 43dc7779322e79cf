"""What a named crew keeps in the store so that another controller can go on after its own dies.

A named crew (``Crew(name="nightly", store=...)``) writes four more kinds of objects (keys in
``protocol.py``): the **journal** of accepted jobs (written before ``send`` returns), **receipts**
of results the user received (``receipts.py``: kept for the life of the run), **verdicts**, the
results the controller made itself (stored before anyone has them: ``verdicts.py``), and the
**roster** of its workers. A crashed controller leaves them, with the workers' queues and the
inbox, for the next one: :func:`recover` reads them all back, and the :class:`Keeper` deletes
each journal, result and verdict object once nothing in it is needed any more. The crew's key
on this machine and the runs closed here are in ``keyfile.py``.

Within one controller a result is delivered once. Across a crash, a result can come twice only
if it was handed out after the last receipt was written: receipts go out at the controller's
next turn, milliseconds after ``receive`` returns on a local store, one PUT later on S3.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

# The key file, the closed runs and the receipts had their place here: imports of them still work.
from crew_core.durable.keyfile import check_not_closed as check_not_closed
from crew_core.durable.keyfile import forget_secret as forget_secret
from crew_core.durable.keyfile import run_closed as run_closed
from crew_core.durable.keyfile import secret_for as secret_for
from crew_core.durable.receipts import JobIds
from crew_core.durable.receipts import Keeper as Keeper
from crew_core.errors import CorruptObjectError, CrewError, KeyNotFoundError, TamperedObjectError
from crew_core.plugin.store import Store
from crew_core.wire import protocol
from crew_core.wire.keys import EPOCH_SPAN as EPOCH_SPAN  # where it was before it joined the key layout
from crew_core.wire.protocol import JobBatch, JournalJob, Receipt, RosterEntry, Verdicts
from crew_core.wire.signing import SECRET_ENV, Sealed, derive, signer_of

log = logging.getLogger("crew")

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def check_name(name: object) -> str:
    """A crew name: lower-case letters, digits, ``-`` and ``_`` (it is the crew's key prefix)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, not {type(name).__name__}")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"name must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit, not {name!r}"
        )
    if re.fullmatch(r"[0-9a-f]{12}", name):
        raise ValueError(f"name {name!r} looks like the id of an unnamed crew: add a letter beyond a-f")
    return name


def read_nonce(store: Store, crew_id: str) -> bytes | None:
    """The current run's nonce of a named crew, or None if the crew does not exist (or lost it)."""
    try:
        return bytes.fromhex(store.get(protocol.nonce_key(crew_id)).decode())
    except KeyNotFoundError:
        return None
    except ValueError:
        raise CrewError(f"the object {crew_id}/nonce in {store.describe()} is not a crew's nonce") from None


def new_nonce(store: Store, crew_id: str) -> bytes:
    """Start a run of a named crew: a fresh random nonce, kept in the store in plain text."""
    nonce = secrets.token_bytes(16)
    store.put(protocol.nonce_key(crew_id), nonce.hex().encode())
    return nonce


def run_secret(key: bytes, nonce: bytes, store_description: str, name: str) -> bytes:
    """The root key of one run (first open to close) of a named crew (see ``wire/signing.py``).

    The user's key stays the same from run to run (a key file, ``CREW_SECRET``); mixing in a
    nonce per run makes every object of an earlier run of the same name fail its check, so a
    copy of last night's answer cannot be planted into tonight's crew; mixing in the store's
    location and the crew's name makes a run copied to another prefix, store or name fail too.
    """
    return derive(key, "run", nonce.hex(), store_description, name)


class JobJournal:
    """Writes accepted jobs to the store before ``send`` returns, several senders per write.

    Group commit: a sender that finds the writer busy waits for it, and the next write carries
    every job that queued up meanwhile.
    """

    def __init__(self, sealed: Sealed, crew_id: str, epoch: int) -> None:
        self.sealed = sealed
        self.prefix = protocol.journal_prefix(crew_id)
        self._seqs = itertools.count(epoch * EPOCH_SPAN + 1)
        self._queue: list[list[Any]] = []  # [job, function bytes, outcome]; outcome None until written
        self._queue_lock = threading.Lock()
        self._write_lock = threading.Lock()

    def commit(self, jobs: list[tuple[JournalJob, bytes]]) -> str:
        """Return once ``jobs`` (each with its pickled function) are in the store, with the key of
        the journal object that holds them; raise if they cannot be (then none is)."""
        entry: list[Any] = [jobs, None]
        with self._queue_lock:
            self._queue.append(entry)
        with self._write_lock:
            if entry[1] is None:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                key = protocol.numbered_key(self.prefix, next(self._seqs))
                saved = [item for e in batch for item in e[0]]
                record = JobBatch(tuple(job for job, _ in saved), {job.function: data for job, data in saved})
                try:
                    self.sealed.put(key, protocol.encode_jobs(record))
                    outcome: str | BaseException = key
                except BaseException as exc:
                    outcome = exc
                for e in batch:
                    e[1] = outcome
        result: str | BaseException = entry[1]  # written by whichever commit wrote our jobs
        if isinstance(result, BaseException):
            raise result
        return result


@dataclass
class Recovery:
    """What a crashed controller left of a named crew, read back by :func:`recover`."""

    lease: protocol.Lease | None = None
    accepted: bool = False  # the crew's "accepted" marker: it accepted a job once
    jobs: dict[int, tuple[JournalJob, str]] = field(default_factory=dict)  # id -> (job, journal key)
    functions: dict[str, bytes] = field(default_factory=dict)
    # Receipts stay for the life of the run (``receipts.py``): the next controller learns only what they name.
    received: JobIds = field(default_factory=JobIds)  # every job a receipt names
    results: dict[int, tuple[bytes, str, str]] = field(default_factory=dict)  # id -> (pickled outcome, worker, key)
    verdicts: dict[int, tuple[frozenset[str], bytes, str]] = field(default_factory=dict)  # id -> (tags, result, key)
    roster: dict[str, RosterEntry] = field(default_factory=dict)
    exited: set[tuple[str, int]] = field(default_factory=set)  # incarnations that left a note
    beats: dict[tuple[str, int], int] = field(default_factory=dict)  # incarnation -> last beat number
    # (task seq, worker, launch) of each answer or refusal in the inbox, as signed by the worker that wrote it
    answered: set[tuple[int, str, int]] = field(default_factory=set)
    tasks: dict[str, list[protocol.Batch]] = field(default_factory=dict)  # worker -> unanswered batches
    launched: dict[str, int] = field(default_factory=dict)  # worker -> highest launch number seen in the store
    records: dict[tuple[str, int, int], str] = field(default_factory=dict)  # (worker, launch, seq) -> task record
    # Records of answered tasks kept while an answer to them is (seq -> key): they show to whom each was addressed
    kept_records: dict[int, str] = field(default_factory=dict)
    garbage: list[str] = field(default_factory=list)  # keys nobody needs: answered, received, read
    corrupt: list[str] = field(default_factory=list)

    @property
    def accepted_jobs(self) -> bool:
        """Whether the crew ever accepted a job (so a new controller resumes it)."""
        lease_jobs = self.lease.jobs if self.lease is not None else 0
        return bool(self.accepted or self.jobs or self.received or lease_jobs)


def recover(sealed: Sealed, crew_id: str) -> Recovery:
    """Read back every object a named crew's last controller left (see the module docstring)."""
    store = sealed.store
    found = Recovery()
    lease_key = protocol.lease_key(crew_id)
    try:
        found.lease = protocol.decode_lease(sealed.get(lease_key), lease_key)
    except KeyNotFoundError:
        pass
    except TamperedObjectError as exc:
        raise CrewError(
            f"crew {crew_id!r} exists in {store.describe()} but was not made with this key: resume it where it"
            f" was started, or with {SECRET_ENV} set as it was there ({exc})"
        ) from None
    try:
        store.get(protocol.accepted_key(crew_id))
        found.accepted = True
    except KeyNotFoundError:
        pass
    with ThreadPoolExecutor(max(1, min(16, int(getattr(store, "request_concurrency", 1)))), "crew-recover") as pool:

        def read(keys: list[str], decode: Callable[[bytes, str], object]) -> list[tuple[str, object]]:
            def one(key: str) -> tuple[str, object]:
                try:
                    payload, signer = sealed.get_signed(key)
                    return key, _spoken_by(decode(payload, key), signer, key)
                except KeyNotFoundError:
                    return key, None  # deleted meanwhile: a worker's straggler cleanup
                except protocol.OtherProtocolError as exc:  # resuming would drop the crew's work silently
                    raise CrewError(
                        f"named crew {crew_id!r} was left by a controller of another crew-core version ({exc});"
                        f" resume it with that version, or remove it with: crew stop {crew_id} --store URL"
                    ) from exc
                except CorruptObjectError as exc:  # forged or damaged: used for nothing
                    log.warning("crew %s: ignoring %s", crew_id, exc)
                    found.corrupt.append(key)
                    return key, None

            return list(pool.map(one, keys))

        for key, batch in read(store.list(protocol.journal_prefix(crew_id)), protocol.decode_jobs):
            if isinstance(batch, JobBatch):
                found.functions.update(batch.functions)
                for job in batch.jobs:
                    found.jobs[job.job_id] = (job, key)
        for _, receipt in read(store.list(protocol.receipt_prefix(crew_id)), protocol.decode_receipt):
            if isinstance(receipt, Receipt):
                found.received.update(receipt.job_ids, receipt.ranges)
        for key, entry in read(store.list(protocol.roster_prefix(crew_id)), protocol.decode_roster):
            if isinstance(entry, RosterEntry):
                found.roster[key.rpartition("/")[2]] = entry
        _read_verdicts(found, store, crew_id, read)
        _list_records(found, store, crew_id)
        _read_inbox(found, store, crew_id, read)
        _read_queues(found, store, crew_id, read)
        _read_launches(found)
    return found


def _spoken_by(record: object, signer: str, key: str) -> object:
    """``record``, unless it is an answer that names another launch than the one that signed it."""
    if isinstance(record, protocol.ResultBatch) and signer_of(record.worker, record.incarnation) != signer:
        raise TamperedObjectError(f"store object {key!r} speaks for a launch that did not sign it")
    return record


def _list_records(found: Recovery, store: Store, crew_id: str) -> None:
    """Every task record in the store, by launch and number (one listing)."""
    prefix = protocol.workers_prefix(crew_id)
    for key in store.list(prefix):
        name, _, rest = key[len(prefix) :].partition("/")
        number, _, seq = rest.partition("/")
        if number.isdigit() and seq.isdigit():
            found.records[(name, int(number), int(seq))] = key


def _read_launches(found: Recovery) -> None:
    """The highest launch number any earlier controller used for each worker, as the store shows it
    (task records, beats, exit notes): a controller that died between numbering a launch and
    enrolling it left tasks under a number its roster does not know, and a launch made again under
    that number would run them."""
    for name, number, _ in found.records:
        found.launched[name] = max(found.launched.get(name, 0), number)
    for name, incarnation in [*found.beats, *found.exited]:
        found.launched[name] = max(found.launched.get(name, 0), incarnation)


_Read = Callable[[list[str], Callable[[bytes, str], object]], list[tuple[str, object]]]


def _read_verdicts(found: Recovery, store: Store, crew_id: str, read: _Read) -> None:
    """Results the last controller made itself: they win over any answer in the inbox (it made
    them first, or it would not have made them), so they are read before it."""
    for key, record in read(store.list(protocol.verdict_prefix(crew_id)), protocol.decode_verdicts):
        useful = False
        if isinstance(record, Verdicts):
            for job_id, tags, data in record.results:
                if job_id in found.jobs and job_id not in found.received and job_id not in found.verdicts:
                    found.verdicts[job_id] = (frozenset(tags), data, key)
                    useful = True
        if not useful:  # every job in it was received
            found.garbage.append(key)


def _read_inbox(found: Recovery, store: Store, crew_id: str, read: _Read) -> None:
    results, exits = [], []
    for key in store.list(protocol.inbox_prefix(crew_id)):
        entry = protocol.parse_inbox_key(key)
        if entry is None:
            continue
        if entry.kind == "beat":
            incarnation = (entry.worker, entry.incarnation)
            found.beats[incarnation] = max(found.beats.get(incarnation, 0), entry.beat)
            found.garbage.append(key)
        elif entry.kind == "exit":
            exits.append(key)
        else:
            results.append(key)
    for key, note in read(exits, protocol.decode_exit):
        if isinstance(note, protocol.ExitNote):  # a note not signed by this crew says nothing
            entry = protocol.parse_inbox_key(key)
            assert entry is not None
            found.exited.add((entry.worker, entry.incarnation))
    found.garbage.extend(exits)
    answers: list[tuple[str, protocol.ResultBatch, list[tuple[int, bytes]]]] = []
    open_jobs = found.jobs.keys() - found.received - found.verdicts.keys()  # results still to deliver
    for key, batch in read(results, protocol.decode_result):
        if not isinstance(batch, protocol.ResultBatch):
            found.garbage.append(key)
            continue
        entry = protocol.parse_inbox_key(key)
        assert entry is not None
        if entry.kind == "refused" and (entry.worker, entry.incarnation) != (batch.worker, batch.incarnation):
            found.garbage.append(key)  # a refusal is its writer's word, under its own name only
            continue
        if not batch.part:  # a part answers some of its task: the rest is still its worker's
            found.answered.add((batch.seq, batch.worker, batch.incarnation))
        wanted = [] if batch.returned else [(job_id, data) for job_id, data in batch.outcomes if job_id in open_jobs]
        if wanted:
            answers.append((key, batch, wanted))
        else:
            found.garbage.append(key)
    _check_addressed(found, crew_id, answers, read)


def _check_addressed(
    found: Recovery, crew_id: str, answers: list[tuple[str, protocol.ResultBatch, list[tuple[int, bytes]]]], read: _Read
) -> None:
    """Take from each answer the outcomes of the jobs its task's record (the controller's, kept
    while the answer is) gave the launch that signed it: a leaked launch key answers no other
    launch's jobs. Those records stay while their answers do."""
    wanted = {found.records.get((batch.worker, batch.incarnation, batch.seq)) for _, batch, _ in answers}
    given: dict[str, set[int]] = {}
    for key, record in read(sorted(key for key in wanted if key is not None), protocol.decode_task):
        if isinstance(record, protocol.Batch):
            given[key] = {call.job_id for call in record.calls}
    for key, batch, outcomes in answers:
        record_key = found.records.get((batch.worker, batch.incarnation, batch.seq))
        jobs = given.get(record_key or "", set())
        useful = [(job_id, data) for job_id, data in outcomes if job_id in jobs]
        if len(useful) < len(outcomes):
            log.warning("crew %s: answer %r speaks for %d job(s) its task's record did not give %s.%d: ignored",
                        crew_id, key, len(outcomes) - len(useful), batch.worker, batch.incarnation)  # fmt: skip
        if not useful:
            found.garbage.append(key)
            continue
        for job_id, data in useful:
            found.results[job_id] = (data, batch.worker, key)
        assert record_key is not None
        found.kept_records[batch.seq] = record_key


def _read_queues(found: Recovery, store: Store, crew_id: str, read: _Read) -> None:
    """The unanswered batches of each worker's current incarnation, if it left no exit note."""
    keys: list[tuple[str, int, str]] = []
    for name, entry in found.roster.items():
        if entry.incarnation and (name, entry.incarnation) not in found.exited:
            prefix = protocol.worker_prefix(crew_id, name, entry.incarnation)
            keys.extend((name, entry.incarnation, key) for key in store.list(prefix))
    owners = {key: (name, incarnation) for name, incarnation, key in keys}
    for key, record in read([key for _, _, key in keys], protocol.decode_task):
        # Answered only by the launch that had it: another worker's refusal of a record planted with
        # this number says nothing of this task (it may still run), as the live controller reads it.
        if not isinstance(record, protocol.Batch):
            continue
        if (record.seq, *owners[key]) not in found.answered:
            found.tasks.setdefault(owners[key][0], []).append(record)
        elif found.kept_records.get(record.seq) != key:  # answered, and no answer kept needs it to speak for it:
            # it goes (before the answer), or a later controller takes it for unanswered
            found.garbage.append(key)
