"""Bad input gets a clear error and loses nothing; dead and hung workers are handled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from crew_core import (
    CorruptObjectError,
    Crew,
    PluginError,
    SerializationError,
    StoreError,
    WorkerCrashedError,
    WorkerLaunchError,
)
from crew_core.testing import jobs, process_gone, wait_for
from crew_local import LocalStore


def test_an_unpicklable_function_is_refused_at_send(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    lock = threading.Lock()

    def uses_lock():
        with lock:
            return 1

    with pytest.raises(SerializationError, match="function cannot be pickled"):
        crew.send(uses_lock)
    with pytest.raises(SerializationError, match="positional arguments cannot be pickled"):
        crew.send(jobs.double, args=(threading.Lock(),))
    with pytest.raises(SerializationError, match="keyword arguments cannot be pickled"):
        crew.send(jobs.sleep_then, kwargs={"seconds": 0, "value": threading.Lock()})
    assert crew.receive() is None  # nothing was queued
    assert not any(w.up() for w in crew.workers.values())


def test_an_unpicklable_return_value_comes_back_as_an_error(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    crew.send(jobs.unpicklable_value)
    result = crew.receive(timeout=60)
    assert result.status == "error" and isinstance(result.error, SerializationError)
    assert "_thread.lock" in str(result.error) and "cannot be pickled" in str(result.error)
    crew.send(jobs.double, args=(2,))
    assert crew.receive(timeout=60).value == 4  # the worker lives on


def test_unknown_worker_class_and_store_names_are_clear_errors():
    with pytest.raises(PluginError, match=r"class 'no-such-worker'; installed: .*executor, .*subprocess"):
        Crew(worker_classes=["no-such-worker"])
    with pytest.raises(PluginError, match=r"unknown store class 'nowhere'; installed: .*local"):
        Crew(store="nowhere")
    with pytest.raises(PluginError, match=r"scheme 'zz'"):
        Crew(store="zz://bucket/prefix")
    with Crew() as crew:
        with pytest.raises(PluginError, match="no-such-worker"):
            crew.recruit(workers=1, worker_class="no-such-worker")
        with pytest.raises(TypeError, match="rejected its options"):
            crew.recruit(workers=1, job_queue="spot")
    with pytest.raises(TypeError, match="unknown setting 'max_retries'"):
        Crew(max_retries=3)


def test_a_worker_killed_mid_job_is_relaunched_and_the_job_runs_again(make_crew, tmp_path):
    crew = make_crew()
    [worker] = crew.recruit(workers=1)
    started = tmp_path / "started"
    job = crew.send(jobs.touch_then_sleep, args=(str(started), 0.5, "second time lucky"))
    wait_for(started.exists, what="the job to start")
    first_pid = worker.backend.pid
    os.kill(first_pid, signal.SIGKILL)
    result = crew.receive(timeout=60)
    assert (result.id, result.status, result.value, result.tries) == (job, "success", "second time lucky", 2)
    assert worker.backend.pid != first_pid
    assert crew.receive() is None  # delivered once


def test_a_job_that_kills_its_worker_once_succeeds_on_the_next_try(make_crew, tmp_path):
    crew = make_crew()
    crew.recruit(workers=1)
    crew.send(jobs.die_once, args=(str(tmp_path / "marker"),))
    result = crew.receive(timeout=60)
    assert (result.status, result.value, result.tries) == ("success", "survived", 2)


def test_a_job_that_always_kills_its_worker_stops_after_max_tries(make_crew):
    crew = make_crew(max_tries=3)
    crew.recruit(workers=2)
    crash = crew.send(jobs.die)
    innocent = [crew.send(jobs.double, args=(i,)) for i in range(5)]
    results = {r.id: r for r in crew.results(timeout=120)}
    assert results[crash].status == "crash" and results[crash].tries == 3
    assert isinstance(results[crash].error, WorkerCrashedError) and "max_tries=3" in str(results[crash].error)
    assert [results[i].value for i in innocent] == [0, 2, 4, 6, 8]


def test_a_hung_worker_is_found_by_its_silent_heartbeat(make_crew):
    crew = make_crew(heartbeat_interval=0.1, heartbeat_timeout=1.0)
    [worker] = crew.recruit(workers=1)
    job = crew.send(jobs.sleep_then, args=(1.0, "after the hang"))
    hung = wait_for(lambda: worker.backend.pid, what="the worker to start")
    record = crew._manager.records[worker.name]
    wait_for(lambda: not crew.receivable() and record.beat_seen, what="the first heartbeat")
    os.kill(hung, signal.SIGSTOP)  # alive to the OS, silent to the crew
    result = crew.receive(timeout=60)
    assert (result.id, result.value, result.tries) == (job, "after the hang", 2)
    assert worker.backend.pid != hung


class CorruptsFirstResult(LocalStore):
    """Reads the first result object from the inbox as garbage, as a damaged disk would."""

    corrupted = False

    def get(self, key):
        data = super().get(key)
        if not self.corrupted and "/inbox/0" in key:
            self.corrupted = True
            return b"\x80\x05 not a pickle"
        return data


def test_a_corrupt_result_object_is_reported_and_its_jobs_retried(make_crew, tmp_path, caplog):
    store = CorruptsFirstResult(tmp_path / "store")
    crew = make_crew(store=store)
    crew.recruit(workers=1)
    job = crew.send(jobs.double, args=(21,))
    result = crew.receive(timeout=60)
    assert (result.id, result.value, result.tries) == (job, 42, 2)
    assert store.corrupted and "not signed with this crew's secret" in caplog.text  # damaged: its signature fails
    store.close()


def test_a_corrupt_task_object_is_retried_not_lost(make_crew, monkeypatch):
    from crew_core.wire import protocol

    crew = make_crew()
    crew.recruit(workers=1)
    real = protocol.encode_task
    calls = []

    def corrupt_first(record):
        calls.append(record)
        return b"garbage" if len(calls) == 1 else real(record)

    monkeypatch.setattr(protocol, "encode_task", corrupt_first)
    job = crew.send(jobs.double, args=(5,))
    result = crew.receive(timeout=60)
    assert (result.id, result.value, result.tries) == (job, 10, 1)  # charged a try, but it ran once
    with pytest.raises(CorruptObjectError, match="'some/key' is corrupt"):
        protocol.decode_task(b"garbage", "some/key")


class FlakyStore(LocalStore):
    """A local store whose controller-side calls fail while ``down`` is set."""

    down = False

    def _check(self):
        if self.down:
            raise StoreError("store unreachable (simulated outage)")

    def put(self, key, data):
        self._check()
        super().put(key, data)

    def list(self, prefix, start_after=None):
        self._check()
        return super().list(prefix, start_after)


def test_a_store_that_is_down_fails_loudly_and_loses_nothing(make_crew, tmp_path):
    store = FlakyStore(tmp_path / "store")
    crew = make_crew(store=store)
    crew.recruit(workers=1)
    crew.send(jobs.double, args=(1,))
    assert crew.receive(timeout=60).value == 2
    store.down = True
    job = crew.send(jobs.sleep_then, args=(0.3, "kept"))  # accepted: send never touches the store
    with pytest.raises(StoreError, match="unreachable"):
        crew.receive(timeout=60)  # the controller cannot write the task: the user hears of it
    store.down = False
    result = crew.receive(timeout=60)
    assert (result.id, result.value) == (job, "kept")
    assert crew.receive() is None  # delivered once
    store.close()


def test_a_worker_that_cannot_start_is_a_launch_error(make_crew):
    crew = make_crew(max_tries=2)
    crew.recruit(workers=1, python="/nonexistent/python3")
    job = crew.send(jobs.double, args=(1,))
    with pytest.raises(WorkerLaunchError, match="/nonexistent/python3"):
        crew.receive(timeout=60)  # the first failed launch is raised at once
    result = crew.receive(timeout=60)  # relaunches fail too: after max_tries the job gives up
    assert (result.id, result.status) == (job, "error") and isinstance(result.error, WorkerLaunchError)
    assert "never ran: the 2 worker launches meant to run it failed" in str(result.error)
    assert crew.receive() is None
    with pytest.raises(WorkerLaunchError, match="/nonexistent/python3"):
        crew.launch()  # an explicit launch raises in the caller


def test_a_worker_that_dies_at_start_is_not_a_crash_of_the_job_nor_a_relaunch_loop(make_crew, tmp_path):
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: crew_core' >&2\nexit 1\n")  # a broken install
    broken.chmod(0o755)
    crew = make_crew(max_tries=2)
    crew.recruit(workers=1, python=str(broken), stderr=subprocess.DEVNULL)
    result = crew.send(jobs.double, args=(1,)) and crew.receive(timeout=60)
    assert result.status == "error" and isinstance(result.error, WorkerLaunchError)  # it never ran
    assert "ended before it started" in str(result.error) and result.tries == 0


def test_a_job_that_kills_a_batch_does_not_charge_its_neighbours(make_crew, tmp_path):
    crew = make_crew(max_tries=1)
    crew.recruit(workers=1)
    for n in range(5):  # measured short: the next ones travel in batches
        crew.send(jobs.die_once, args=(str(tmp_path / f"warm{n}"),))
    marker = tmp_path / "warm-exists"
    marker.touch()
    [crew.receive(timeout=60) for _ in range(5)]
    ok = tmp_path / "ok"
    ok.touch()
    ids = [crew.send(jobs.die_once, args=(str(ok),)) for _ in range(40)]
    killer = crew.send(jobs.die_once, args=(str(tmp_path / "kills-once"),))
    ids += [crew.send(jobs.die_once, args=(str(ok),)) for _ in range(40)]
    results = {r.id: r for r in crew.results(timeout=120)}
    assert all(results[i].value == "survived" for i in ids)  # with max_tries=1 any charge would be a crash
    assert results[killer].value == "survived"  # its batch died; alone, it ran again uncharged


def test_workers_leave_when_their_controller_dies(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, sys
        from crew_core import Crew
        crew = Crew(store={str(tmp_path / "store")!r}, heartbeat_interval=0.1, worker_classes=["subprocess"])
        [worker] = crew.recruit(workers=1)
        crew.launch()
        print(worker.backend.pid, flush=True)
        os._exit(0)  # no close(), no atexit: the worker is orphaned
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    pid = int(out.stdout)

    wait_for(lambda: process_gone(pid), timeout=60, what="the orphaned worker to exit")


def test_results_already_collected_are_handed_out_while_the_store_fails(make_crew, tmp_path):
    store = FlakyStore(tmp_path / "store")
    crew = make_crew(store=store)
    crew.recruit(workers=1)
    ids = [crew.send(jobs.double, args=(n,)) for n in range(3)]
    wait_for(lambda: len(crew._manager.ledger.results) == 3, what="the results to be collected")
    store.down = True
    crew.send(jobs.double, args=(10,))  # its task cannot be written
    got = [crew.receive(timeout=60) for _ in range(3)]  # the results in hand come first
    assert sorted(r.id for r in got) == ids
    with pytest.raises(StoreError, match="unreachable"):
        crew.receive(timeout=60)  # then the failure
    store.down = False
    assert crew.receive(timeout=60).value == 20
    store.close()


class LosingStore(LocalStore):
    """A local store that loses the first task record written to it (the put returns, nothing is kept)."""

    lost: str | None = None

    def put(self, key, data):
        if self.lost is None and "/workers/" in key:
            self.lost = key
            return
        super().put(key, data)


def test_a_task_record_that_vanishes_is_noticed_and_its_job_runs_again(make_crew, tmp_path):
    store = LosingStore(tmp_path / "store")
    # The idle worker beats every second: never silent long enough to be taken for hung.
    crew = make_crew(store=store, heartbeat_interval=0.1, heartbeat_timeout=3.0)
    crew.recruit(workers=1)
    job = crew.send(jobs.double, args=(21,))
    result = crew.receive(timeout=60)  # not a hang: after a heartbeat timeout the crew looks, and resends
    assert store.lost is not None and (result.id, result.value, result.tries) == (job, 42, 1)
    store.close()
