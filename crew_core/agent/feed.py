"""A worker's task feed: its task records, found with one listing and kept in order.

The main loop reads the feed when it has nothing queued; the heartbeat thread reads it while a
job runs, so a prefetched batch is in hand before the job ends and a :class:`~.protocol.Revoke`
is answered without waiting for the job: a batch that has not started goes back to the
controller unrun, one that has started is run and answered as usual.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from crew_core.errors import CorruptObjectError, KeyNotFoundError, TamperedObjectError
from crew_core.wire import protocol
from crew_core.wire.protocol import Batch, Cancel, ResultBatch, Revoke, Stop, WorkerSettings
from crew_core.wire.signing import Sealed

log = logging.getLogger("crew")


class TaskFeed:
    """The task records of one worker incarnation, in sequence order."""

    def __init__(self, sealed: Sealed, settings: WorkerSettings, call: Callable[..., Any]) -> None:
        self.sealed = sealed
        self.store = sealed.store
        self.settings = settings
        self.prefix = settings.prefix
        self._call = call  # a store call that rides out outages
        self._after: str | None = None  # the last key read and trusted
        self._refused: set[str] = set()  # keys that failed their signature check: never read again
        self._queue: deque[Batch] = deque()
        self._lock = threading.Lock()  # the queue and the flags
        self._reading = threading.Lock()  # one reader of the store at a time
        self.stopped = False
        self.last_started = 0  # the last batch handed out to run
        self.cancelled: set[int] = set()  # jobs cancelled: skipped if they wait, stopped if they run
        self.on_cancel: Callable[[int], Any] = lambda job_id: None  # stops the job if it runs now

    def read(self) -> bool:
        """List and read new task records; True if there were any."""
        with self._reading:
            keys = [key for key in self._call(self.store.list, self.prefix, self._after) if key not in self._refused]
            for key in keys:
                try:
                    record = protocol.decode_task(self._call(self.sealed.get, key), key)
                except TamperedObjectError as exc:
                    # Not the controller's: nothing in it runs, and the listing does not skip past it
                    # (a forged key that sorts late must not hide the real tasks before it).
                    log.warning("refusing task object %r: %s", key, exc)
                    self._refused.add(key)
                    self._refuse(key)
                    continue
                except KeyNotFoundError as exc:
                    log.warning("task object %r is gone (%s); saying so: if it was a task, its jobs are retried",
                                key, exc)  # fmt: skip
                    self._refused.add(key)  # and the listing does not skip past it, as for a forged key
                    self._refuse(key)
                    continue
                except CorruptObjectError as exc:  # signed for this key: a task of this worker's, unreadable
                    log.warning("task object %r cannot be read (%s); answering it empty: its jobs are retried",
                                key, exc)  # fmt: skip
                    record = None
                self._take(key, record)
                self._after = key
            return bool(keys)

    def _refuse(self, key: str) -> None:
        """Tell the controller that nothing was read from ``key`` (if it was one of this worker's
        tasks, the controller retries its jobs), under a key that names this worker, never
        ``inbox/<seq>``: the number in a key nobody signed may be another worker's task, and
        ``inbox/<seq>`` that worker's answer."""
        seq = protocol.seq_of(key)
        if seq is not None:
            s = self.settings
            refusal = protocol.refusal_key(s.crew, s.name, s.incarnation, seq, secrets.token_hex(8))
            self._call(self.sealed.put, refusal, protocol.encode_result(ResultBatch(seq, s.name, s.incarnation, ())))
            self.ring()

    def _take(self, key: str, record: protocol.TaskRecord | None) -> None:
        if record is None:  # unreadable: an empty answer tells the controller to retry its jobs
            seq = protocol.seq_of(key)
            if seq is not None:
                record = Batch(seq, (), {})
            else:
                return
        answer = None
        with self._lock:
            if isinstance(record, Batch):
                self._queue.append(record)
            elif isinstance(record, Stop):
                self.stopped = True
            elif isinstance(record, Cancel):
                self.cancelled.add(record.job_id)
            elif isinstance(record, Revoke):
                for batch in self._queue:
                    if batch.seq == record.target:
                        self._queue.remove(batch)
                        s = self.settings
                        answer = ResultBatch(batch.seq, s.name, s.incarnation, (), returned=True)
                        break
        if answer is not None:
            self.answer(answer)
        if isinstance(record, Cancel):
            self.on_cancel(record.job_id)

    def answer(self, result: ResultBatch, ring: bool = True) -> None:
        """Write a batch's answer (or a part of it) to the controller's inbox and ring it."""
        key = protocol.answer_key(self.settings.crew, result.seq, result.part)
        self._call(self.sealed.put, key, protocol.encode_result(result))
        if ring:
            self.ring()

    def ring(self) -> None:
        """Wake the controller: answers wait in its inbox."""
        self.store.notify(protocol.controller_channel(self.settings.crew))

    def pop(self) -> Batch | None:
        """The next batch to run, or None (nothing queued, or a stop request came)."""
        with self._lock:
            if self.stopped or not self._queue:
                return None
            batch = self._queue.popleft()
            self.last_started = batch.seq
            return batch

    @property
    def queued(self) -> bool:
        return bool(self._queue)
