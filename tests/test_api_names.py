"""The public API's rules (docs/guide/api-design.md): ``fn``, the three timeouts and what None
means, ``Status``, ``crew.result()``, ``crew.stop()``, and every old spelling still working with
a :class:`CrewDeprecationWarning` that points at the user's line."""

from __future__ import annotations

import importlib
import math
import time
import warnings

import pytest

import crew_core
from crew_core import Crew, CrewDeprecationWarning, CrewExecutor, JobTimeoutError, Result, Status
from crew_core.testing import jobs, wait_for
from crew_local import SubprocessWorker


class CostlyWorker(SubprocessWorker):
    """A worker class with a default idle timeout, as the cloud classes have."""

    default_timeout = 900.0


def _warned_here(record: pytest.WarningsRecorder, new: str) -> None:
    """One warning naming ``new``, attributed to this file (the caller's line, not crew's)."""
    [warning] = [w for w in record if issubclass(w.category, DeprecationWarning)]
    assert new in str(warning.message) and warning.filename == __file__, (warning.filename, str(warning.message))


# ---------------------------------------------------------------------- Status
def test_status_is_an_exported_string_enum(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    job = crew.send(jobs.double, args=(21,))
    result = crew.receive(timeout=60)
    assert result.id == job and result.status is Status.SUCCESS and result.status == "success"
    assert [status.value for status in Status] == ["success", "error", "crash", "timeout", "cancelled"]
    assert isinstance(Status.ERROR, str) and f"{Status.TIMEOUT}" == "timeout"


def test_a_result_made_with_a_plain_status_string_gets_its_member():
    """As an old pickle or a plugin makes them: the string becomes its Status; a wrong one is refused."""
    assert Result(1, "crash").status is Status.CRASH and Result(2, Status.ERROR).status is Status.ERROR
    with pytest.raises(ValueError, match="'finished' is not a valid Status"):
        Result(3, "finished")


# ---------------------------------------------------------------------- the three timeouts
def test_idle_timeout_omitted_is_the_class_default_and_none_or_inf_is_no_limit(make_crew):
    crew = make_crew(worker_classes=[CostlyWorker])
    [default] = crew.recruit(workers=1)
    [none] = crew.recruit(workers=1, idle_timeout=None)
    [inf] = crew.recruit(workers=1, idle_timeout=math.inf)
    [given] = crew.recruit(workers=1, idle_timeout=30)
    assert (default.idle_timeout, none.idle_timeout, inf.idle_timeout, given.idle_timeout) == (900.0, None, None, 30.0)
    for wrong, error in ((0, ValueError), (-1, ValueError), ("5", TypeError), (True, TypeError)):
        with pytest.raises(error, match="idle_timeout must be"):
            crew.recruit(workers=1, idle_timeout=wrong)


def test_job_timeout_omitted_is_the_crews_and_none_is_no_limit(make_crew):
    crew = make_crew(job_timeout=0.5)
    crew.recruit(workers=2)
    limited = crew.send(jobs.sleep_then, args=(3, "late"))
    free = crew.send(jobs.sleep_then, args=(1.5, "free"), job_timeout=None)
    results = {r.id: r for r in crew.results(timeout=60)}
    assert results[limited].status is Status.TIMEOUT and isinstance(results[limited].error, JobTimeoutError)
    assert results[free].status is Status.SUCCESS and results[free].value == "free"


def test_executor_options_job_timeout(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    with CrewExecutor(crew=crew) as executor:
        with pytest.raises(JobTimeoutError):
            executor.options(job_timeout=0.5).submit(jobs.sleep_then, 30).result(timeout=60)
        assert executor.options(job_timeout=None).submit(jobs.double, 4).result(timeout=60) == 8
        with pytest.raises(ValueError, match="job_timeout must be a positive number"):
            executor.options(job_timeout=0)


# ---------------------------------------------------------------------- crew.result()
def test_result_waits_for_one_job_and_receive_never_hands_it_out_again(make_crew):
    crew = make_crew()
    crew.recruit(workers=2)
    slow = crew.send(jobs.sleep_then, args=(1.0, "slow"))
    fast = crew.send(jobs.double, args=(2,))
    result = crew.result(slow, timeout=60)
    assert (result.id, result.status, result.value) == (slow, Status.SUCCESS, "slow")
    assert crew.receive(timeout=60).id == fast  # the fast one went to receive() as usual
    assert crew.receive(timeout=0) is None  # and the one result() took is not handed out again
    assert crew.result(crew.send(jobs.double, args=(5,)), timeout=60).value == 10


def test_result_of_a_finished_job_and_errors_inside_the_result(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    job = crew.send(jobs.fail, args=("boom",))
    wait_for(crew.receivable, timeout=60, what="the result")
    result = crew.result(job, timeout=0)  # already there: no wait
    assert result.status is Status.ERROR and "boom" in str(result.error)


def test_result_times_out_with_timeout_error_and_the_result_goes_to_receive(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    job = crew.send(jobs.sleep_then, args=(1.0, "later"))
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=f"job {job} did not finish in time"):
        crew.result(job, timeout=0.1)
    assert time.monotonic() - started < 5
    assert crew.receive(timeout=60).value == "later"


def test_result_refuses_an_unknown_or_already_taken_id(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    job = crew.send(jobs.double, args=(1,))
    with pytest.raises(ValueError, match="job 99 was never sent by this crew"):
        crew.result(99)
    assert crew.receive(timeout=60).id == job
    with pytest.raises(ValueError, match=f"the result of job {job} was already taken"):
        crew.result(job, timeout=5)
    with pytest.raises(TypeError, match="job_id must be a job id"):
        crew.result("1")


def test_result_after_a_named_crew_resumes(tmp_path):
    store = str(tmp_path / "store")
    with pytest.raises(RuntimeError), Crew(store=store, name="resumable", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        job = crew.send(jobs.sleep_then, args=(0.5, "kept"))
        raise RuntimeError("the controller dies")  # leaves the crew for a next controller
    with Crew(store=store, name="resumable", worker_classes=["subprocess"]) as again:
        assert again.resumed
        assert again.result(job, timeout=60).value == "kept"
        assert again.receive(timeout=0) is None


# ---------------------------------------------------------------------- results(timeout=)
def test_results_warns_when_its_timeout_runs_out_with_jobs_in_flight(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    crew.send(jobs.sleep_then, args=(2.0, "late"))
    with pytest.warns(FutureWarning, match="raises TimeoutError from the next minor release") as record:
        assert list(crew.results(timeout=0.1)) == []
    assert record[0].filename == __file__
    assert [r.value for r in crew.results(timeout=60)] == ["late"]  # nothing left: no warning


# ---------------------------------------------------------------------- stop()
def test_stop_asks_workers_to_stop_and_they_stay_in_the_crew(make_crew):
    crew = make_crew()
    workers = crew.recruit(workers=2)
    crew.launch()
    assert set(crew.stop()) == set(workers)
    wait_for(lambda: not any(w.up() for w in workers), timeout=30, what="the workers to stop")
    assert sorted(crew.workers) == sorted(w.name for w in workers)
    crew.send(jobs.double, args=(3,))
    assert crew.receive(timeout=60).value == 6  # launched again for the work


# ---------------------------------------------------------------------- old spellings
def test_send_fun_keyword_warns_and_works(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    with pytest.warns(CrewDeprecationWarning) as record:
        job = crew.send(fun=jobs.double, args=(4,))
    _warned_here(record, "send(fn=)")
    assert crew.result(job, timeout=60).value == 8
    with pytest.raises(TypeError, match="got both fn and fun="), pytest.warns(CrewDeprecationWarning):
        crew.send(jobs.double, fun=jobs.double)
    with pytest.raises(TypeError, match=r"missing its function: send\(fn"):
        crew.send()


def test_map_fun_keyword_warns_and_works(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    with pytest.warns(CrewDeprecationWarning) as record:
        results = crew.map(*[[1, 2]], fun=jobs.double)  # the one way map took fun= with inputs
    _warned_here(record, "map(fn=)")
    assert results.values() == [2, 4]


def test_send_timeout_keyword_warns_and_keeps_its_old_meaning(make_crew):
    crew = make_crew(job_timeout=0.5)
    crew.recruit(workers=2)
    with pytest.warns(CrewDeprecationWarning) as record:
        limited = crew.send(jobs.sleep_then, args=(30,), timeout=0.3)
    _warned_here(record, "send(job_timeout=)")
    with pytest.warns(CrewDeprecationWarning):
        free = crew.send(jobs.sleep_then, args=(1.0, "free"), timeout=math.inf)
    default = crew.send(jobs.sleep_then, args=(30,), timeout=None)  # None: the crew's job_timeout, as before
    results = {r.id: r for r in crew.results(timeout=60)}
    assert results[limited].status is Status.TIMEOUT and results[default].status is Status.TIMEOUT
    assert results[free].value == "free"


def test_recruit_timeout_keyword_warns_and_keeps_its_old_meaning(make_crew):
    crew = make_crew(worker_classes=[CostlyWorker])
    with pytest.warns(CrewDeprecationWarning) as record:
        [worker] = crew.recruit(workers=1, timeout=30)
    _warned_here(record, "recruit(idle_timeout=)")
    assert worker.idle_timeout == 30.0
    with pytest.warns(CrewDeprecationWarning) as record:
        assert worker.timeout == 30.0
    _warned_here(record, "WorkerHandle.idle_timeout")
    with pytest.warns(CrewDeprecationWarning):
        [unlimited] = crew.recruit(workers=1, timeout=math.inf)
    assert unlimited.idle_timeout is None


def test_options_timeout_keyword_warns_and_works(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    with CrewExecutor(crew=crew) as executor:
        with pytest.warns(CrewDeprecationWarning) as record:
            view = executor.options(timeout=0.5)
        _warned_here(record, "CrewExecutor.options(job_timeout=)")
        with pytest.raises(JobTimeoutError):
            view.submit(jobs.sleep_then, 30).result(timeout=60)


def test_executor_timeout_keyword_warns_and_is_the_idle_timeout():
    with pytest.warns(CrewDeprecationWarning) as record:
        executor = CrewExecutor(max_workers=1, worker_class="subprocess", timeout=30)
    with executor:
        _warned_here(record, "CrewExecutor(idle_timeout=)")
        assert [w.idle_timeout for w in executor.crew.workers.values()] == [30.0]
        assert executor.submit(jobs.double, 2).result(timeout=60) == 4


def test_shutdown_names_warn_and_stop_workers(make_crew):
    crew = make_crew()
    first, second = crew.recruit(workers=2)
    crew.launch()
    with pytest.warns(CrewDeprecationWarning) as record:
        assert crew.shutdown(idle_only=True) == [first, second]
    _warned_here(record, "Crew.stop()")
    wait_for(lambda: not first.up() and not second.up(), timeout=30, what="the workers to stop")
    first.launch()
    wait_for(first.up, timeout=30, what="the worker to launch")
    with pytest.warns(CrewDeprecationWarning) as record:
        first.shutdown()
    _warned_here(record, "WorkerHandle.stop()")
    wait_for(lambda: not first.up(), timeout=30, what="the worker to stop")


@pytest.mark.parametrize("name", ["Worker", "Store", "Launch", "BackendJob", "hookimpl", "get_plugin_manager"])
def test_plugin_names_import_from_crew_core_with_a_warning(name):
    plugin = importlib.import_module("crew_core.plugin")
    with pytest.warns(CrewDeprecationWarning) as record:
        value = getattr(crew_core, name)
    _warned_here(record, f"crew_core.plugin.{name}")
    assert value is getattr(plugin, name)
    with pytest.warns(CrewDeprecationWarning):
        exec(f"from crew_core import {name}", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from crew_core.plugin import Worker  # noqa: F401  # the new place: no warning
