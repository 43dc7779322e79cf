"""The forwarder: a worker that runs an inner crew and passes its outer crew's jobs through it.

This is the original crew design's nested crews. The main process talks over a local store to a
few forwarders on its own machine; each forwarder runs a named inner :class:`Crew` (say an S3
store and a hundred AWS Batch workers), so the main process's cost per job does not depend on
the inner store's latency or on how many inner workers there are.

A forwarder never unpickles a job: calls go to the inner crew as the outer crew pickled them
(the inner job has the outer job's id), and outcomes come back still pickled
(:class:`~crew_core.wire.serialize.Raw`), with the inner worker's name and the inner runs added. It
takes every task the outer crew gives it and answers each job as it ends, in parts batched over
a few milliseconds (``inbox/<seq>.<part>``).

What it guarantees (see the specification): a job goes to the inner crew once per outer
try; a forwarder that dies keeps its jobs (the outer controller holds them for its relaunch,
uncharged), and the relaunch resumes the inner crew by name, adopting its workers and its jobs,
so nothing runs twice and nothing is lost; a forwarder that is stopped hands back the jobs it
has not answered and closes its inner crew, whose workers end with it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from crew_core.agent.initializer import load_initializer
from crew_core.agent.runtime import WorkerLoop, say
from crew_core.api.crew import Crew
from crew_core.backoff import Backoff
from crew_core.engine.ledger import Job
from crew_core.errors import JobCancelledError
from crew_core.nested.inner import InnerSpec, inner_name, inner_secret
from crew_core.results import CANCELLED, Result
from crew_core.wire import protocol
from crew_core.wire.protocol import Batch, Outcome, ResultBatch, WorkerSettings
from crew_core.wire.serialize import Raw, dump_outcome, dump_result
from crew_core.wire.signing import SECRET_ENV, Sealed

log = logging.getLogger("crew")

#: Seconds an answer waits for others to share its store write.
LINGER = 0.002
#: Seconds between inner crew summaries sent along with the answers.
SUMMARY_INTERVAL = 1.0
#: Seconds a resumed inner job waits to be claimed again by the outer crew before it is cancelled.
UNCLAIMED_PATIENCE = 60.0


class InnerCrew(Crew):
    """The inner crew of a forwarder: it takes calls already pickled and keeps outcomes pickled."""

    _raw_outcomes = True

    def forward(self, call: protocol.Call, args: bytes, function: bytes, tags: frozenset[str], claim: _Claim) -> None:
        """Send one outer call as it is (``args``: its pickled arguments): the inner job has the outer job's id."""
        data, key = self._manager.args.take(args)  # the inner crew keeps them to its own budget
        job = Job(call.job_id, call.function, data, tags, f"forwarded.{call.function[:16]}", claim=claim,
                  timeout=call.timeout, args_key=key)  # fmt: skip
        self._accept(job, function)

    def adopt(self, job_id: int, claim: _Claim) -> bool:
        """Give a job this crew resumed (or its result) to ``claim``; False if it has no such job."""
        manager = self._manager
        found: Result | None = None
        with manager.lock:
            manager._accept()
            if manager.ledger.attach(job_id, claim):
                return True
            found = manager.ledger.take_result(job_id)
            if found is not None:
                manager.received(job_id)
        if found is None:
            return False
        claim.finished(found)
        return True

    def unclaimed(self) -> list[int]:
        """Jobs nobody asked for again since the resume: running ones and finished ones."""
        manager = self._manager
        with manager.lock:
            running = [job.id for job in manager.ledger.jobs.values() if job.claim is None]
            done = [result.id for result in manager.ledger.take_results()]
            for job_id in done:
                manager.received(job_id)
        return running + done


class _Claim:
    """Where an inner job's result goes: a part of the answer to outer task ``seq``."""

    __slots__ = ("forwarder", "job_id", "seq")
    raises_errors = False  # the outer crew hears of an inner store gone for good as the job's error

    def __init__(self, forwarder: ForwarderLoop, seq: int, job_id: int) -> None:
        self.forwarder, self.seq, self.job_id = forwarder, seq, job_id

    def started(self) -> None:
        pass

    def finished(self, result: Result) -> None:
        self.forwarder.finished(self, result)


def encode(result: Result) -> bytes:
    """An inner result as an outer outcome: the pickled rest passes on as it came."""
    if not isinstance(result.value, Raw):  # made by the inner controller: a crash, a launch that failed, a cancel
        return dump_result(result)
    outcome = Outcome(result.status, seconds=result.seconds, started=result.started, worker=result.worker or "",
                      tries=result.tries, payload=bytes(result.value))  # fmt: skip
    return dump_outcome(outcome)


class ForwarderLoop(WorkerLoop):
    """A worker incarnation that forwards: reads tasks, sends their calls in, answers in parts."""

    def __init__(self, sealed: Sealed, settings: WorkerSettings, secret: bytes) -> None:
        super().__init__(sealed, settings, interruptible=False)  # it runs no job: nothing to interrupt
        assert settings.inner is not None
        self.spec = InnerSpec.parse(settings.inner)
        self.secret = secret
        self.inner: InnerCrew | None = None
        self.feed.on_cancel = self._cancel
        self._lock = threading.Condition()
        self._pending: dict[int, _Claim] = {}  # outer job id -> its claim, until answered
        self._answers: dict[int, list[tuple[int, bytes]]] = {}  # outer seq -> outcomes to write
        self._parts: dict[int, int] = {}  # outer seq -> parts written
        self._closing = False  # stopped: results that come now are not wanted
        self._summary_due = 0.0
        self._resumed_at: float | None = None
        self._writer = threading.Thread(target=self._write_answers, name="crew-forward-answers", daemon=True)

    # ----------------------------------------------------------------- the inner crew
    def _open_inner(self, initializer: dict[str, Any]) -> InnerCrew:
        s, spec = self.settings, self.spec
        name = inner_name(s.crew, s.name)
        settings = {"lease_timeout": s.lease_timeout, **spec.settings}
        # The inner crew's key comes from the outer secret: the same at every launch of this forwarder.
        os.environ[SECRET_ENV] = inner_secret(self.secret, name).hex()
        try:
            inner = InnerCrew(spec.store, spec.worker_classes, store_options=spec.store_options or None, name=name,
                              **settings)  # fmt: skip
        finally:
            os.environ.pop(SECRET_ENV, None)
        try:
            if inner.resumed:
                self._resumed_at = time.monotonic()
                log.warning("forwarder %s resumed its inner crew %s", s.name, name)
            else:
                for options in spec.recruit:
                    inner.recruit(**options, **initializer)
        except BaseException:
            inner.close()
            raise
        return inner

    def _load_initializer(self) -> dict[str, Any]:
        """The outer recruit's initializer, for the inner workers (they run it, not the forwarder)."""
        digest = self.settings.initializer
        if not digest:
            return {}
        initializer, initargs = load_initializer(lambda key: self._store_call(self.sealed.get, key),
                                                 self.settings.crew, digest)  # fmt: skip
        return {"initializer": initializer, "initargs": initargs}

    def _initialize(self) -> str | None:
        return None  # it runs no job: its inner workers run the initializer

    def _leave_early(self, reason: str, exc: BaseException, why: str) -> None:
        """Write the exit note of a launch that ends before it serves."""
        import traceback

        note = protocol.ExitNote(reason, 0, "".join(traceback.format_exception(exc)))
        s = self.settings
        self.sealed.put(protocol.exit_key(s.crew, s.name, s.incarnation), protocol.encode_json(note))
        self.store.notify(self.controller)
        say(f"crew forwarder {s.name}: {why}: {exc}")

    # ----------------------------------------------------------------- the loop
    def run(self) -> str:
        try:
            initializer = self._load_initializer()
        except Exception as exc:  # the forwarder cannot hand it on: as a worker whose initializer failed
            self._leave_early(protocol.INIT_FAILED, exc, "cannot load the initializer for its inner workers")
            return protocol.INIT_FAILED
        try:
            self.inner = self._open_inner(initializer)  # before the first beat: a failure is a failed launch
        except BaseException as exc:
            self._leave_early("error", exc, "cannot open its inner crew")
            return "error"
        self._writer.start()
        reason = "error"
        try:
            reason = super().run()
        finally:
            if self.inner is not None:  # SIGTERM or a failing store: the relaunch resumes the inner crew
                self._end("terminated" if reason == "terminated" else "error")
        return reason

    def _serve(self) -> str:
        reason = self._loop()
        self._end(reason)  # before the exit note: the controller reads the last answers first
        return reason

    def _loop(self) -> str:
        low, high = self.store.poll_interval
        pause = Backoff(low, high)
        idle_since = time.monotonic()
        while True:
            if self._orphaned.is_set():
                return "orphaned"
            while (batch := self.feed.pop()) is not None:
                self._forward(batch)
                pause.reset()
            if self.feed.stopped:
                return "stopped"
            self._sweep_unclaimed()
            with self._lock:
                busy = bool(self._pending)
            self._busy = busy
            if busy:
                idle_since = time.monotonic()
            else:
                ended = self._lifetime_over()
                if ended is not None:
                    return ended
                timeout = self.settings.timeout
                if timeout is not None and time.monotonic() - idle_since >= timeout:
                    return "idle"
            if self.feed.read():
                pause.reset()
                continue
            self.store.wait(self.channel, pause.next())

    def _forward(self, batch: Batch) -> None:
        inner = self.inner
        assert inner is not None
        carried = frozenset().union(*(h.tags for h in inner.workers.values()))
        claims = [_Claim(self, batch.seq, call.job_id) for call in batch.calls]
        with self._lock:
            for claim in claims:
                self._pending[claim.job_id] = claim
        self._busy = True
        cancelled = []
        with inner.batch():  # a named inner crew journals the whole batch in one write
            for call, claim in zip(batch.calls, claims, strict=True):
                if call.job_id in self.feed.cancelled:
                    cancelled.append(claim)
                elif self._resumed_at is None or not inner.adopt(call.job_id, claim):
                    args = self.read_args(call.args_key) if call.args_key else call.args
                    inner.forward(call, args, batch.functions[call.function], frozenset(call.tags) & carried, claim)
                self._jobs_run += 1
        for claim in cancelled:
            error = JobCancelledError(f"job {claim.job_id} was cancelled before it started")
            self.finished(claim, Result(claim.job_id, CANCELLED, error=error))

    def _cancel(self, job_id: int) -> None:
        inner = self.inner
        if inner is not None:
            try:
                inner.cancel(job_id)
            except Exception as exc:  # closing meanwhile: its job is handed back or was answered
                log.info("forwarder %s could not cancel job %d: %s", self.settings.name, job_id, exc)

    def _sweep_unclaimed(self) -> None:
        """After a resume, jobs the outer crew never gave back (it cancelled them meanwhile) end."""
        if self._resumed_at is None or time.monotonic() - self._resumed_at < UNCLAIMED_PATIENCE:
            return
        assert self.inner is not None
        self._resumed_at = None
        for job_id in self.inner.unclaimed():
            self.inner.cancel(job_id)

    # ----------------------------------------------------------------- answers
    def finished(self, claim: _Claim, result: Result) -> None:
        """An inner job ended (called from the inner crew's threads)."""
        data = encode(result)
        with self._lock:
            if self._pending.pop(claim.job_id, None) is None or self._closing:
                return
            self._answers.setdefault(claim.seq, []).append((claim.job_id, data))
            self._lock.notify()

    def _write_answers(self) -> None:
        """Write what finished in parts, one per outer task, a few milliseconds' worth at a time."""
        while True:
            with self._lock:
                while not self._answers and not self._done.is_set():
                    self._lock.wait(0.5)
                if not self._answers and self._done.is_set():
                    return
            time.sleep(LINGER)  # let answers that end together share a write
            with self._lock:
                answers, self._answers = self._answers, {}
            self._write(answers, returned=False)

    def _write(self, answers: dict[int, list[tuple[int, bytes]]], returned: bool) -> None:
        s = self.settings
        inner: tuple[dict[str, Any], ...] = ()
        now = time.monotonic()
        with self._lock:
            quiet = not self._pending  # these are the last answers for now: the summary must be current
        if (quiet or now >= self._summary_due) and self.inner is not None:
            self._summary_due = now + SUMMARY_INTERVAL
            try:
                inner = tuple(dict(row) for row in self.inner.summary())
            except Exception:  # the inner crew closed meanwhile: the summary can wait
                inner = ()
        for seq, outcomes in answers.items():
            with self._lock:
                part = self._parts[seq] = self._parts.get(seq, 0) + 1
            batch = ResultBatch(seq, s.name, s.incarnation, tuple(outcomes), returned, part, inner)
            inner = ()
            try:
                self.feed.answer(batch, ring=False)
            except Exception as exc:  # the outer store is gone for good: the controller reruns them
                log.warning("forwarder %s cannot answer task %d: %s", s.name, seq, exc)
        self.feed.ring()

    # ----------------------------------------------------------------- leaving
    def _end(self, reason: str) -> None:
        """Hand back what is unanswered and close the inner crew; or, if this is a crash, leave it
        for the relaunch (``terminated``: SIGTERM, ``error``: the outer store failed)."""
        inner, self.inner = self.inner, None
        resumable = reason in ("terminated", "error")
        with self._lock:
            self._closing = True
            unanswered: dict[int, list[tuple[int, bytes]]] = {claim.seq: [] for claim in self._pending.values()}
            for job_id, claim in self._pending.items():
                unanswered[claim.seq].append((job_id, b""))
            self._pending.clear()
            answers, self._answers = self._answers, {}
            self._lock.notify()
        self._writer.join(timeout=5)
        try:  # results the inner crew handed over count as received there: they must go out now
            self._write(answers, returned=False)
        except Exception as exc:
            log.warning("forwarder %s could not write its last answers: %s", self.settings.name, exc)
        if not resumable:
            self._write(unanswered, returned=True)
        if inner is None:
            return
        try:
            if resumable:
                inner._leave()
            else:
                inner.close()
        except Exception as exc:
            say(f"crew forwarder {self.settings.name}: closing its inner crew failed: {exc}")


def run_forwarder(sealed: Sealed, settings: WorkerSettings, secret: bytes) -> str:
    """Run a forwarder incarnation (``crew worker --inner ...``) until it leaves; return why."""
    return ForwarderLoop(sealed, settings, secret).run()

