"""The worker loop against a real local store, run in this process to script the store's failures."""

from __future__ import annotations

import pytest

from crew_core import CorruptObjectError, KeyNotFoundError, StoreError
from crew_core.agent import runtime
from crew_core.agent.runtime import WorkerLoop
from crew_core.testing import jobs
from crew_core.wire import protocol
from crew_core.wire.protocol import Batch, Call, Revoke, Stop, WorkerSettings
from crew_core.wire.serialize import FunctionCache, dump_args, load_outcome
from crew_core.wire.signing import RunKeys, Sealed
from crew_local import LocalStore


class FailingStore(LocalStore):
    """Fails the next ``failures`` listings, like a store that is briefly unreachable."""

    failures = 0

    def list(self, prefix, start_after=None):
        if self.failures:
            self.failures -= 1
            raise StoreError("connection refused (simulated)")
        return super().list(prefix, start_after)


@pytest.fixture
def store(tmp_path):
    store = FailingStore(tmp_path)
    yield store
    store.close()


SETTINGS = WorkerSettings(store={}, crew="c", name="w", incarnation=1, timeout=0.2, heartbeat=0.05)
PREFIX = SETTINGS.prefix
SECRET = bytes(range(32))


def sealed(store):
    return Sealed(store, SECRET)


def worker_sealed(store):
    """What the launch ``w`` 1 holds: its own key and the crew's public one."""
    return Sealed(store, RunKeys(SECRET).worker_keys("w", 1))


def loop(store):
    return WorkerLoop(worker_sealed(store), SETTINGS)


def give(store, seq, *calls):
    cache = FunctionCache()
    functions, items = {}, []
    for job_id, (fun, args) in enumerate(calls, start=seq * 100):
        digest, data, _ = cache.dump(fun)
        functions[digest] = data
        items.append(Call(job_id, digest, dump_args(fun, args, {})))
    sealed(store).put(protocol.task_key(PREFIX, seq), protocol.encode_task(Batch(seq, tuple(items), functions)))


def answer(store, seq):
    key = protocol.result_key("c", seq)
    return protocol.decode_result(sealed(store).get(key), key)


def outcomes(store, seq):
    return [load_outcome(data) for _, data in answer(store, seq).outcomes]


def refusals(store):
    """The numbers of the records the worker said it read nothing from (under keys of its own)."""
    found = []
    for key in store.list(protocol.inbox_prefix("c")):
        entry = protocol.parse_inbox_key(key)
        if entry is not None and entry.kind == "refused":
            said = protocol.decode_result(sealed(store).get(key), key)
            assert (said.seq, said.worker, said.incarnation, said.outcomes) == (entry.seq, "w", 1, ())
            found.append(entry.seq)
    return found


def exit_note(store):
    key = protocol.exit_key("c", "w", 1)
    return protocol.decode_exit(sealed(store).get(key), key)


def test_runs_batches_in_order_and_leaves_an_exit_note(store):
    give(store, 1, (jobs.double, (1,)), (jobs.double, (2,)))
    give(store, 3, (jobs.fail, ("no",)))
    assert loop(store).run() == "idle"
    assert [o.value for o in outcomes(store, 1)] == [2, 4]
    [failed] = outcomes(store, 3)
    assert failed.status == "error" and isinstance(failed.error, ValueError)
    assert exit_note(store) == protocol.ExitNote("idle", 3, None)
    beats = [k for k in store.list("c/inbox/") if "/beat.w.1." in k]
    assert beats and all(protocol.parse_inbox_key(k).kind == "beat" for k in beats)


def test_a_stop_request_ends_the_worker_before_unstarted_tasks(store):
    give(store, 1, (jobs.double, (1,)))
    sealed(store).put(protocol.task_key(PREFIX, 2), protocol.encode_task(Stop(2)))
    assert loop(store).run() == "stopped"
    assert exit_note(store).last_seq == 0  # the controller requeues task 1 uncharged
    assert [k for k in store.list("c/inbox/") if protocol.parse_inbox_key(k).kind == "result"] == []


def test_a_revoked_batch_is_handed_back_unrun(store, tmp_path):
    marker = tmp_path / "ran"
    give(store, 1, (jobs.double, (1,)))
    give(store, 2, (jobs.touch_then_sleep, (str(marker), 0)))
    sealed(store).put(protocol.task_key(PREFIX, 3), protocol.encode_task(Revoke(3, 2)))
    assert loop(store).run() == "idle"
    assert [o.value for o in outcomes(store, 1)] == [2]
    assert answer(store, 2).returned and answer(store, 2).outcomes == ()
    assert not marker.exists()


def test_the_worker_rides_out_a_short_store_outage(store):
    give(store, 1, (jobs.double, (21,)))
    store.failures = 3
    assert loop(store).run() == "idle"
    assert outcomes(store, 1)[0].value == 42


def test_the_worker_gives_up_on_a_store_that_stays_down(store, monkeypatch):
    monkeypatch.setattr(runtime, "STORE_PATIENCE", 0.2)
    store.failures = 10**9
    assert loop(store).run() == "error"


def test_a_corrupt_task_gives_an_empty_answer(store, caplog):
    sealed(store).put(protocol.task_key(PREFIX, 1), b"not a batch")
    assert loop(store).run() == "idle"
    assert answer(store, 1).outcomes == ()  # the controller retries the jobs it had put there
    assert "cannot be read" in caplog.text


def test_an_unsigned_task_runs_nothing_and_hides_no_real_task(store, tmp_path, caplog):
    """A pickle written by someone without the secret: refused before it is unpickled."""
    marker = tmp_path / "pwned"
    evil = FunctionCache().dump(jobs.touch_then_sleep)
    call = Call(1, evil[0], dump_args(jobs.touch_then_sleep, (str(marker), 0), {}))
    forged = protocol.encode_task(Batch(900000000000, (call,), {evil[0]: evil[1]}))
    store.put(protocol.task_key(PREFIX, 900000000000), forged)  # unsigned, sorts after every real task
    Sealed(store, b"another crew's secret!!!!!!!!!!").put(protocol.task_key(PREFIX, 1), forged)
    give(store, 2, (jobs.double, (21,)))  # a real task that sorts before the forged one
    assert loop(store).run() == "idle"
    assert not marker.exists()  # nothing in the forged objects ran
    assert [o.value for o in outcomes(store, 2)] == [42]
    assert refusals(store) == [1, 900000000000]  # if one was a real task, its jobs are retried
    with pytest.raises(KeyNotFoundError):
        answer(store, 1)  # never under the answer key of its number: that task may be another worker's
    assert "not signed with this crew's secret" in caplog.text


class VanishingStore(LocalStore):
    """Lists a task record that is gone when the worker reads it (deleted in between)."""

    def list(self, prefix, start_after=None):
        keys = super().list(prefix, start_after)
        gone = protocol.task_key(PREFIX, 5)
        return sorted({*keys, gone}) if prefix == PREFIX and (start_after or "") < gone else keys


def test_a_task_record_gone_before_it_is_read_is_said_so_under_the_workers_own_key(tmp_path):
    store = VanishingStore(tmp_path)
    give(store, 7, (jobs.double, (4,)))
    assert loop(store).run() == "idle"
    assert [o.value for o in outcomes(store, 7)] == [8]
    assert refusals(store) == [5]
    with pytest.raises(KeyNotFoundError):
        answer(store, 5)
    store.close()


def test_a_worker_without_the_secret_refuses_to_start(tmp_path, monkeypatch):
    from crew_core.agent.runtime import run_worker

    monkeypatch.delenv("CREW_SECRET", raising=False)
    store = LocalStore(tmp_path / "s")
    settings = WorkerSettings(store={"name": "local", "config": store.config()}, crew="c", name="w", incarnation=1)
    with pytest.raises(RuntimeError, match="no CREW_SECRET in the worker's environment"):
        run_worker(settings.to_args())
    with pytest.raises(RuntimeError, match="at least 16 bytes"):
        run_worker(settings.to_args(), {"CREW_SECRET": "abcd"})


def test_a_record_from_another_protocol_version_is_refused_by_name():
    data = protocol.encode_task(Stop(1)).replace(bytes([protocol.PROTOCOL]), bytes([protocol.PROTOCOL + 1]), 1)
    with pytest.raises(CorruptObjectError):
        protocol.decode_task(data, "k")
    with pytest.raises(SystemExit, match="protocol 1"):
        WorkerSettings.from_args([*SETTINGS.to_args(), "--protocol", "1"])


def test_records_never_unpickle_classes():
    import pickle

    evil = pickle.dumps((b"crew", protocol.PROTOCOL, "stop", (OSError("x"),)))
    with pytest.raises(CorruptObjectError, match="may not name"):
        protocol.decode_task(evil, "k")


def test_a_key_that_vanishes_between_listing_and_reading_hides_no_later_task(tmp_path):
    """Found by review: a planted key sorting late, deleted once listed, moved the feed past it."""
    import os

    from crew_core.agent.feed import TaskFeed

    class Racing(LocalStore):
        planted: str | None = None

        def list(self, prefix, start_after=None):
            keys = super().list(prefix, start_after)
            if self.planted in keys:
                super().delete([self.planted])  # gone before the worker reads it
            return keys

    store = Racing(tmp_path)
    sealed = Sealed(store, keys := RunKeys(os.urandom(32)))
    settings = WorkerSettings(store={}, crew="c0ffee", name="w-1", incarnation=1)
    worker = Sealed(store, keys.worker_keys("w-1", 1))
    feed = TaskFeed(worker, settings, lambda method, *args: method(*args))
    store.planted = protocol.task_key(settings.prefix, 999_999_999_999)
    store.put(store.planted, b"junk")
    feed.read()
    sealed.put(protocol.task_key(settings.prefix, 1), protocol.encode_task(Batch(1, (), {})))  # the real task
    feed.read()
    assert (batch := feed.pop()) is not None and batch.seq == 1
    store.close()
