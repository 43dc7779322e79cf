"""The controller's promises, through the public API with real worker processes."""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from crew_core import NoWorkersError, UnknownTagError, WorkerLostError
from crew_core.testing import jobs, wait_for


def test_receive_with_nothing_sent_returns_none_at_once(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    assert crew.receive() is None
    assert not crew.receivable()
    assert not any(w.up() for w in crew.workers.values())  # nothing was launched for it


def test_receive_timeout_returns_none_then_the_result(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    job = crew.send(jobs.sleep_then, args=(1.0, "late"))
    assert crew.receive(timeout=0.05) is None
    result = crew.receive()
    assert (result.id, result.value, result.status) == (job, "late", "success")
    assert result.seconds >= 1.0 and result.started is not None and result.tries == 1


def test_send_before_recruit_is_an_error(make_crew):
    crew = make_crew()
    with pytest.raises(NoWorkersError, match="recruit"):
        crew.send(jobs.double, args=(1,))


def test_a_tag_no_worker_carries_is_an_error_naming_it(make_crew):
    crew = make_crew()
    crew.recruit(workers=1, tags={"gpu"})
    with pytest.raises(UnknownTagError, match=r"'tpu'; the workers carry 'gpu'$"):
        crew.send(jobs.double, args=(1,), tags={"gpu", "tpu"})
    crew.recruit(workers=1, tags={"tpu"})
    with pytest.raises(UnknownTagError, match=r"all of the tags .*; the workers carry 'gpu', 'tpu'$"):
        crew.send(jobs.double, args=(1,), tags={"gpu", "tpu"})
    assert crew.receive() is None  # nothing was accepted
    with pytest.raises(UnknownTagError):
        crew.stop(tags="fpga")


def test_receive_with_tags_no_job_and_no_worker_carries_is_an_error(make_crew):
    crew = make_crew(worker_classes=["executor"])
    crew.recruit(workers=1, tags={"gpu", "big"})
    crew.recruit(workers=1)
    for call in (lambda: crew.receive(tags="nomatch", timeout=5), lambda: crew.receivable(tags={"gpu", "nomatch"})):
        with pytest.raises(UnknownTagError, match=r"the tag\(s\) 'nomatch', so no result can match; tags known"
                                                  r" here: 'big', 'gpu'$"):  # fmt: skip
            call()
    assert crew.receive(tags="gpu") is None and not crew.receivable(tags="big")  # known: empty, not an error
    job = crew.send(jobs.double, args=(2,), tags="gpu")
    crew.dismiss(tags="gpu")  # the worker goes; the tag its job carried stays known
    result = crew.receive(tags={"gpu"}, timeout=60)
    assert result is not None and result.id == job
    assert crew.receive(tags="gpu") is None


def test_jobs_run_only_on_workers_carrying_all_their_tags(make_crew):
    crew = make_crew()
    [plain] = crew.recruit(workers=1)
    [ab] = crew.recruit(workers=1, tags={"a", "b"})
    [a] = crew.recruit(workers=1, tags="a")
    both = [crew.send(jobs.pid, tags={"a", "b"}) for _ in range(6)]
    only_a = [crew.send(jobs.pid, tags="a") for _ in range(6)]
    results = {r.id: r for r in crew.results(timeout=60)}
    assert {results[j].worker for j in both} == {ab.name}
    assert {results[j].worker for j in only_a} <= {ab.name, a.name}
    assert results[both[0]].tags == frozenset({"a", "b"})
    assert not plain.up()


def test_send_launches_only_the_worker_it_picks(make_crew):
    crew = make_crew()
    workers = crew.recruit(workers=3)
    crew.send(jobs.sleep_then, args=(0.5,))
    assert sum(w.up() for w in workers) == 1
    crew.send(jobs.sleep_then, args=(0.5,))
    assert sum(w.up() for w in workers) == 2
    assert len(list(crew.results(timeout=60))) == 2


def test_backlog_drains_with_each_job_answered_once(make_crew):
    crew = make_crew()
    crew.recruit(workers=2)
    ids = [crew.send(jobs.double, args=(i,)) for i in range(300)]
    results = list(crew.results(timeout=120))
    assert sorted(r.id for r in results) == ids
    assert all(r.value == 2 * (r.id - ids[0]) for r in results)
    assert crew.receive() is None


def test_a_crew_that_only_polls_receivable_sees_every_job_finish(make_crew):
    crew = make_crew()
    crew.recruit(workers=2)
    ids = {crew.send(jobs.sleep_then, args=(0.01, i)) for i in range(40)}
    seen = set()

    def poll_once() -> bool:
        if crew.receivable():
            seen.add(crew.receive(timeout=0).id)
        return seen == ids

    wait_for(poll_once, timeout=120, interval=0.001, what="all jobs through receivable()")


def test_sendable_tells_whether_a_job_would_start_now(make_crew):
    crew = make_crew()
    [worker] = crew.recruit(workers=1, tags="t")
    assert crew.sendable() and crew.sendable(tags="t")
    crew.send(jobs.sleep_then, args=(0.5,))
    assert worker.busy() and not crew.sendable()
    crew.receive()
    assert crew.sendable()


def test_shutdown_idle_only_spares_busy_workers(make_crew):
    crew = make_crew()
    idle, busy = crew.recruit(workers=2)
    crew.launch()
    crew.send(jobs.sleep_then, args=(1.0, "finished"))
    assert busy.busy() or idle.busy()
    stopped = crew.stop(idle_only=True)
    assert len(stopped) == 1 and not stopped[0].busy()
    working = next(w for w in (idle, busy) if w not in stopped)
    wait_for(lambda: not stopped[0].up(), what="the idle worker to stop")
    assert working.up()
    assert crew.receive().value == "finished"


def test_dismissed_workers_hand_their_jobs_to_the_others(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    [tagged] = crew.recruit(workers=1, tags="x")
    job = crew.send(jobs.sleep_then, args=(30, "never"), tags="x")
    crew.send(jobs.double, args=(4,))
    assert tagged.busy()
    crew.dismiss(tags="x")
    assert tagged.name not in crew.workers
    results = {r.id: r for r in crew.results(timeout=60)}
    assert isinstance(results[job].error, WorkerLostError) and results[job].status == "error"
    assert sorted(r.value for r in results.values() if r.id != job) == [8]


def test_dismissed_jobs_run_elsewhere_when_they_can(make_crew):
    crew = make_crew()
    [first] = crew.recruit(workers=1, tags="x")
    job = crew.send(jobs.sleep_then, args=(0.3, "moved"))
    crew.recruit(workers=1)
    crew.dismiss(tags="x")
    result = crew.receive(timeout=60)
    assert (result.id, result.value) == (job, "moved") and result.worker != first.name


def test_with_block_leaves_no_worker_process(make_crew):
    crew = make_crew()
    with crew:
        workers = crew.recruit(workers=3)
        crew.send(jobs.sleep_then, args=(60,))  # busy when the block ends
        crew.launch()  # the others; send() launched one in the background
        pids = wait_for(lambda: [w.backend.pid for w in workers] if all(w.backend.pid for w in workers) else None)
    for worker, pid in zip(workers, pids, strict=True):
        assert pid is not None and worker.backend.returncode is not None  # ended and reaped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_executor_workers_run_in_a_user_executor(make_crew):
    with ThreadPoolExecutor(max_workers=2) as pool:
        crew = make_crew(worker_classes=["executor"])
        crew.recruit(workers=2, executor=pool)
        ids = [crew.send(jobs.double, args=(i,)) for i in range(20)]
        results = list(crew.results(timeout=60))
        assert sorted(r.value for r in results) == [2 * i for i in range(20)]
        assert len(ids) == 20
        crew.close()  # stops the loops through the store; the pool's threads come back
        assert threading.active_count() < 20


def test_executor_workers_run_in_a_dask_distributed_client(make_crew):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        crew = make_crew(worker_classes=["executor"])
        crew.recruit(workers=2, executor=client)
        for i in range(10):
            crew.send(jobs.sleep_then, args=(0.05, i))
        results = list(crew.results(timeout=120))
        assert sorted(r.value for r in results) == list(range(10))
        assert {r.worker for r in results} == {"executor-1", "executor-2"}
        crew.close()  # the loops leave through the store; dask's slots are free again
        assert client.submit(jobs.double, 4).result(timeout=60) == 8


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def __call__(self, x):
        return self.factor * x


SETTINGS = {"scale": 2}


def scaled(x):
    return SETTINGS["scale"] * x


def test_what_a_function_reads_is_shipped_as_it_is_at_each_send(make_crew, monkeypatch):
    """Pickles are reused only while they cannot differ: mutable state goes with every send."""
    import functools

    monkeypatch.setattr(scaled, "__module__", "__main__")  # as if defined in a script: pickled by value
    crew = make_crew()
    crew.recruit(workers=1)
    scaler = Scaler(2)
    mapping = {"x": 2}
    lookup = functools.partial(dict.get, mapping)
    first = [crew.send(scaler, args=(1,)), crew.send(lookup, args=("x",)), crew.send(scaled, args=(1,))]
    scaler.factor = 10  # a callable object changed in place
    mapping["x"] = 30  # what a partial holds, changed in place
    SETTINGS["scale"] = 20  # a global dict the function reads, changed in place
    second = [crew.send(scaler, args=(1,)), crew.send(lookup, args=("x",)), crew.send(scaled, args=(1,))]
    results = {r.id: r.value for r in crew.results(timeout=60)}
    assert [results[i] for i in first] == [2, 2, 2]
    assert [results[i] for i in second] == [10, 30, 20]


@pytest.mark.parametrize("tags", ["", {""}, {"gpu", " "}])
def test_an_empty_tag_is_refused(make_crew, tags):
    crew = make_crew()
    with pytest.raises(ValueError, match="a tag must be a non-empty string"):
        crew.recruit(workers=1, tags=tags)


def test_a_job_timeout_past_a_timer_s_range_is_refused_at_send(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    with pytest.raises(ValueError, match=r"timeout must be at most 1e\+09 s"):
        crew.send(jobs.double, args=(1,), job_timeout=1e308)  # the worker died three times on OverflowError
    assert crew.send(jobs.double, args=(1,), job_timeout=math.inf) == 1  # inf: no limit
    assert crew.receive(timeout=60).value == 2
