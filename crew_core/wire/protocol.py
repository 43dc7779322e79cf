"""The key layout and the records that controller and workers exchange through a store (protocol 5).

Every object has exactly one writer. Under the crew's prefix ``<crew>/``:

``workers/<name>/<incarnation>/<seq>``
    task records for one launch ("incarnation") of a worker, written by the controller: a
    :class:`Batch` of calls, a :class:`Stop` or a :class:`Revoke`. ``seq`` is a crew-wide counter
    (12 digits), so a worker finds everything new with one listing after the last key it read.
``inbox/<seq>``
    the :class:`ResultBatch` answering task ``seq``, written by the worker that ran it.
``inbox/<seq>.<part>``
    part ``part`` (1, 2, ...) of the answer to task ``seq``: a forwarder (a worker running an
    inner crew, see ``forwarder.py``) answers each job of a batch as it finishes, in parts.
``inbox/refused.<name>.<incarnation>.<seq>.<nonce>``
    a :class:`ResultBatch` with no outcomes: the worker found a record at ``<seq>`` under its
    prefix that it refused (not signed for that key: planted) or that was gone before it read it.
    The number in such a key is anyone's, so the worker says so under a key of its own, never
    under ``inbox/<seq>``, which may be another worker's answer (``nonce``: random, so a refusal
    planted beforehand under the same name is not deleted with the real one).
``inbox/beat.<name>.<incarnation>.<n>``
    heartbeat ``n`` of a worker (a new key each time: the listing itself shows the beat).
``inbox/exit.<name>.<incarnation>``
    the worker's :class:`ExitNote`, written as it leaves.
``data/<digest>``
    an object put once with ``Crew.put`` and read by any worker (content-addressed).
``lease``
    the controller's :class:`Lease`, renewed every minute or so: a worker that sees it stand
    still for its ``lease_timeout`` (or vanish) leaves, so no worker outlives its controller.

A named crew (``Crew(name=...)``) also keeps what another controller needs to go on after its
own dies (see ``durable.py``):

``journal/<seq>``
    a :class:`JobBatch`: jobs accepted by ``send``, written before ``send`` returns.
``received/<seq>``
    a :class:`Receipt`: ids of jobs whose results the user has received.
``verdicts/<seq>``
    a :class:`Verdicts` record: results the controller made itself (a job out of tries, a launch
    refused ``max_tries`` times, a cancel, a timeout the worker could not stop, a job no worker is
    left for), written before the user can have them (see ``verdicts.py``).
``roster/<name>``
    a :class:`RosterEntry` (JSON): how to make the worker again, and its current incarnation.
``claim/<epoch>``
    a :class:`ControllerClaim` (JSON), created (never replaced) with the store's create-only write by the
    controller that opens the crew as its ``epoch``-th: of controllers opening it at the same
    instant, only the one that creates the key goes on (see ``claim.py``).

Every crew also notes where its workers run, so that ``crew stop`` can find them on their
backends after the controller is gone (even those still queued, which never read the lease):

``places/<worker class>.<digest>``
    ``{"worker_class": ..., "place": ...}`` (JSON): one :meth:`Worker.place` of the crew's workers.

Everything a controller must notice lies under ``inbox/``, so one listing per poll, with
``start_after`` past the results already collected, serves the whole crew whatever its size. The
controller deletes what it has read, in batches. What the controller writes for its successor
(journal, receipts, verdicts, roster) lies outside it: only a resuming controller reads it, and no
poll pays for listing it.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from crew_core.errors import CorruptObjectError
from crew_core.plugin.launches import LABEL_ENV as LABEL_ENV  # where plugins found them before engine v2
from crew_core.plugin.launches import LaunchSeen as LaunchSeen
from crew_core.plugin.launches import crew_label as crew_label
from crew_core.plugin.launches import launch_in as launch_in
from crew_core.settings import DEFAULTS

#: Version of this protocol; controller and workers must speak the same one.
PROTOCOL = 5
_SEQ_DIGITS = 12
_PART_DIGITS = 6
_MAGIC = b"crew"


# ----------------------------------------------------------------------------- keys
def worker_prefix(crew_id: str, name: str, incarnation: int) -> str:
    """Key prefix of one launch ("incarnation") of a worker: its task records live here."""
    return f"{crew_id}/workers/{name}/{incarnation}/"


def task_key(prefix: str, seq: int) -> str:
    return f"{prefix}{seq:0{_SEQ_DIGITS}d}"


def seq_of(key: str) -> int | None:
    """The sequence number at the end of a task or result key, or None."""
    tail = key.rpartition("/")[2]
    return int(tail) if tail.isdigit() else None


def inbox_prefix(crew_id: str) -> str:
    """Where workers leave everything for the controller."""
    return f"{crew_id}/inbox/"


def result_key(crew_id: str, seq: int) -> str:
    return f"{crew_id}/inbox/{seq:0{_SEQ_DIGITS}d}"


def answer_key(crew_id: str, seq: int, part: int = 0) -> str:
    """Where the answer to task ``seq`` goes: whole (``part`` 0), or one of its parts (1, 2, ...)."""
    key = result_key(crew_id, seq)
    return f"{key}.{part:0{_PART_DIGITS}d}" if part else key


def inbox_after(crew_id: str, watermark: int) -> str:
    """The ``start_after`` of an inbox listing that skips every answer (and part) up to ``watermark``."""
    return f"{result_key(crew_id, watermark)}.~"  # "~" sorts after the digits of any part


def refusal_key(crew_id: str, name: str, incarnation: int, seq: int, nonce: str) -> str:
    """Where a worker says it refused (or could not find) the record at ``seq`` under its prefix."""
    return f"{crew_id}/inbox/refused.{name}.{incarnation}.{seq:0{_SEQ_DIGITS}d}.{nonce}"


def beat_key(crew_id: str, name: str, incarnation: int, beat: int) -> str:
    return f"{crew_id}/inbox/beat.{name}.{incarnation}.{beat:0{_SEQ_DIGITS}d}"


def exit_key(crew_id: str, name: str, incarnation: int) -> str:
    return f"{crew_id}/inbox/exit.{name}.{incarnation}"


def data_key(crew_id: str, digest: str) -> str:
    return f"{crew_id}/data/{digest}"


def lease_key(crew_id: str) -> str:
    """The crew's lease, renewed by its controller; workers leave once it stops moving."""
    return f"{crew_id}/lease"


def crew_prefix(crew_id: str) -> str:
    """Everything of one crew lies under this prefix."""
    return f"{crew_id}/"


def journal_prefix(crew_id: str) -> str:
    return f"{crew_id}/journal/"


def numbered_key(prefix: str, seq: int) -> str:
    """A journal, receipt or verdicts object: numbered so that a listing returns them in order."""
    return f"{prefix}{seq:0{_SEQ_DIGITS}d}"


def roster_key(crew_id: str, worker: str) -> str:
    """A named crew's :class:`RosterEntry` for one worker."""
    return f"{roster_prefix(crew_id)}{worker}"


def nonce_key(crew_id: str) -> str:
    """A named crew's run nonce (see ``durable/journal.py``)."""
    return f"{crew_id}/nonce"


def accepted_key(crew_id: str) -> str:
    """Present once a named crew has accepted its first job (an empty object)."""
    return f"{crew_id}/accepted"


def receipt_prefix(crew_id: str) -> str:
    return f"{crew_id}/received/"


def verdict_prefix(crew_id: str) -> str:
    return f"{crew_id}/verdicts/"


def roster_prefix(crew_id: str) -> str:
    return f"{crew_id}/roster/"


def places_prefix(crew_id: str) -> str:
    """Where the crew notes the places its workers run (``Worker.place``), for ``crew stop``."""
    return f"{crew_id}/places/"


def place_key(crew_id: str, worker_class: str, place: dict[str, Any]) -> str:
    """One key per distinct place of a worker class: recruiting there again writes nothing new."""
    digest = hashlib.sha256(json.dumps(place, sort_keys=True).encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in worker_class) or "worker"
    return f"{places_prefix(crew_id)}{safe}.{digest}"


def claim_prefix(crew_id: str) -> str:
    return f"{crew_id}/claim/"


def claim_key(crew_id: str, epoch: int) -> str:
    """The claim of the controller that opens a named crew as its ``epoch``-th."""
    return f"{crew_id}/claim/{epoch:010d}"


def claim_epoch(key: str) -> int | None:
    """The epoch of a claim key, or None for a key that is not one."""
    number = key.rpartition("/")[2]
    return int(number) if len(number) == 10 and number.isdigit() else None


def workers_prefix(crew_id: str) -> str:
    return f"{crew_id}/workers/"


def lease_renewal(lease_timeout: float) -> float:
    """Seconds between renewals of a lease (and between workers' looks at it)."""
    return max(0.05, min(60.0, lease_timeout / 4))


# Channels are shaped like keys under the crew's prefix, so a store that keeps something per
# channel (the local store's named pipes) can keep it beside the keys and clean both together.
def controller_channel(crew_id: str) -> str:
    """Notification channel on which workers (and the user's threads) wake the controller."""
    return f"{crew_id}/controller"


def worker_channel(prefix: str) -> str:
    """Notification channel on which the controller wakes the incarnation at ``prefix``."""
    return f"{prefix}wake"


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """What an inbox key says by its name alone."""

    key: str
    kind: str  # "result", "refused", "beat" or "exit"
    seq: int = 0  # result: the task it answers; refused: the number of the record refused
    part: int = 0  # result: 0 for a whole answer, else the number of this part of it
    worker: str = ""  # refused, beat, exit
    incarnation: int = 0
    beat: int = 0


def parse_inbox_key(key: str) -> InboxEntry | None:
    """Read an inbox key's name; None for a key this protocol does not know."""
    tail = key.rpartition("/")[2]
    if tail.isdigit():
        return InboxEntry(key, "result", seq=int(tail))
    kind, _, rest = tail.partition(".")
    if kind.isdigit() and rest.isdigit():
        return InboxEntry(key, "result", seq=int(kind), part=int(rest))
    try:
        if kind == "beat":
            name, incarnation, beat = rest.rsplit(".", 2)
            return InboxEntry(key, "beat", worker=name, incarnation=int(incarnation), beat=int(beat))
        if kind == "exit":
            name, incarnation = rest.rsplit(".", 1)
            return InboxEntry(key, "exit", worker=name, incarnation=int(incarnation))
        if kind == "refused":
            name, incarnation, seq, _nonce = rest.rsplit(".", 3)
            return InboxEntry(key, "refused", seq=int(seq), worker=name, incarnation=int(incarnation))
    except ValueError:
        return None
    return None


# ----------------------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class Call:
    """One job as it travels: its id, the digest of its function, its pickled arguments."""

    job_id: int
    function: str
    args: bytes
    timeout: float | None = None  # seconds the job may run; the worker stops it then
    tags: tuple[str, ...] = ()  # the job's tags, for a forwarder (it routes them in its inner crew)


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


@dataclass(frozen=True, slots=True)
class ExitNote:
    """Written once by a worker on its way out: why it left and the last task it started."""

    reason: str  # "idle", "stopped", "tasks_max", "seconds_wall", "spoiled", "orphaned", "terminated", "error"
    last_seq: int  # tasks after this one never started
    error: str | None = None  # the traceback, for reason "error"

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


@dataclass(frozen=True, slots=True)
class JobBatch:
    """Journal record: jobs accepted together, with every function they call."""

    jobs: tuple[JournalJob, ...]
    functions: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class Receipt:
    """Journal record: these jobs' results were handed to the user."""

    job_ids: tuple[int, ...]


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
        raise CorruptObjectError(
            f"store object {key!r} speaks crew protocol {version!r}, this process speaks {PROTOCOL}:"
            " install the same crew-core version on the controller and the workers"
        )
    return kind, body


def encode_task(record: TaskRecord) -> bytes:
    """Encode a task record (:class:`Batch`, :class:`Stop` or :class:`Revoke`)."""
    if isinstance(record, Batch):
        calls = tuple((c.job_id, c.function, c.args, c.timeout, c.tags) for c in record.calls)
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
    jobs = tuple((j.job_id, j.function, j.args, j.tags, j.kind, j.timeout, j.crash_tags) for j in record.jobs)
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
            if not (ok and isinstance(job.tags, tuple) and isinstance(job.kind, str)):
                raise TypeError("each job must be (int, known function digest, bytes, tuple of tags, str)")
    except (TypeError, ValueError) as exc:
        raise CorruptObjectError(f"store object {key!r} is a malformed jobs record: {exc}") from exc
    return record


def encode_receipt(record: Receipt) -> bytes:
    return _dump("receipt", (record.job_ids,))


def decode_receipt(data: bytes, key: str) -> Receipt:
    _, body = _load(data, key, ("receipt",))
    try:
        (ids,) = body
        if not all(isinstance(i, int) for i in ids):
            raise TypeError("job ids must be ints")
        return Receipt(tuple(ids))
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


# ----------------------------------------------------------------------------- worker settings
@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker needs, as passed on its command line (encoded and parsed here only)."""

    store: dict[str, Any]
    crew: str
    name: str
    incarnation: int
    timeout: float | None = None
    heartbeat: float = 2.0
    lease_timeout: float = DEFAULTS["lease_timeout"]
    parent_pid: int | None = None
    capture: bool = True  # jobs' output is captured and sent back with their results
    tasks_max: int | None = None  # leave after this many jobs
    seconds_wall: float | None = None  # leave after this many seconds (between jobs)
    inner: dict[str, Any] | None = None  # a forwarder: the inner crew it runs (see inner.py)

    @property
    def prefix(self) -> str:
        return worker_prefix(self.crew, self.name, self.incarnation)

    def to_args(self) -> tuple[str, ...]:
        """The arguments of ``python -m crew_core worker``."""
        args = [
            "--store", json.dumps(self.store, separators=(",", ":")),
            "--crew", self.crew,
            "--name", self.name,
            "--incarnation", str(self.incarnation),
            "--heartbeat", repr(float(self.heartbeat)),
            "--lease-timeout", repr(float(self.lease_timeout)),
            "--protocol", str(PROTOCOL),
        ]  # fmt: skip
        if self.timeout is not None:
            args += ["--timeout", repr(float(self.timeout))]
        if self.parent_pid is not None:
            args += ["--parent-pid", str(self.parent_pid)]
        if not self.capture:
            args += ["--no-capture"]
        if self.tasks_max is not None:
            args += ["--tasks-max", str(self.tasks_max)]
        if self.seconds_wall is not None:
            args += ["--seconds-wall", repr(float(self.seconds_wall))]
        if self.inner is not None:
            args += ["--inner", json.dumps(self.inner, separators=(",", ":"))]
        return tuple(args)

    @classmethod
    def from_args(cls, args: Sequence[str]) -> WorkerSettings:
        """Parse :meth:`to_args`; exit with status 2 and a message on bad arguments (argparse)."""
        ns = _worker_parser().parse_args(list(args))
        if ns.protocol != PROTOCOL:
            from importlib.metadata import version

            raise SystemExit(
                f"crew worker: the controller speaks crew protocol {ns.protocol}, this worker's crew-core"
                f" {version('crew-core')} speaks protocol {PROTOCOL}; install the same crew-core version on both"
            )
        return cls(
            store=json.loads(ns.store),
            crew=ns.crew,
            name=ns.name,
            incarnation=ns.incarnation,
            timeout=ns.timeout,
            heartbeat=ns.heartbeat,
            lease_timeout=ns.lease_timeout,
            parent_pid=ns.parent_pid,
            capture=not ns.no_capture,
            tasks_max=ns.tasks_max,
            seconds_wall=ns.seconds_wall,
            inner=json.loads(ns.inner) if ns.inner is not None else None,
        )


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be a positive number of seconds, got {text!r}")
    return value


def _worker_parser() -> Any:
    import argparse  # only workers parse arguments: importing it costs every controller time

    parser = argparse.ArgumentParser(prog="crew worker", description="Run one crew worker (started by a crew).")
    parser.add_argument("--store", required=True, help="store spec as JSON: {name, class, config}")
    parser.add_argument("--crew", required=True, help="id of the crew the worker serves")
    parser.add_argument("--name", required=True, help="worker name")
    parser.add_argument("--incarnation", type=int, required=True, help="launch number")
    parser.add_argument("--timeout", type=_positive, default=None, help="idle timeout in seconds")
    parser.add_argument("--heartbeat", type=_positive, default=2.0, help="seconds between heartbeats")
    parser.add_argument("--lease-timeout", type=_positive, default=DEFAULTS["lease_timeout"],
                        help="leave once the lease stands still")  # fmt: skip
    parser.add_argument("--protocol", type=int, default=PROTOCOL, help="protocol version of the controller")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process ends")
    parser.add_argument("--no-capture", action="store_true", help="leave jobs' output on the worker's own")
    parser.add_argument("--tasks-max", type=int, default=None, help="leave after this many jobs")
    parser.add_argument("--seconds-wall", type=_positive, default=None, help="leave after this many seconds")
    parser.add_argument("--inner", default=None, help="forward to an inner crew: its spec as JSON")
    return parser
