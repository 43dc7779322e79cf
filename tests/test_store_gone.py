"""A store gone for good (its folder deleted mid-run) ends every waiting call with StoreError.

Twenty jobs, some short and some taking half a second, run on three worker processes; the store
folder is deleted while some are running. The jobs whose results were not in yet can never come
back: ``receive()``, ``results()``, ``map()`` and executor futures must say so, not wait for ever
or return None as if nothing were in flight. A store down for a while (a read-only remount, S3
unreachable) is ``tests/test_fault_matrix.py``'s and ``test_s3_outage.py``'s business: it must
still be ridden out.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

import pytest

from crew_core import Crew, CrewExecutor, StoreError, StoreGoneError
from crew_core.plugin import Worker
from crew_core.testing import jobs, process_gone, wait_for
from crew_local import LocalStore

JOBS = 20
DEADLINE = 30.0  # seconds a waiting call may take to say the store is gone (it takes well under one)


def _seconds(n: int) -> float:
    return 0.5 if n % 4 == 0 else 0.02


def _in_time(call: Callable[[], Any], seconds: float = DEADLINE) -> Any:
    """``call()``'s value or exception; fail, rather than hang the suite, if it takes longer.

    A call left waiting ends when the test's crew is closed ("the crew was closed ...").
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s: a store gone for good must end the wait"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _delete(folder: Path) -> None:
    while folder.exists():  # the crew may write into it while it is being deleted
        shutil.rmtree(folder, ignore_errors=True)


def _started(marks: Path, count: int) -> None:
    wait_for(lambda: marks.exists() and len(os.listdir(marks)) >= count, what=f"{count} jobs to start")


def _pids(crew: Crew) -> list[int]:
    """The worker processes' ids, once all three run (the jobs waiting launch them all)."""

    def running() -> list[int] | None:
        pids = [handle.backend.pid for handle in crew.workers.values()]
        return pids if all(pids) else None

    return wait_for(running, what="every worker to start")


def _workers_gone(pids: list[int]) -> None:
    for pid in pids:
        wait_for(lambda pid=pid: process_gone(pid), timeout=60, what=f"worker process {pid} to end")


@pytest.fixture
def crew(tmp_path):
    crew = Crew(store=str(tmp_path / "store"), worker_classes=["subprocess"])
    try:
        yield crew
    finally:
        crew.close()
    assert not (tmp_path / "store").exists()  # nobody recreated it


def _send_all(crew: Crew, marks: Path) -> list[int]:
    crew.recruit(workers=3)
    return [crew.send(jobs.mark_then_sleep, args=(str(marks), f"job{n}", _seconds(n))) for n in range(JOBS)]


def test_receive_raises_store_error_for_good_instead_of_returning_none(crew, tmp_path):
    marks = tmp_path / "marks"
    ids = _send_all(crew, marks)
    _started(marks, 4)
    pids = _pids(crew)
    _delete(tmp_path / "store")
    got: list[int] = []
    started = time.monotonic()
    with pytest.raises(StoreError):  # "is gone", or a write that failed as the folder went
        while True:  # results already in come out first; then the error, never None
            result = crew.receive(timeout=DEADLINE)
            assert result is not None, f"receive() returned None with {JOBS - len(got)} job(s) in flight"
            got.append(result.id)
    assert time.monotonic() - started < DEADLINE
    assert set(got) < set(ids)  # the rest can never come back
    for _ in range(3):  # for good: every later call says so at once, whatever its timeout
        with pytest.raises(StoreGoneError, match="is gone"):
            crew.receive(timeout=DEADLINE)
        with pytest.raises(StoreGoneError, match="is gone"):
            crew.receive(timeout=0)
    with pytest.raises(StoreGoneError, match="is gone"):
        _in_time(lambda: list(crew.results()))
    with pytest.raises(StoreGoneError, match="is gone"):
        crew.receivable()
    with pytest.raises(StoreGoneError, match="is gone"):
        crew.send(jobs.double, args=(1,))  # it could never run
    _in_time(crew.close)  # workers are killed through their backends: no Stop can reach them
    _workers_gone(pids)


def test_map_raises_store_error(crew, tmp_path):
    marks = tmp_path / "marks"
    crew.recruit(workers=3)
    mapped: dict[str, Any] = {}

    def run_map() -> None:
        names = [f"job{n}" for n in range(JOBS)]
        try:
            mapped["value"] = crew.map(jobs.mark_then_sleep, [str(marks)] * JOBS, names, map(_seconds, range(JOBS)))
        except BaseException as exc:
            mapped["error"] = exc

    thread = threading.Thread(target=run_map, daemon=True)
    thread.start()
    _started(marks, 4)
    pids = _pids(crew)
    _delete(tmp_path / "store")
    thread.join(DEADLINE)
    assert not thread.is_alive(), f"map() still waits {DEADLINE} s after its store was deleted"
    assert isinstance(mapped.get("error"), StoreError), mapped
    with pytest.raises(StoreGoneError, match="is gone"):
        _in_time(lambda: crew.map(jobs.double, [1, 2]))
    _in_time(crew.close)
    _workers_gone(pids)


def test_executor_futures_raise_store_error(crew, tmp_path):
    marks = tmp_path / "marks"
    crew.recruit(workers=3)
    executor = CrewExecutor(crew=crew)
    futures = [executor.submit(jobs.mark_then_sleep, str(marks), f"job{n}", _seconds(n)) for n in range(JOBS)]
    _started(marks, 4)
    pids = _pids(crew)
    _delete(tmp_path / "store")
    outcomes = {"done": 0, "gone": 0}
    for future in as_completed(futures, timeout=DEADLINE):  # every one ends, in time
        try:
            future.result(timeout=0)
            outcomes["done"] += 1
        except StoreGoneError as exc:
            assert "is gone" in str(exc)
            outcomes["gone"] += 1
    assert outcomes["gone"] > 0 and sum(outcomes.values()) == JOBS, outcomes
    with pytest.raises(StoreGoneError, match="is gone"):
        executor.submit(jobs.double, 1)  # as a broken concurrent.futures pool refuses new work
    _in_time(lambda: executor.shutdown(wait=True))
    _in_time(crew.close)
    _workers_gone(pids)


class _GoneAtLease(LocalStore):
    """A store whose folder goes (as far as the crew can tell) at the next lease renewal, once armed."""

    armed = False

    def put(self, key, data):
        if self.armed and key.endswith("/lease"):
            raise StoreGoneError("the store's folder is gone (simulated)")
        return super().put(key, data)


class _Forwarder(Worker):
    """A forwarder-like class (its jobs wait for its relaunch) that dies on demand."""

    worker_class = "gone-test-forwarder"
    nested = True
    status_interval = 0.05
    alive = True
    store: _GoneAtLease | None = None
    manager = None

    def start(self, launch):
        type(self).alive = True

    def is_running(self):
        if not type(self).alive:
            type(self).store.armed = True  # the store goes the moment its death is seen ...
            type(self).manager._lease_due = float("-inf")  # ... in the turn that also plans its restart
        return type(self).alive

    def kill(self):
        type(self).alive = False


def test_close_returns_when_a_restart_was_planned_in_the_turn_the_store_went(tmp_path):
    """Found by review: the planned launch was never started nor refused, so close() waited for ever."""
    store = _GoneAtLease(tmp_path / "store")
    _Forwarder.store = store
    crew = Crew(store=store, worker_classes=[_Forwarder], heartbeat_interval=0.05, heartbeat_timeout=600)
    try:
        [handle] = crew.recruit(1)
        crew.send(sum, args=([1],))
        manager = _Forwarder.manager = crew._manager
        record = manager.records[handle.name]

        def written() -> bool:
            with manager.lock:
                tasks = manager.ledger.tasks_of(handle.name)
                return record.up and bool(tasks) and all(task.written for task in tasks)

        wait_for(written, timeout=30, what="the job's task to be written")
        store.put(f"{crew.id}/inbox/beat.{handle.name}.{record.incarnation}.1", b"")  # it began ...
        wait_for(lambda: record.beat_seen, timeout=30, what="its beat")
        _Forwarder.alive = False  # ... and dies holding the job
        wait_for(lambda: manager.gone is not None, timeout=30, what="the store to be found gone")
    finally:
        closing = threading.Thread(target=crew.close, daemon=True)
        closing.start()
        closing.join(timeout=30)
    assert not closing.is_alive(), f"close() hangs: the worker is {record.life.value}"
