"""The loop that runs inside every worker: read task batches from the store, run, answer.

A worker is started with one command (``python -m crew_core worker ...``, see ``cli.py``), or by
calling :func:`run_worker` inside an executor. It learns of work from its task feed (one listing
per look) and sleeps between looks in :meth:`Store.wait`, which a store that notifies ends at
once when the controller rings; other stores back off from the shortest to the longest poll
interval, so an idle worker costs few requests. A heartbeat thread writes a beat into the
controller's inbox every interval while the worker has work (one in ten intervals while idle),
and reads the feed while a job runs (prefetched batches, revokes).

The same thread looks at the crew's lease: a worker whose controller is gone leaves once it has
not seen the lease renewed for ``lease_timeout``. A lease that vanished from the store, or that
is not signed by the crew, counts as one that stands still: anyone who can write the store can
delete or overwrite it, and a running job must not end for that. A worker that leaves for this
says why in its exit note, which the controller shows as the cause of a job's crash.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from crew_core.agent.feed import TaskFeed
from crew_core.agent.initializer import run_initializer
from crew_core.agent.sandbox import Interrupted, JobGuard
from crew_core.backoff import Backoff, retry
from crew_core.errors import (
    CorruptObjectError,
    JobCancelledError,
    JobTimeoutError,
    KeyNotFoundError,
    SerializationError,
    StoreError,
    TamperedObjectError,
)
from crew_core.plugin.processes import process_alive
from crew_core.plugin.secret_files import SECRET_FILE_ENV, read_secret_file
from crew_core.results import CANCELLED, ERROR, SUCCESS, TIMEOUT
from crew_core.wire import protocol
from crew_core.wire.protocol import Batch, Call, ExitNote, Heartbeat, Outcome, ResultBatch, WorkerSettings
from crew_core.wire.refs import ObjectCache
from crew_core.wire.serialize import FunctionTable, dump_outcome, load_args
from crew_core.wire.signing import INNER_SECRET_ENV, SECRET_ENV, LaunchKeys, Sealed, secret_from

log = logging.getLogger("crew")

#: Seconds a worker keeps retrying a store that fails before it gives up and exits.
STORE_PATIENCE = 120.0
#: An idle worker beats once every this many heartbeat intervals (it holds no job to lose).
IDLE_BEATS = 10


class _Terminate(BaseException):
    """Raised in the worker's main thread by SIGTERM: leave now, through the ``finally``."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminate()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (our parent, or the controller above a process pool)."""
    return os.getppid() == pid or process_alive(pid)


def run_call(
    call: Call,
    functions: dict[str, bytes],
    table: FunctionTable,
    guard: JobGuard | None = None,
    read: Callable[[str], bytes] | None = None,
) -> bytes:
    """Run one call and return its pickled outcome; never raises for the job's sake.

    ``guard`` (a worker that owns its process) captures the job's output, stops it at its
    timeout, and cleans up after it. ``read`` reads the call's arguments from the store when they
    travelled apart from it (``Call.args_key``).
    """
    started = time.time()
    t0 = t1 = time.perf_counter()
    pid = os.getpid()
    value: Any = None
    error: BaseException | None = None
    status: str = SUCCESS
    text, out, err = "", "", ""
    problems: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if guard is not None:
            guard.begin(call.job_id, call.timeout)
        try:
            fun = table.load(call.function, functions[call.function])
            args, kwargs = load_args(_arguments(call, read))
            try:
                if guard is not None:
                    guard.interrupter.in_job = True  # from here on a timeout or cancel stops it
                t0 = time.perf_counter()  # the job's own time: what batching and prefetch plan with
                value = fun(*args, **kwargs)
            finally:
                t1 = time.perf_counter()
                if guard is not None:  # crew's own code below (formatting a traceback) is never interrupted
                    guard.interrupter.stop()
        except _Terminate:
            raise
        except Interrupted as exc:
            status = exc.reason
            text = "".join(traceback.format_exception(exc))  # where it was when it was stopped
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: the worker lives on
            status, error = ERROR, exc
            tb = exc.__traceback__.tb_next if exc.__traceback__ else None  # drop this frame
            text = "".join(traceback.format_exception(type(exc), exc, tb))
        finally:
            if os.getpid() != pid:  # the job forked and returned in the child: it must not serve
                os._exit(0)
            if guard is not None:
                out, err, problems = guard.end()
                if guard.interrupter.fired is not None:  # even if the job swallowed the interruption
                    status = guard.interrupter.fired
        if status == TIMEOUT:
            limit = f"{call.timeout:g} s" if call.timeout is not None else "time"
            value, error = None, JobTimeoutError(f"job {call.job_id} ran past its timeout of {limit} and was stopped")
        elif status == CANCELLED:
            value, error = None, JobCancelledError(f"job {call.job_id} was cancelled while it ran, and stopped")
    seconds = t1 - t0
    messages = [str(w.message) for w in caught] + [f"crew: {problem}" for problem in problems]
    return dump_outcome(Outcome(status, value, error, text, messages, seconds, started, out, err))


def _arguments(call: Call, read: Callable[[str], bytes] | None) -> bytes:
    """The call's pickled arguments: in its record, or in the store object it names (large ones)."""
    if not call.args_key:
        return call.args
    if read is None:
        raise SerializationError(f"job {call.job_id}'s arguments are in the store ({call.args_key}): none read here")
    try:
        return read(call.args_key)
    except KeyNotFoundError:
        raise SerializationError(
            f"job {call.job_id}'s arguments are gone from the store ({call.args_key}); was its crew closed?"
        ) from None


class WorkerLoop:
    """One worker incarnation: runs its batches in order, beats, and leaves an exit note."""

    def __init__(self, sealed: Sealed, settings: WorkerSettings, interruptible: bool = False) -> None:
        """``interruptible``: the loop runs in its process's main thread with SIGTERM handled, so a
        worker orphaned mid-job can stop the job rather than finish it for nobody."""
        self.sealed = sealed
        self.store = sealed.store
        self.settings = settings
        self.channel = protocol.worker_channel(settings.prefix)
        self.controller = protocol.controller_channel(settings.crew)
        self.feed = TaskFeed(sealed, settings, self._store_call)
        self.functions = FunctionTable()
        self.beats = 0
        self._busy = False  # a batch is running (read by the heartbeat thread)
        self._done = threading.Event()
        self._orphaned = threading.Event()
        self._orphaned_why = ""  # said in the exit note: the controller shows it as a crash's cause
        # The newest (epoch, renewal) of the lease seen, and when: an older copy put back moves nothing.
        self._lease_seen, self._lease_moved = (-1, 0), time.monotonic()
        self._lease_trouble: tuple[str, float] | None = None  # what the last looks found instead, since when
        self._interruptible = interruptible
        self.guard = JobGuard(settings.capture, self.feed.cancelled) if interruptible else None  # else not ours
        if self.guard is not None:
            self.feed.on_cancel = self.guard.interrupter.cancel
        self._jobs_run = 0
        self._born = time.monotonic()

    def _store_call(self, method: Any, *args: Any) -> Any:
        """Call a store method, riding out an outage of up to :data:`STORE_PATIENCE` seconds."""

        def first_failure(exc: BaseException) -> None:
            say(f"crew worker {self.settings.name}: store failing, retrying: {exc}")

        return retry(
            lambda: method(*args),
            patience=STORE_PATIENCE,
            retry_on=(StoreError, OSError),
            give_up_on=(KeyNotFoundError, CorruptObjectError),  # waiting mends neither
            on_first_failure=first_failure,
        )

    def read_args(self, key: str) -> bytes:
        """A job's pickled arguments from the store object ``key`` (large ones travel apart)."""
        data: bytes = self._store_call(self.sealed.get, key)
        return data

    # ----------------------------------------------------------------- heartbeats
    def _beat(self) -> None:
        self.beats += 1
        s = self.settings
        record = Heartbeat(self.beats, os.getpid(), socket.gethostname(), self.feed.last_started)
        self.sealed.put(protocol.beat_key(s.crew, s.name, s.incarnation, self.beats), protocol.encode_json(record))

    def _heartbeat_thread(self) -> None:
        s = self.settings
        renewal = protocol.lease_renewal(s.lease_timeout)
        now = time.monotonic()
        next_beat, next_lease = now + s.heartbeat, now + renewal
        self._lease_moved = now
        ticks = 0
        while not self._done.wait(max(0.0, min(next_beat, next_lease) - time.monotonic())):
            now = time.monotonic()
            if s.parent_pid is not None and not _alive(s.parent_pid):
                self._orphan("its controller's process has ended")
            if now >= next_lease:
                next_lease = now + renewal
                self._check_lease(now)
            if now < next_beat:
                continue
            next_beat = now + s.heartbeat
            ticks += 1
            busy = self._busy or self.feed.queued
            try:
                if busy or ticks % IDLE_BEATS == 0:
                    self._beat()
                if self._busy:
                    self.feed.read()  # prefetched batches and revokes, while the job runs
            except Exception:  # a store hiccup: the next beat retries; a long outage shows as silence
                pass

    def _check_lease(self, now: float) -> None:
        """Leave once the crew's lease has not been seen renewed for ``lease_timeout`` (by this
        clock): whether it stood still, vanished, or is not signed by the crew, none of which a
        job should end for while the controller may still be renewing it."""
        key = protocol.lease_key(self.settings.crew)
        lease, trouble = None, None
        try:
            lease = protocol.decode_lease(self.sealed.get(key), key)
        except KeyNotFoundError:
            trouble = "vanished"
        except TamperedObjectError:
            trouble = "forged"
        except Exception:  # the store is down, or the record unreadable: neither renews the lease
            trouble = "unreadable"
        if lease is not None and (lease.epoch, lease.renewal) > self._lease_seen:
            self._lease_seen, self._lease_moved, self._lease_trouble = (lease.epoch, lease.renewal), now, None
            return
        if trouble is None:
            self._lease_trouble = None
        elif self._lease_trouble is None or self._lease_trouble[0] != trouble:
            self._lease_trouble = (trouble, now)
        if now - self._lease_moved > self.settings.lease_timeout:
            self._orphan(self._lease_lost(now))

    def _lease_lost(self, now: float) -> str:
        """Why a worker leaves that has not seen the lease renewed for ``lease_timeout``."""
        still = f"its controller has not renewed the crew's lease for {now - self._lease_moved:.0f} s"
        if self._lease_trouble is None:
            return still
        trouble, since = self._lease_trouble
        if trouble == "vanished":
            return (f"the crew's lease vanished from the store {now - since:.0f} s ago and was not written"
                    f" again ({still})")  # fmt: skip
        if trouble == "forged":
            return (f"the crew's lease in the store has not been signed by the crew for {now - since:.0f} s: someone"
                    f" else wrote it, or a new run of the crew did ({still})")  # fmt: skip
        return f"the crew's lease could not be read for {now - since:.0f} s ({still})"

    def _orphan(self, why: str) -> None:
        """Nobody will read what this worker does: leave, stopping the job it runs if it can."""
        if self._orphaned.is_set():
            return
        say(f"crew worker {self.settings.name}: leaving, {why}")
        self._orphaned_why = why
        self._orphaned.set()
        self.store.notify(self.channel)
        if self._interruptible and self._busy:
            os.kill(os.getpid(), signal.SIGTERM)  # the job stops where it is (see _on_sigterm)

    # ----------------------------------------------------------------- the loop
    def run(self) -> str:
        """Serve until idle past the timeout, stopped, orphaned or terminated; return why."""
        reason, error = "error", None
        beater = threading.Thread(target=self._heartbeat_thread, name="crew-heartbeat", daemon=True)
        try:
            self._store_call(self.store.wait, self.channel, 0)  # listen before the first look at tasks
            self._store_call(self._beat)
            beater.start()
            error = self._initialize()
            reason = self._serve() if error is None else protocol.INIT_FAILED
        except _Terminate:
            reason = "orphaned" if self._orphaned.is_set() else "terminated"
        except BaseException as exc:  # the store went away, most likely: say so in the exit note
            error = "".join(traceback.format_exception(exc))
        finally:
            self._done.set()
            s = self.settings
            if reason == "orphaned" and error is None:
                error = self._orphaned_why  # why it left: the cause a crash of its job shows
            note = ExitNote(reason, self.feed.last_started, error)
            try:
                self.sealed.put(protocol.exit_key(s.crew, s.name, s.incarnation), protocol.encode_json(note))
                self.store.notify(self.controller)
            except Exception:
                pass
            if beater.is_alive():
                beater.join(timeout=1.0)
            if self.guard is not None:
                self.guard.close()
        return reason

    def _initialize(self) -> str | None:
        """Run the launch's initializer, if it has one; its traceback if it failed."""
        digest = self.settings.initializer
        if not digest:
            return None
        self._busy = True  # it beats as a busy worker meanwhile: a model loading is not taken for a hang
        try:
            failure = run_initializer(lambda key: self._store_call(self.sealed.get, key), self.settings.crew, digest)
        finally:
            self._busy = False
        if failure is not None:
            say(f"crew worker {self.settings.name}: its initializer failed; it runs no job and leaves:\n{failure}")
        elif self.guard is not None:
            self.guard.initialized()
        return failure

    def _serve(self) -> str:
        # Poll with back-off even when the store notifies: a wake-up ends a wait early, but may never
        # come (the local store's pipes do not cross machines on a shared file system).
        low, high = self.store.poll_interval
        pause = Backoff(low, high)
        timeout = self.settings.timeout
        idle_since = time.monotonic()
        look = True  # list the queue before waiting
        while True:
            if self._orphaned.is_set():
                return "orphaned"
            ended = self._lifetime_over()
            if ended is not None:
                return ended  # batches it had not started go back to the backlog (see the exit note)
            if self.guard is not None and self.guard.spoiled:
                return "spoiled"  # a job changed what cannot be put back: a fresh process serves next
            batch = self.feed.pop()
            if batch is None:
                if self.feed.stopped:
                    return "stopped"
                if look and self.feed.read():
                    pause.reset()
                    continue
                look = True  # after any wait: a ring, or the poll that stands in for a ring never heard
                idle = time.monotonic() - idle_since
                if timeout is not None and idle >= timeout:
                    return "idle"
                wait = pause.next() if timeout is None else min(pause.next(), timeout - idle)
                if self.settings.seconds_wall is not None:
                    wait = min(wait, max(0.0, self._born + self.settings.seconds_wall - time.monotonic()))
                self.store.wait(self.channel, wait)
                continue
            self._run_batch(batch)
            idle_since = time.monotonic()
            pause.reset()
            # Where the store rings, a task written meanwhile has rung: without a ring, wait (the
            # controller reads the answer meanwhile) before listing again.
            look = not self.store.notifies or self.store.wait(self.channel, 0)

    def _lifetime_over(self) -> str | None:
        s = self.settings
        if s.tasks_max is not None and self._jobs_run >= s.tasks_max:
            return "tasks_max"
        if s.seconds_wall is not None and time.monotonic() - self._born >= s.seconds_wall:
            return "seconds_wall"
        return None

    def _run_batch(self, batch: Batch) -> None:
        self._busy = True
        outcomes = []
        try:
            for call in batch.calls:
                if call.job_id in self.feed.cancelled:  # cancelled before it started: it never does
                    error = JobCancelledError(f"job {call.job_id} was cancelled before it started")
                    outcomes.append((call.job_id, dump_outcome(Outcome(CANCELLED, error=error))))
                    continue
                outcome = run_call(call, batch.functions, self.functions, self.guard, self.read_args)
                outcomes.append((call.job_id, outcome))
                self._jobs_run += 1
        finally:
            self._busy = False
        s = self.settings
        self.feed.answer(ResultBatch(batch.seq, s.name, s.incarnation, tuple(outcomes)))


def say(message: str) -> None:
    """Tell the worker's log (its stderr), which may be gone: a pipe whose reader died (the
    controller's, killed) must not kill the thread that notices its controller is gone."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # BrokenPipeError; a closed stream
        pass


def run_worker(args: Sequence[str], environment: Mapping[str, str] | None = None) -> str:
    """Run a worker from ``crew worker`` arguments; used by the CLI and by executor workers.

    ``environment`` is the launch's (``Launch.environment``); by default the process's own, from
    which the crew's secret is then removed, so that programs a job starts do not inherit it.
    """
    from crew_core.plugin.registry import store_from_config

    settings = WorkerSettings.from_args(args)
    source = dict(os.environ if environment is None else environment)
    if source.get(SECRET_FILE_ENV):  # read (and deleted) once; it wins over anything inherited
        source.update(read_secret_file(source.pop(SECRET_FILE_ENV)))
    secret = secret_from(source)
    inner_secret = secret_from(source, INNER_SECRET_ENV) if settings.inner is not None else b""
    if environment is None:  # programs a job starts do not inherit them
        for name in (SECRET_ENV, SECRET_FILE_ENV, INNER_SECRET_ENV):
            os.environ.pop(name, None)
    if not settings.task_key:
        raise RuntimeError("crew worker: no --task-key: the controller's crew-core is too old for this worker")
    keys = LaunchKeys(settings.name, settings.incarnation, secret, bytes.fromhex(settings.task_key),
                      settings.tasks_mac)  # fmt: skip
    try:
        store = store_from_config(settings.store)
    except Exception as exc:
        raise StoreError(f"worker {settings.name!r} cannot open its store: {exc}") from exc
    main = threading.current_thread() is threading.main_thread()
    if main:
        signal.signal(signal.SIGTERM, _on_sigterm)
    sealed = Sealed(store, keys)
    if settings.inner is not None:  # a forwarder: it runs an inner crew, not jobs
        from crew_core.nested.forwarder import run_forwarder

        try:
            return run_forwarder(sealed, settings, inner_secret)
        finally:
            store.close()
    objects = ObjectCache(sealed)
    objects.activate()
    try:
        return WorkerLoop(sealed, settings, interruptible=main).run()
    finally:
        objects.deactivate()
        store.close()
