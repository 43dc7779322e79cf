"""The records controller and workers exchange through a store, and their encodings (one place each)."""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass, field
from typing import Any

from crew_core.errors import CorruptObjectError


class OtherProtocolError(CorruptObjectError):
    """A record written by a crew-core that speaks another protocol version: sound, but not readable here."""


#: Version of this protocol; controller and workers must speak the same one.
PROTOCOL = 8
_MAGIC = b"crew"

__all__ = [
    "CLEAN_EXITS",
    "INIT_FAILED",
    "PROTOCOL",
    "Batch",
    "Call",
    "Cancel",
    "ControllerClaim",
    "ExitNote",
    "Heartbeat",
    "JobBatch",
    "JournalJob",
    "Lease",
    "OtherProtocolError",
    "Outcome",
    "Receipt",
    "ResultBatch",
    "Revoke",
    "RosterEntry",
    "Stop",
    "TaskRecord",
    "Verdicts",
    "decode_claim",
    "decode_exit",
    "decode_jobs",
    "decode_lease",
    "decode_receipt",
    "decode_result",
    "decode_roster",
    "decode_task",
    "decode_verdicts",
    "encode_jobs",
    "encode_json",
    "encode_receipt",
    "encode_result",
    "encode_task",
    "encode_verdicts",
]


@dataclass(frozen=True, slots=True)
class Call:
    """One job as it travels: its id, the digest of its function, its pickled arguments.

    Large arguments travel apart: ``args`` is then empty and ``args_key`` names the store object
    that holds them (``args/<digest>.<n>``, see ``runner/spill.py``), which the worker reads.
    """

    job_id: int
    function: str
    args: bytes
    timeout: float | None = None  # seconds the job may run; the worker stops it then
    tags: tuple[str, ...] = ()  # the job's tags, for a forwarder (it routes them in its inner crew)
    args_key: str = ""  # the store object holding the pickled arguments ("": they are in ``args``)


@dataclass(frozen=True, slots=True)
class Batch:
    """Task record: run these calls in order and answer with one :class:`ResultBatch`."""

    seq: int
    calls: tuple[Call, ...]
    functions: dict[str, bytes]  # digest -> pickled function, for every digest in ``calls``


@dataclass(frozen=True, slots=True)
class Stop:
    """Task record: start nothing more and leave (the job running now finishes first)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Revoke:
    """Task record: hand batch ``target`` back unrun if it has not started (else ignore this)."""

    seq: int
    target: int


@dataclass(frozen=True, slots=True)
class Cancel:
    """Task record: job ``job_id`` is cancelled: stop it if it runs, skip it if it waits."""

    seq: int
    job_id: int


TaskRecord = Batch | Stop | Revoke | Cancel


@dataclass(frozen=True, slots=True)
class ResultBatch:
    """The worker's answer to one batch: an outcome per call, or ``returned`` (revoked, not run).

    A batch whose task object could not be read comes back with no outcomes: its jobs are retried.
    A forwarder answers in parts (``part`` 1, 2, ...), each with the outcomes of some of the
    batch's jobs; a part with ``returned`` hands back the jobs it names (their outcomes are
    empty) unrun. ``inner`` carries a forwarder's inner crew summary rows (plain data).
    """

    seq: int
    worker: str
    incarnation: int
    outcomes: tuple[tuple[int, bytes], ...]  # (job id, pickled outcome: see serialize.py)
    returned: bool = False
    part: int = 0
    inner: tuple[dict[str, Any], ...] = ()


@dataclass(slots=True)
class Outcome:
    """What one job did, as the worker saw it."""

    status: str
    value: Any = None
    error: BaseException | None = None
    traceback: str = ""
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    started: float | None = None  # wall-clock time (time.time()) the job started
    stdout: str = ""  # what it wrote to standard output (its last MAX_OUTPUT bytes)
    stderr: str = ""
    worker: str = ""  # who ran it, when that is not the worker that answered (an inner crew's worker)
    tries: int = 0  # runs it had in an inner crew (0: one, on the worker that answered)
    payload: bytes | None = None  # value, error and the rest, still pickled (a forwarder passes them on)


#: Reasons of a worker that left between jobs, every task it started answered (exit code 0).
CLEAN_EXITS = frozenset({"idle", "stopped", "tasks_max", "seconds_wall", "spoiled"})
#: The exit reason of a worker whose initializer failed: it ran nothing and must not be used again.
INIT_FAILED = "init_failed"


@dataclass(frozen=True, slots=True)
class ExitNote:
    """Written once by a worker on its way out: why it left and the last task it started."""

    reason: str  # "idle", "stopped", "tasks_max", "seconds_wall", "spoiled", "orphaned", "terminated", "error",
    # or INIT_FAILED
    last_seq: int  # tasks after this one never started
    error: str | None = None  # the traceback, for reasons "error" and INIT_FAILED; why, for "orphaned"

    @property
    def clean(self) -> bool:
        """True when the worker left between jobs, having answered every task it started."""
        return self.reason in CLEAN_EXITS


@dataclass(frozen=True, slots=True)
class Lease:
    """The controller's lease: workers watch ``renewal`` move (by their own clocks, not this one's)."""

    renewal: int
    timeout: float
    epoch: int = 0  # the controller's number: each one that resumes a named crew takes the next
    jobs: int = 0  # the highest job id accepted so far (ids go on from it after a resume)
    host: str = ""  # where the controller runs, and its process: one controller per named crew
    pid: int = 0
    written: float = 0.0  # wall-clock time of this renewal


def decode_lease(data: bytes, key: str) -> Lease:
    try:
        return Lease(**json.loads(data))
    except Exception as exc:
        raise CorruptObjectError(f"store object {key!r} is not a lease: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ControllerClaim:
    """Who claimed a named crew: the controller's host and process, and when."""

    host: str
    pid: int
    written: float  # wall-clock time of the claim
    lease_timeout: float  # the controller's setting: how soon it renews its lease
    token: str  # random: tells the claimant its own claim from another's


def decode_claim(data: bytes, key: str) -> ControllerClaim:
    try:
        claim = ControllerClaim(**json.loads(data))
    except Exception as exc:
        raise CorruptObjectError(f"store object {key!r} is not a claim: {exc}") from exc
    numbers = (claim.pid, claim.written, claim.lease_timeout)
    if not (isinstance(claim.host, str) and isinstance(claim.token, str)) or any(
        isinstance(n, bool) or not isinstance(n, int | float) for n in numbers
    ):
        raise CorruptObjectError(f"store object {key!r} is a malformed claim")
    return claim


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The body of a heartbeat object (the key already carries the beat number)."""

    beat: int
    pid: int
    host: str
    seq: int  # the task running, or the last one run


@dataclass(frozen=True, slots=True)
class JournalJob:
    """A job as a named crew's journal keeps it."""

    job_id: int
    function: str  # digest of the pickled function, a key of JobBatch.functions
    args: bytes
    tags: tuple[str, ...]
    kind: str
    timeout: float | None = None
    crash_tags: tuple[tuple[str, ...], ...] = ()
    args_key: str = ""  # the store object holding the pickled arguments ("": they are in ``args``)


@dataclass(frozen=True, slots=True)
class JobBatch:
    """Journal record: jobs accepted together, with every function they call."""

    jobs: tuple[JournalJob, ...]
    functions: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class Receipt:
    """Journal record: these jobs' results were handed to the user.

    A receipt merged from many others names runs of ids (``ranges``: the first and last id of
    each) rather than every id; the others name each id (``job_ids``).
    """

    job_ids: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Verdicts:
    """Journal record: results a named crew's controller made itself, not yet received."""

    results: tuple[tuple[int, tuple[str, ...], bytes], ...]  # (job id, its tags, pickled outcome: see serialize.py)


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """How a named crew's controller makes one of its workers again, and which launch is current."""

    worker_class: str
    tags: list[str]
    timeout: float | None
    options: dict[str, Any]  # those that JSON can carry
    incarnation: int
    live: bool = True  # False once that launch has ended: nothing to adopt
    tasks_max: int | None = None
    seconds_wall: float | None = None
    initializer: str = ""  # digest of the initializer's data object (see WorkerSettings.initializer)


def decode_roster(data: bytes, key: str) -> RosterEntry:
    try:
        entry = RosterEntry(**json.loads(data))
        if not isinstance(entry.incarnation, int) or not isinstance(entry.options, dict):
            raise TypeError("incarnation must be an int and options a dict")
    except Exception as exc:
        raise CorruptObjectError(f"store object {key!r} is not a roster entry: {exc}") from exc
    return entry


# ----------------------------------------------------------------------------- encodings
class _PlainUnpickler(pickle.Unpickler):
    """Unpickles only plain data (tuples, lists, dicts, str, bytes, numbers): no class, no call."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a crew record may not name {module}.{name}")


def _dump(kind: str, body: tuple[Any, ...]) -> bytes:
    return pickle.dumps((_MAGIC, PROTOCOL, kind, body), protocol=5)


def _load(data: bytes, key: str, kinds: tuple[str, ...]) -> tuple[str, tuple[Any, ...]]:
    try:
        magic, version, kind, body = _PlainUnpickler(io.BytesIO(data)).load()
    except Exception as exc:
        raise CorruptObjectError(f"store object {key!r} is corrupt ({type(exc).__name__}: {exc})") from exc
    if magic != _MAGIC or kind not in kinds or not isinstance(body, tuple):
        raise CorruptObjectError(f"store object {key!r} is not a crew {'/'.join(kinds)} record")
    if version != PROTOCOL:
        raise OtherProtocolError(
            f"store object {key!r} speaks crew protocol {version!r}, this process speaks {PROTOCOL}:"
            " install the same crew-core version on the controller and the workers"
        )
    return kind, body


def encode_task(record: TaskRecord) -> bytes:
    """Encode a task record (:class:`Batch`, :class:`Stop` or :class:`Revoke`)."""
    if isinstance(record, Batch):
        calls = tuple((c.job_id, c.function, c.args, c.timeout, c.tags, c.args_key) for c in record.calls)
        return _dump("batch", (record.seq, calls, record.functions))
    if isinstance(record, Stop):
        return _dump("stop", (record.seq,))
    if isinstance(record, Cancel):
        return _dump("cancel", (record.seq, record.job_id))
    return _dump("revoke", (record.seq, record.target))


def decode_task(data: bytes, key: str) -> TaskRecord:
    """Decode :func:`encode_task`; raise :class:`CorruptObjectError` naming ``key``."""
    kind, body = _load(data, key, ("batch", "stop", "revoke", "cancel"))
    record: TaskRecord
    try:
        if kind == "batch":
            seq, calls, functions = body
            record = Batch(seq, tuple(Call(*c) for c in calls), functions)
            _check_batch(record)
        elif kind == "stop":
            (seq,) = body
            record = Stop(seq)
        elif kind == "cancel":
            seq, job_id = body
            record = Cancel(seq, job_id)
            if not isinstance(job_id, int):
                raise TypeError("job_id must be an int")
        else:
            seq, target = body
            record = Revoke(seq, target)
        if not isinstance(record.seq, int):
            raise TypeError("seq must be an int")
    except (TypeError, ValueError) as exc:
        raise CorruptObjectError(f"store object {key!r} is a malformed {kind} record: {exc}") from exc
    return record


def _check_batch(batch: Batch) -> None:
    if not isinstance(batch.functions, dict):
        raise TypeError("functions must be a dict")
    for call in batch.calls:
        if not (isinstance(call.job_id, int) and isinstance(call.args, bytes) and call.function in batch.functions):
            raise TypeError("each call must be (int, known function digest, bytes, timeout)")
        if call.timeout is not None and (not isinstance(call.timeout, float) or not call.timeout > 0):
            raise TypeError("a call's timeout must be None or a positive float")
        if not isinstance(call.tags, tuple) or not all(isinstance(tag, str) for tag in call.tags):
            raise TypeError("a call's tags must be a tuple of strings")
        if not isinstance(call.args_key, str):
            raise TypeError("a call's args_key must be a string")


def encode_result(record: ResultBatch) -> bytes:
    body = (record.seq, record.worker, record.incarnation, record.outcomes, record.returned, record.part, record.inner)
    return _dump("result", body)


def decode_result(data: bytes, key: str) -> ResultBatch:
    """Decode :func:`encode_result`; raise :class:`CorruptObjectError` naming ``key``."""
    _, body = _load(data, key, ("result",))
    try:
        seq, worker, incarnation, outcomes, returned, part, inner = body
        record = ResultBatch(seq, worker, incarnation, tuple(outcomes), bool(returned), part, tuple(inner))
        for job_id, outcome in record.outcomes:
            if not isinstance(job_id, int) or not isinstance(outcome, bytes):
                raise TypeError("outcomes must be (int, bytes)")
        if not isinstance(part, int) or part < 0 or not all(isinstance(row, dict) for row in record.inner):
            raise TypeError("part must be a count and inner a tuple of dicts")
    except (TypeError, ValueError) as exc:
        raise CorruptObjectError(f"store object {key!r} is a malformed result record: {exc}") from exc
    return record


def encode_jobs(record: JobBatch) -> bytes:
    jobs = tuple((j.job_id, j.function, j.args, j.tags, j.kind, j.timeout, j.crash_tags, j.args_key)
                 for j in record.jobs)  # fmt: skip
    return _dump("jobs", (jobs, record.functions))


def decode_jobs(data: bytes, key: str) -> JobBatch:
    """Decode :func:`encode_jobs`; raise :class:`CorruptObjectError` naming ``key``."""
    _, body = _load(data, key, ("jobs",))
    try:
        jobs, functions = body
        record = JobBatch(tuple(JournalJob(*job) for job in jobs), functions)
        if not isinstance(functions, dict):
            raise TypeError("functions must be a dict")
        for job in record.jobs:
            ok = isinstance(job.job_id, int) and isinstance(job.args, bytes) and job.function in functions
            ok = ok and isinstance(job.args_key, str)
            if not (ok and isinstance(job.tags, tuple) and isinstance(job.kind, str)):
                raise TypeError("each job must be (int, known function digest, bytes, tuple of tags, str)")
    except (TypeError, ValueError) as exc:
        raise CorruptObjectError(f"store object {key!r} is a malformed jobs record: {exc}") from exc
    return record


def encode_receipt(record: Receipt) -> bytes:
    # Without ranges, the body of before merged receipts existed: any reader of this protocol reads it.
    return _dump("receipt", (record.job_ids, record.ranges) if record.ranges else (record.job_ids,))


def decode_receipt(data: bytes, key: str) -> Receipt:
    """Decode :func:`encode_receipt`; raise :class:`CorruptObjectError` naming ``key``."""
    _, body = _load(data, key, ("receipt",))
    try:
        ids, ranges = body if len(body) == 2 else (*body, ())
        if not all(isinstance(i, int) for i in ids):
            raise TypeError("job ids must be ints")
        ranges = tuple((first, last) for first, last in ranges)
        if not all(isinstance(first, int) and isinstance(last, int) and first <= last for first, last in ranges):
            raise TypeError("ranges must be pairs of ints, first <= last")
        return Receipt(tuple(ids), ranges)
    except (TypeError, ValueError) as exc:
        raise CorruptObjectError(f"store object {key!r} is a malformed receipt: {exc}") from exc


def encode_verdicts(record: Verdicts) -> bytes:
    return _dump("verdicts", (record.results,))


def decode_verdicts(data: bytes, key: str) -> Verdicts:
    """Decode :func:`encode_verdicts`; raise :class:`CorruptObjectError` naming ``key``."""
    _, body = _load(data, key, ("verdicts",))
    try:
        (results,) = body
        record = Verdicts(tuple((job_id, tuple(tags), outcome) for job_id, tags, outcome in results))
        for job_id, tags, outcome in record.results:
            if not (isinstance(job_id, int) and isinstance(outcome, bytes) and all(isinstance(t, str) for t in tags)):
                raise TypeError("results must be (int, tuple of tags, bytes)")
    except (TypeError, ValueError) as exc:
        raise CorruptObjectError(f"store object {key!r} is a malformed verdicts record: {exc}") from exc
    return record


def encode_json(record: Any) -> bytes:
    """Encode a :class:`Lease`, :class:`ControllerClaim`, :class:`ExitNote`, :class:`Heartbeat` or
    :class:`RosterEntry` as JSON."""
    return json.dumps({name: getattr(record, name) for name in record.__slots__}, separators=(",", ":")).encode()


def decode_exit(data: bytes, key: str) -> ExitNote:
    try:
        return ExitNote(**json.loads(data))
    except Exception as exc:
        raise CorruptObjectError(f"store object {key!r} is not an exit note: {exc}") from exc
