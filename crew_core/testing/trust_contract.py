"""Who can forge what in a crew, over a given store, as a pytest suite to subclass.

A key per party (``wire/signing.py``): nothing a worker holds signs a task, for itself or for
another worker; a worker answers only the tasks addressed to it; a run copied to another place
checks nowhere. Each test plays the attacker with everything the attacker would hold (one
worker's whole environment, or write access to the store) and shows that nothing it made is
used. Before keys per party, a worker held the crew's one secret and each of these forgeries
ran (see docs/specification.md, "Threat model").
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crew_core import Crew, CrewError
from crew_core.agent.runtime import WorkerLoop
from crew_core.errors import TamperedObjectError
from crew_core.plugin.store import Store
from crew_core.testing import jobs
from crew_core.wire import protocol, put_objects
from crew_core.wire.protocol import Batch, Call, JournalJob, ResultBatch, WorkerSettings
from crew_core.wire.refs import ObjectCache, upload
from crew_core.wire.serialize import FunctionCache, dump_args
from crew_core.wire.signing import SECRET_ENV, LaunchKeys, Mac, RunKeys, Sealed, Signed, derive, new_secret

CREW = "c0ffee"


def _task(seq: int, fun: Any, *args: Any) -> bytes:
    digest, function, _ = FunctionCache().dump(fun)
    return protocol.encode_task(Batch(seq, (Call(seq, digest, dump_args(fun, args, {})),), {digest: function}))


def forgeries(environment: dict[str, str], key: str, payload: bytes, signer: LaunchKeys) -> Iterator[bytes]:
    """Every object a holder of ``environment`` (one launch's secrets) can sign for ``key``: a
    MAC with each secret and with each key the protocol derives from it, and the launch's own seal."""
    for value in environment.values():
        secret = bytes.fromhex(value)
        for made in (secret, derive(secret, "tasks"), derive(secret, "controller")):
            yield Mac(made).close(key, payload)
    yield Signed(lambda name: signer.key if name == signer.signer else None, signer.signer).close(key, payload)


class TrustContract:
    """Subclass and provide a ``store`` fixture (a :class:`Store` at a fresh location), and
    ``crew_store`` and ``other_place`` (what ``Crew(store=...)`` gets: two fresh locations of the
    same backend)."""

    @pytest.mark.parametrize("beside", [False, True], ids=["ed25519-tasks", "mac-tasks"])
    def test_nothing_in_one_workers_environment_signs_a_task_for_another(
        self, store: Store, tmp_path: Path, beside: bool
    ) -> None:
        keys = RunKeys(new_secret())
        a = keys.worker_keys("w-a", 1, tasks_by_mac=beside)
        held_by_a = keys.launch_secrets("w-a", 1)  # all the secret a worker's environment holds
        controller = Sealed(store, keys, tasks_by_mac=lambda worker, launch: beside)
        b = WorkerSettings(store={}, crew=CREW, name="w-b", incarnation=1, timeout=0.3, heartbeat=0.05,
                           task_key=keys.public.hex(), tasks_mac=beside)  # fmt: skip
        marker = tmp_path / "forged-task-ran"
        kinds = len(list(forgeries(held_by_a, "", b"", a)))
        for seq in range(1, kinds + 1):  # each forgery in a task record of b's, in b's order
            key = protocol.task_key(b.prefix, seq)
            store.put(
                key, list(forgeries(held_by_a, key, _task(seq, jobs.touch_then_sleep, str(marker), 0), a))[seq - 1]
            )
        real = kinds + 1
        controller.put(protocol.task_key(b.prefix, real), _task(real, jobs.double, 21))
        worker = Sealed(store, keys.worker_keys("w-b", 1, tasks_by_mac=beside))
        assert WorkerLoop(worker, b).run() == "idle"
        assert not marker.exists(), "a task signed with another worker's secrets ran"
        answer = protocol.decode_result(controller.get(protocol.result_key(CREW, real)), "answer")
        assert answer.worker == "w-b" and len(answer.outcomes) == 1  # the real task ran

    def test_a_worker_answers_no_task_addressed_to_another(self, store: Store) -> None:
        keys = RunKeys(new_secret())
        a = Sealed(store, keys.worker_keys("w-a", 1))
        b = Sealed(store, keys.worker_keys("w-b", 1))
        controller = Sealed(store, keys, addressee=lambda seq: ("w-b", 1) if seq == 7 else None)
        key = protocol.result_key(CREW, 7)
        forged = ResultBatch(7, "w-b", 1, ((70, b"a value of the attacker's choice"),))  # it even says it is b
        a.put(key, protocol.encode_result(forged))
        with pytest.raises(TamperedObjectError, match="not signed with this crew's secret"):
            controller.get(key)
        with pytest.raises(TamperedObjectError):  # nor when it names itself
            a.put(key, protocol.encode_result(ResultBatch(7, "w-a", 1, ())))
            controller.get(key)
        b.put(key, protocol.encode_result(ResultBatch(7, "w-b", 1, ())))
        assert protocol.decode_result(controller.get(key), key).worker == "w-b"
        with pytest.raises(PermissionError):  # and a worker signs nothing for the controller
            a.put(protocol.task_key(protocol.worker_prefix(CREW, "w-a", 1), 8), b"")

    def test_a_put_objects_altered_buffer_is_refused(self, store: Store) -> None:
        """A large object's buffers are stored unsigned (``put_objects.py``): the signed header's
        hash of each is what a worker checks before the object is rebuilt over it."""
        keys = RunKeys(new_secret())
        data = bytearray(random.Random(7).randbytes(put_objects.OUT_OF_BAND_BYTES + 5))
        packed = put_objects.pack({"buffer": pickle.PickleBuffer(data), "small": b"in band"})
        assert len(packed.buffers) == 1
        upload(Sealed(store, keys), CREW, packed)
        obj = ObjectCache(Sealed(store, keys.worker_keys("w", 1))).get(CREW, packed.digest)
        assert bytes(obj["buffer"]) == data and obj["small"] == b"in band"
        part = protocol.buffer_key(CREW, packed.digest, 0)
        for at in (0, len(data) // 2, len(data) - 1):  # one bit at the start, the middle, the end
            altered = bytearray(data)
            altered[at] ^= 1
            store.put(part, bytes(altered))  # in place of the stored buffer
            with pytest.raises(TamperedObjectError, match="not the buffer its signed put object names"):
                ObjectCache(Sealed(store, keys.worker_keys("w", 1))).get(CREW, packed.digest)
        for resized in (data[:-1], data + b"\0"):  # cut short, or one byte longer
            store.put(part, bytes(resized))
            with pytest.raises(TamperedObjectError):
                ObjectCache(Sealed(store, keys.worker_keys("w", 1))).get(CREW, packed.digest)

    def test_an_answer_that_names_another_launch_is_dropped_at_recovery(self, store: Store) -> None:
        from crew_core.durable.journal import recover

        keys = RunKeys(new_secret())
        a = Sealed(store, keys.worker_keys("w-a", 1))
        a.put(protocol.result_key(CREW, 9), protocol.encode_result(ResultBatch(9, "w-b", 1, ())))
        found = recover(Sealed(store, keys), CREW)
        assert found.answered == set() and found.corrupt == [protocol.result_key(CREW, 9)]

    def test_after_a_crash_a_workers_key_answers_only_jobs_its_task_gave_it(self, store: Store) -> None:
        """The record of an answered task stays while its answer does: a resuming controller takes
        from an answer only the jobs that record gave the launch that signed it."""
        from crew_core.durable.journal import JobJournal, recover

        keys = RunKeys(new_secret())
        controller = Sealed(store, keys)
        digest, function, _ = FunctionCache().dump(jobs.double)
        journal = JobJournal(controller, CREW, 0)
        journal.commit([(JournalJob(n, digest, dump_args(jobs.double, (n,), {}), (), "k"), function) for n in (1, 2)])
        for worker, seq, job in (("w-a", 5, 1), ("w-b", 6, 2)):  # each launch had one task of one job
            call = Call(job, digest, dump_args(jobs.double, (job,), {}))
            record = protocol.encode_task(Batch(seq, (call,), {digest: function}))
            controller.put(protocol.task_key(protocol.worker_prefix(CREW, worker, 1), seq), record)
        a = Sealed(store, keys.worker_keys("w-a", 1))
        values = ((1, b"a's own value"), (2, b"a value for b's job"))  # a answers its task, and b's job too
        a.put(protocol.result_key(CREW, 5), protocol.encode_result(ResultBatch(5, "w-a", 1, values)))
        found = recover(controller, CREW)
        assert found.results == {1: (b"a's own value", "w-a", protocol.result_key(CREW, 5))}
        assert found.kept_records == {5: protocol.task_key(protocol.worker_prefix(CREW, "w-a", 1), 5)}

    def test_a_run_copied_to_another_place_is_refused(
        self, crew_store: Any, other_place: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With one ``CREW_SECRET`` everywhere (as for resuming on another machine), a copy of
        ``nightly`` from one prefix to another resumed there and delivered the first run's values."""
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        monkeypatch.setenv(SECRET_ENV, "cd" * 32)
        crew = Crew(store=crew_store, name="nightly", worker_classes=["subprocess"])
        crew.recruit(workers=1)
        job = crew.send(jobs.sleep_then, args=(600, "never"))
        crew.cancel(job)  # a stored result: what a copy would deliver
        source = crew.store
        with Crew(store=other_place, name="scratch", worker_classes=["subprocess"]) as other:
            target = other.store
            for key in source.list("nightly/"):
                target.put(key, source.get(key))
            crew._manager.close()  # as if the controller died: its objects stay
            crew._closed = True
            with pytest.raises(CrewError, match="not made with this key"):
                Crew(store=other_place, name="nightly", worker_classes=["subprocess"])
            target.delete(target.list("nightly/"))
        with Crew(store=crew_store, name="nightly", worker_classes=["subprocess"]) as again:  # at home it resumes
            result = again.receive(timeout=60)
            assert result is not None and result.id == job and result.status == "cancelled"
