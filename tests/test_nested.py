"""Nested crews: local forwarders (worker class "nested") each running an inner crew, real processes."""

from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path

import pytest

from crew_core import Crew, JobCancelledError, JobTimeoutError, WorkerLaunchError
from crew_core.plugin.processes import process_alive
from crew_core.testing import jobs, wait_for


def inner(store: Path, workers: int = 2, **recruit: object) -> dict[str, object]:
    return {"store": str(store), "recruit": [{"workers": workers, "worker_class": "subprocess", **recruit}]}


def collect(crew: Crew, count: int, timeout: float = 120) -> dict[int, object]:
    results = {}
    while len(results) < count:
        result = crew.receive(timeout=timeout)
        assert result is not None, f"only {len(results)} of {count} results came"
        results[result.id] = result
    return results


def test_jobs_go_through_forwarders_with_everything_a_result_carries(make_crew, tmp_path):
    crew = make_crew(store=tmp_path / "outer")
    crew.recruit(workers=2, worker_class="nested", tags={"far"}, inner=inner(tmp_path / "inner", 2))
    ids = [crew.send(jobs.double, (i,), tags="far") for i in range(300)]
    warned = crew.send(jobs.warn_and_return, ("careful", 7), tags="far")
    failed = crew.send(jobs.fail, ("deep inside",), tags="far")
    printed = crew.send(jobs.print_and_run, ("to out", "to err", ["true"]), tags="far")
    results = collect(crew, len(ids) + 3)
    assert [results[i].value for i in ids] == [2 * i for i in range(300)]
    assert results[warned].value == 7 and results[warned].warnings == ["careful"]
    assert isinstance(results[failed].error, ValueError) and "deep inside" in results[failed].traceback
    assert "to out" in results[printed].stdout and "to err" in results[printed].stderr
    # The inner worker that ran each job is named after its forwarder; each ran once.
    assert {r.worker.split("/")[0] for r in results.values()} == {"nested-1", "nested-2"}
    assert all(r.worker.split("/")[1].startswith("subprocess-") and r.tries == 1 for r in results.values())
    summary = crew.summary()
    inner_rows = [row for row in summary if row.get("inner")]
    assert {row["worker"].split("/")[0] for row in inner_rows} == {"nested-1", "nested-2"}
    assert summary.totals["jobs"] == len(results)  # inner rows are not counted twice
    for forwarder in ("nested-1", "nested-2"):  # the inner rows are as of the last answer, not older
        own = next(row["jobs"] for row in summary if row["worker"] == forwarder)
        assert sum(row["jobs"] for row in inner_rows if row["worker"].startswith(f"{forwarder}/")) == own


def test_tags_route_to_the_forwarder_and_inside_its_inner_crew(make_crew, tmp_path):
    crew = make_crew(store=tmp_path / "outer")
    crew.recruit(worker_class="nested", tags={"a"}, inner=inner(tmp_path / "ia", 1))
    gpu = {"store": str(tmp_path / "ib"), "recruit": [{"workers": 1, "worker_class": "subprocess"},
                                                       {"workers": 1, "worker_class": "subprocess", "tags": ["gpu"]}]}
    crew.recruit(worker_class="nested", tags={"b", "gpu"}, inner=gpu)
    a = [crew.send(jobs.pid, tags="a") for _ in range(5)]
    b = [crew.send(jobs.pid, tags={"b", "gpu"}) for _ in range(5)]
    results = collect(crew, 10)
    assert {results[i].worker.split("/")[0] for i in a} == {"nested-1"}
    assert {results[i].worker for i in b} == {"nested-2/subprocess-2"}  # the inner worker with "gpu"


def test_timeouts_and_cancel_pass_through(make_crew, tmp_path):
    crew = make_crew(store=tmp_path / "outer")
    crew.recruit(worker_class="nested", inner=inner(tmp_path / "inner", 2))
    slow = crew.send(jobs.sleep_then, (60,), job_timeout=0.5)
    started = tmp_path / "started"
    long = crew.send(jobs.touch_then_sleep, (str(started), 60))
    wait_for(started.exists, what="the long job to start on an inner worker")
    assert crew.cancel(long) == [long]
    results = collect(crew, 2)
    assert results[slow].status == "timeout" and isinstance(results[slow].error, JobTimeoutError)
    assert results[long].status == "cancelled" and isinstance(results[long].error, JobCancelledError)
    after = crew.send(jobs.double, (4,))  # the inner workers live on
    assert collect(crew, 1)[after].value == 8


def test_an_inner_crash_comes_out_with_its_tries_and_cause(make_crew, tmp_path):
    crew = make_crew(store=tmp_path / "outer")
    crew.recruit(worker_class="nested", inner={**inner(tmp_path / "inner", 1), "settings": {"max_tries": 2}})
    job = crew.send(jobs.die, (13,))
    result = collect(crew, 1)[job]
    assert result.status == "crash" and result.tries == 2
    assert "exit code 13" in str(result.error)


def test_a_killed_forwarder_is_relaunched_and_resumes_its_inner_crew(make_crew, tmp_path):
    crew = make_crew(store=tmp_path / "outer")
    crew.recruit(worker_class="nested", inner=inner(tmp_path / "inner", 2, detached=True))
    marks = tmp_path / "marks"
    ids = [crew.send(jobs.mark_then_sleep, (str(marks), f"j{i}", 1.5)) for i in range(6)]
    wait_for(lambda: sum(jobs.runs_of(marks).values()) >= 2, what="inner workers to start jobs")
    backend = crew.workers["nested-1"].backend
    first = backend.pid
    os.kill(first, signal.SIGKILL)
    results = collect(crew, len(ids))
    assert all(results[i].ok for i in ids)
    assert backend.pid != first  # relaunched
    assert jobs.runs_of(marks) == {f"j{i}": 1 for i in range(6)}  # nothing lost, nothing run twice
    row = next(row for row in crew.summary() if row["worker"] == "nested-1")
    assert row["crashes"] == 1 and row["launches"] == 2


def test_closing_the_outer_crew_ends_the_inner_crews_and_their_workers(tmp_path):
    crew = Crew(store=tmp_path / "outer", worker_classes=["subprocess"])
    crew.recruit(worker_class="nested", inner=inner(tmp_path / "inner", 2, detached=True))
    started = tmp_path / "started"
    crew.send(jobs.touch_then_sleep, (str(started), 60))
    ready = crew.send(jobs.pid)
    wait_for(started.exists, what="a job to start")
    inner_pids = {int(started.read_text()), collect(crew, 1)[ready].value}
    forwarder = crew.workers["nested-1"].backend.pid
    crew.close()
    assert not process_alive(forwarder)
    for pid in inner_pids:  # detached: they would wait out the lease if the inner crew were not closed
        wait_for(lambda pid=pid: not process_alive(pid), timeout=30, what=f"inner worker {pid} to end")
    assert not any((tmp_path / "inner").glob("*/lease"))  # the inner crew's objects are gone


def test_an_inner_crew_that_cannot_open_fails_the_launch_clearly(make_crew, tmp_path):
    crew = make_crew(store=tmp_path / "outer", max_tries=1)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    crew.recruit(worker_class="nested", inner=inner(blocked / "store", 1))
    job = crew.send(jobs.double, (1,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = collect(crew, 1, timeout=60)[job]
    assert result.status == "error" and isinstance(result.error, WorkerLaunchError)
    assert "failed as it started" in str(result.error)


@pytest.mark.parametrize(
    ("inner_spec", "error", "message"),
    [
        (None, TypeError, "needs inner="),
        ("s3://bucket", TypeError, "inner must be a dict"),
        ({"recruit": []}, ValueError, "at least one recruit"),
        ({"recruit": [{"workers": 0}]}, ValueError, "'workers'] must be a whole number"),
        ({"recruit": [{"workers": 1}], "color": 1}, TypeError, "unknown key"),
        ({"recruit": [{"workers": 1}], "settings": {"max_tris": 1}}, TypeError, "unknown setting"),
        ({"recruit": [{"workers": 1, "worker_class": "no-such-class"}]}, Exception, "no-such-class"),
        ({"recruit": [{"workers": 1, "env": {"A": object()}}]}, TypeError, "plain data"),
        ({"store": 42, "recruit": [{"workers": 1}]}, TypeError, "inner['store']"),
    ],
)
def test_a_bad_inner_spec_is_refused_at_recruit(make_crew, tmp_path, inner_spec, error, message):
    crew = make_crew(store=tmp_path / "outer")
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")):
        crew.recruit(worker_class="nested", inner=inner_spec)
    assert crew.workers == {}
