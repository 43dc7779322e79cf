"""Recovery paths found by review: stuck workers, failed relaunches, failed writes mid-restart."""

from __future__ import annotations

import time

import pytest

from crew_core import StoreError, WorkerLaunchError
from crew_core.testing import jobs, wait_for
from crew_local import LocalStore, SubprocessWorker


def test_jobs_waiting_behind_a_stuck_worker_do_not_hang_receive(make_crew, tmp_path):
    crew = make_crew(auto_restart=False)
    [worker] = crew.recruit(workers=1)
    first = crew.send(jobs.die_once, args=(str(tmp_path / "marker"),))
    second = crew.send(jobs.double, args=(21,))  # waits in the backlog for the same worker
    wait_for(worker.stuck, what="the worker to be stuck")
    assert crew.receive() is None  # nothing can move until restart(): None, not a hang
    crew.restart()
    results = {r.id: r for r in crew.results(timeout=60)}
    assert results[first].value == "survived" and results[second].value == 42


def test_launching_a_stuck_worker_runs_the_jobs_it_held(make_crew, tmp_path):
    crew = make_crew(auto_restart=False)
    [worker] = crew.recruit(workers=1)
    job = crew.send(jobs.die_once, args=(str(tmp_path / "marker"),))
    wait_for(worker.stuck, what="the worker to be stuck")
    worker.launch()
    result = crew.receive(timeout=60)
    assert (result.id, result.value, result.tries) == (job, "survived", 2)


class FlakyStart(SubprocessWorker):
    """Refuses its second launch once, as a busy backend might."""

    worker_class = "flaky"
    starts = 0

    def start(self, launch):
        type(self).starts += 1
        if type(self).starts == 2:
            raise WorkerLaunchError("backend busy, try again (simulated)")
        super().start(launch)


def test_a_failed_automatic_restart_is_tried_again(make_crew, tmp_path):
    crew = make_crew(worker_classes=[FlakyStart])
    [worker] = crew.recruit(workers=1)
    job = crew.send(jobs.die_once, args=(str(tmp_path / "marker"),))
    with pytest.raises(WorkerLaunchError, match="backend busy"):
        wait_for(lambda: crew.receive(timeout=0.05), what="the failed relaunch to surface")
    result = crew.receive(timeout=60)
    assert (result.id, result.value) == (job, "survived")
    assert not worker.stuck()


class FailsOneTaskWrite(LocalStore):
    """Fails the first task write for a worker's second launch, once."""

    failed = False

    def put(self, key, data):
        if not self.failed and "/workers/subprocess-1/2/" in key:
            self.failed = True
            raise StoreError("simulated write failure")
        super().put(key, data)


def test_a_failed_write_during_restart_loses_no_job(make_crew, tmp_path):
    store = FailsOneTaskWrite(tmp_path / "store")
    crew = make_crew(store=store)
    crew.recruit(workers=1)
    ok = tmp_path / "ok"
    ok.touch()
    for _ in range(5):  # learn that die_once is short, so that several are batched together
        crew.send(jobs.die_once, args=(str(ok),))
        crew.receive(timeout=60)
    crew.send(jobs.sleep_then, args=(0.3,))  # keeps the worker busy while the batch forms
    ids = [crew.send(jobs.die_once, args=(str(tmp_path / f"m{i}"),)) for i in range(6)]
    got = set()

    def collect() -> bool:
        try:
            result = crew.receive(timeout=0.1)
        except StoreError:
            return False
        if result is not None:
            got.add(result.id)
        return set(ids) <= got

    wait_for(collect, timeout=120, what="every job despite the failed write")
    assert store.failed
    store.close()


def test_a_worker_that_cannot_be_killed_is_told_to_leave(make_crew):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:  # crew cannot kill a task in a user's executor
        crew = make_crew(worker_classes=["executor"], stop_grace=0.3)
        crew.recruit(workers=1, executor=pool)
        job = crew.send(jobs.sleep_then, args=(1.0, "done"))
        wait_for(lambda: crew.workers["executor-1"].up(), what="the worker to start")
        crew.stop(idle_only=False)  # it cannot answer in time: "killed", yet it runs on
        result = crew.receive(timeout=60)  # its stop request makes it leave, freeing the slot
        assert (result.id, result.value) == (job, "done")
        crew.close()
        assert pool.submit(jobs.double, 1).result(timeout=60) == 2


class FailsThirdStart(SubprocessWorker):
    """The third start of a group fails; killing the first also fails, once."""

    worker_class = "fails-third"
    start_concurrency = 1
    calls = 0

    def start(self, launch):
        type(self).calls += 1
        if type(self).calls == 3:
            raise WorkerLaunchError("quota exceeded (simulated)")
        super().start(launch)

    def kill(self):
        if self.name.endswith("-1") and not getattr(self, "_refused", False):
            self._refused = True
            raise RuntimeError("kill throttled (simulated)")
        super().kill()


def test_a_failed_group_launch_stops_every_started_worker_even_if_a_kill_fails(make_crew):
    crew = make_crew(worker_classes=[FailsThirdStart])
    workers = crew.recruit(workers=4)
    with pytest.raises(WorkerLaunchError, match="quota exceeded") as caught:
        crew.launch()
    assert any("kill throttled" in note for note in caught.value.__notes__)
    assert not workers[1].backend.is_running()  # the second was stopped although the first refused
    workers[0].backend.kill()
    assert not any(w.backend.is_running() for w in workers)


class SlowToReport(SubprocessWorker):
    """A backend that reports a worker ended some seconds after its process has (as Batch and
    Cloud Run do), and counts the kills it is asked for."""

    worker_class = "slow-to-report"
    lag = 8.0  # past the stop grace of the test below
    kills: list[str] = []

    def is_running(self):
        if super().is_running():
            self._ended = None
            return True
        if getattr(self, "_ended", None) is None:
            self._ended = time.monotonic()
        return time.monotonic() - self._ended < self.lag

    def kill(self):
        type(self).kills.append(self.name)
        super().kill()


def test_a_worker_that_left_cleanly_is_not_killed_while_its_backend_is_slow_to_say_so(make_crew):
    crew = make_crew(worker_classes=[SlowToReport], stop_grace=5)
    [worker] = crew.recruit(workers=1)
    assert crew.send(jobs.double, args=(2,)) and crew.receive(timeout=60).value == 4
    started = time.monotonic()
    crew.close()  # the worker leaves at once (exit note "stopped"); its backend says so 8 s later
    assert SlowToReport.kills == []  # not killed at the 5 s grace: it had left
    assert time.monotonic() - started >= SlowToReport.lag - 1  # close() waited for the backend's word
    assert not worker.up()
