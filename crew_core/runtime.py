"""The loop that runs inside every worker: read task batches from the store, run, write results.

A worker is started with one command (``python -m crew_core worker ...``, see ``cli.py``), or by
calling :func:`run_worker` inside an executor. It learns of work by listing its ``tasks/`` prefix
(one request per poll) and sleeps between polls in :meth:`Store.wait`, which a store that
notifies ends at once when the controller rings; other stores back off from the shortest to the
longest poll interval so an idle worker costs few requests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import protocol
from .errors import CorruptObjectError, KeyNotFoundError, StoreError
from .serialize import dump_outcome, load_call
from .store import Store

#: Seconds a worker keeps retrying a store that fails before it gives up and exits.
STORE_PATIENCE = 120.0


class _Terminate(BaseException):
    """Raised in the worker's main thread by SIGTERM: leave now, through the ``finally``."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminate()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (our parent, or the controller above a process pool)."""
    if os.getppid() == pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited and only waits to be reaped (Linux tells us so)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def run_job(payload: bytes) -> bytes:
    """Run one pickled call and return its pickled outcome; never raises for the job's sake."""
    started = time.time()
    t0 = time.perf_counter()
    value: Any = None
    error: BaseException | None = None
    text = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fun, args, kwargs = load_call(payload)
            value = fun(*args, **kwargs)
        except _Terminate:
            raise
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: the worker lives on
            error = exc
            tb = exc.__traceback__.tb_next if exc.__traceback__ else None  # drop this frame
            text = "".join(traceback.format_exception(type(exc), exc, tb))
    seconds = time.perf_counter() - t0
    messages = [str(w.message) for w in caught]
    return dump_outcome(value, error, text, messages, seconds, started)


@dataclass
class WorkerSettings:
    """Everything a worker needs, as passed on its command line."""

    store: dict[str, Any]
    crew: str
    name: str
    incarnation: int
    timeout: float | None = None
    heartbeat: float = 2.0
    parent_pid: int | None = None

    def to_args(self) -> tuple[str, ...]:
        args = [
            "--store", json.dumps(self.store, separators=(",", ":")),
            "--crew", self.crew,
            "--name", self.name,
            "--incarnation", str(self.incarnation),
            "--heartbeat", repr(self.heartbeat),
        ]  # fmt: skip
        if self.timeout is not None:
            args += ["--timeout", repr(float(self.timeout))]
        if self.parent_pid is not None:
            args += ["--parent-pid", str(self.parent_pid)]
        return tuple(args)


class WorkerLoop:
    """One worker incarnation: polls its tasks, runs them in order, beats, and leaves a note."""

    def __init__(self, store: Store, settings: WorkerSettings) -> None:
        self.store = store
        self.settings = settings
        self.prefix = protocol.worker_prefix(settings.crew, settings.name, settings.incarnation)
        self.tasks_prefix = self.prefix + "tasks/"
        self.channel = protocol.worker_channel(settings.crew, settings.name, settings.incarnation)
        self.controller = protocol.controller_channel(settings.crew)
        self.last_seq = 0
        self.beats = 0
        self._done = threading.Event()
        self._orphaned = threading.Event()

    def _store_call(self, method: Any, *args: Any) -> Any:
        """Call a store method, riding out an outage of up to :data:`STORE_PATIENCE` seconds."""
        delay, deadline = 0.05, None
        while True:
            try:
                return method(*args)
            except KeyNotFoundError:
                raise
            except (StoreError, OSError) as exc:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + STORE_PATIENCE
                    print(f"crew worker {self.settings.name}: store failing, retrying: {exc}", file=sys.stderr)
                if now >= deadline:
                    raise
                time.sleep(min(delay, deadline - now))
                delay = min(delay * 2, 5.0)

    # ----------------------------------------------------------------- heartbeats
    def _beat(self) -> None:
        self.beats += 1
        record = {"beat": self.beats, "pid": os.getpid(), "host": socket.gethostname(), "seq": self.last_seq}
        self.store.put(protocol.heartbeat_key(self.prefix), protocol.encode_json(record))

    def _heartbeat_thread(self) -> None:
        parent = self.settings.parent_pid
        while not self._done.wait(self.settings.heartbeat):
            if parent is not None and not _alive(parent):
                self._orphaned.set()  # the controller's process is gone: nobody will read results
                self.store.notify(self.channel)
            try:
                self._beat()
            except Exception:  # a store hiccup: the next beat retries; a long outage shows as silence
                pass

    # ----------------------------------------------------------------- the loop
    def run(self) -> str:
        """Serve until idle past the timeout, stopped, orphaned or terminated; return why."""
        reason, error = "error", None
        beater = threading.Thread(target=self._heartbeat_thread, name="crew-heartbeat", daemon=True)
        try:
            self._store_call(self.store.wait, self.channel, 0)  # listen before the first look at tasks
            self._store_call(self._beat)
            beater.start()
            reason = self._serve()
        except _Terminate:
            reason = "terminated"
        except BaseException as exc:  # the store went away, most likely: say so in the exit note
            error = "".join(traceback.format_exception(exc))
        finally:
            self._done.set()
            record = {"reason": reason, "last_seq": self.last_seq, "error": error}
            try:
                self.store.put(protocol.exit_key(self.prefix), protocol.encode_json(record))
                self.store.notify(self.controller)
            except Exception:
                pass
            if beater.is_alive():
                beater.join(timeout=1.0)
        return reason

    def _serve(self) -> str:
        # Poll with back-off even when the store notifies: a wake-up ends a wait early, but may never
        # come (the local store's pipes do not cross machines on a shared file system).
        low, high = self.store.poll_interval
        timeout = self.settings.timeout
        pause = low
        idle_since = time.monotonic()
        while True:
            if self._orphaned.is_set():
                return "orphaned"
            after = protocol.task_key(self.prefix, self.last_seq)
            keys = self._store_call(self.store.list, self.tasks_prefix, after)
            if keys:
                if keys[-1] == protocol.stop_key(self.prefix):
                    return "stopped"
                for key in keys:
                    seq = protocol.seq_of(key)
                    if seq is not None and seq > self.last_seq:
                        self._run_batch(key, seq)
                        self.last_seq = seq
                idle_since = time.monotonic()
                pause = low
                continue
            idle = time.monotonic() - idle_since
            if timeout is not None and idle >= timeout:
                return "idle"
            wait = pause if timeout is None else min(pause, timeout - idle)
            self.store.wait(self.channel, wait)
            pause = min(pause * 2, high)

    def _run_batch(self, key: str, seq: int) -> None:
        try:
            items = protocol.decode_batch(self._store_call(self.store.get, key), key)
        except (CorruptObjectError, KeyNotFoundError) as exc:
            # An empty result batch tells the controller the task never ran: it retries the jobs.
            warnings.warn(str(exc), stacklevel=1)
            items = []
        results = [(job_id, run_job(payload)) for job_id, payload in items]
        self._store_call(self.store.put, protocol.result_key(self.prefix, seq), protocol.encode_batch(results))
        self.store.notify(self.controller)


def run_worker(args: Sequence[str]) -> str:
    """Run a worker from ``crew worker`` arguments; used by the CLI and by executor workers."""
    from .cli import parse_worker_args
    from .plugins import store_from_config

    settings = parse_worker_args(args)
    try:
        store = store_from_config(settings.store)
    except Exception as exc:
        raise StoreError(f"worker {settings.name!r} cannot open its store: {exc}") from exc
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return WorkerLoop(store, settings).run()
    finally:
        store.close()
