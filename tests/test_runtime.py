"""The worker loop against a real local store, run in this process to script the store's failures."""

from __future__ import annotations

import pytest

from crew_core import StoreError, protocol, runtime
from crew_core.runtime import WorkerLoop, WorkerSettings
from crew_core.serialize import dump_call, load_outcome
from crew_core.testing import jobs
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
PREFIX = protocol.worker_prefix("c", "w", 1)


def give(store, seq, *calls):
    items = [(n, dump_call(fun, args, {})) for n, (fun, args) in enumerate(calls, start=1)]
    store.put(protocol.task_key(PREFIX, seq), protocol.encode_batch(items))


def outcomes(store, seq):
    key = protocol.result_key(PREFIX, seq)
    return [load_outcome(data) for _, data in protocol.decode_batch(store.get(key), key)]


def exit_note(store):
    key = protocol.exit_key(PREFIX)
    return protocol.decode_json(store.get(key), key)


def test_runs_batches_in_order_and_leaves_an_exit_note(store):
    give(store, 1, (jobs.double, (1,)), (jobs.double, (2,)))
    give(store, 2, (jobs.fail, ("no",)))
    assert WorkerLoop(store, SETTINGS).run() == "idle"
    assert [o[1] for o in outcomes(store, 1)] == [2, 4]
    [failed] = outcomes(store, 2)
    assert failed[0] == "error" and isinstance(failed[2], ValueError)
    assert exit_note(store) == {"reason": "idle", "last_seq": 2, "error": None}
    heartbeat = protocol.decode_json(store.get(protocol.heartbeat_key(PREFIX)), "hb")
    assert heartbeat["beat"] >= 1 and heartbeat["seq"] in (0, 1, 2)


def test_a_stop_request_ends_the_worker_before_unstarted_tasks(store):
    give(store, 1, (jobs.double, (1,)))
    store.put(protocol.stop_key(PREFIX), b"")
    assert WorkerLoop(store, SETTINGS).run() == "stopped"
    assert exit_note(store)["last_seq"] == 0  # the controller requeues task 1 uncharged
    assert store.list(PREFIX + "results/") == []


def test_the_worker_rides_out_a_short_store_outage(store):
    give(store, 1, (jobs.double, (21,)))
    store.failures = 3
    assert WorkerLoop(store, SETTINGS).run() == "idle"
    assert outcomes(store, 1)[0][1] == 42


def test_the_worker_gives_up_on_a_store_that_stays_down(store, monkeypatch):
    monkeypatch.setattr(runtime, "STORE_PATIENCE", 0.2)
    store.failures = 10**9
    assert WorkerLoop(store, SETTINGS).run() == "error"


def test_a_corrupt_task_gives_an_empty_result_batch(store):
    store.put(protocol.task_key(PREFIX, 1), b"not a batch")
    with pytest.warns(UserWarning, match="corrupt"):
        assert WorkerLoop(store, SETTINGS).run() == "idle"
    assert outcomes(store, 1) == []  # the controller retries the jobs it had put there
