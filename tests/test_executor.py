"""CrewExecutor: a standard Executor over a crew, and what only crew adds (tags, crew=, progress).

CPython's own executor tests run on it in ``test_cpython_futures.py``; the three of them that
start a fresh interpreter are here in crew's words.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from crew_core import CrewError, CrewExecutor, UnknownTagError, WorkerCrashedError
from crew_core.testing import jobs


def _until(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_submit_returns_standard_futures():
    with CrewExecutor(max_workers=2, worker_class="subprocess") as executor:
        assert isinstance(executor, cf.Executor)
        futures = [executor.submit(jobs.double, n) for n in range(10)]
        assert all(type(future) is cf.Future for future in futures)
        assert sorted(f.result(timeout=60) for f in cf.as_completed(futures, timeout=60)) == [2 * n for n in range(10)]
        failing = executor.submit(divmod, 1, 0)
        with pytest.raises(ZeroDivisionError) as caught:
            failing.result(timeout=60)
        assert "raised on crew worker" in "".join(caught.value.__notes__)
        seen = []
        executor.submit(jobs.double, 21).add_done_callback(lambda future: seen.append(future.result()))
        _until(lambda: seen == [42])
    assert executor.crew._closed  # it made the crew: shutdown closed it


def test_cancel_takes_out_a_job_that_has_not_started(tmp_path):
    with CrewExecutor(max_workers=1, worker_class="subprocess") as executor:
        first = executor.submit(jobs.touch_then_sleep, str(tmp_path / "first"), 3.0)
        _until(lambda: (tmp_path / "first").exists())
        assert first.running() and not first.cancel()  # running: too late
        second = executor.submit(jobs.touch_then_sleep, str(tmp_path / "second"), 0.0)
        assert second.cancel() and second.cancelled()
        done, _ = cf.wait([second], timeout=1)  # wait() and as_completed() learn of it at once
        assert done == {second}
        assert executor.submit(jobs.double, 1).result(timeout=60) == 2
        assert not (tmp_path / "second").exists()
        assert executor.crew.summary().totals["jobs"] == 2  # the cancelled job never ran


def test_a_crew_given_is_shared_with_receive_and_left_open(make_crew):
    crew = make_crew()
    crew.recruit(workers=2)
    executor = CrewExecutor(crew=crew)
    future = executor.submit(jobs.sleep_then, 0.2, "from the executor")
    assert crew.receive(timeout=5) is None  # only executor jobs in flight: nothing for receive()
    job = crew.send(jobs.double, args=(4,))
    assert crew.receive(timeout=60).id == job
    assert future.result(timeout=60) == "from the executor"
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(jobs.double, 1)
    assert crew.map(jobs.double, [1, 2]).values() == [2, 4]  # the crew is still open


def test_options_route_jobs_by_tags(make_crew):
    crew = make_crew()
    plain, = crew.recruit(workers=1)
    gpu, = crew.recruit(workers=1, tags={"gpu"})
    executor = CrewExecutor(crew=crew)
    on_gpu = executor.options(tags="gpu")
    assert isinstance(on_gpu, cf.Executor)
    assert {on_gpu.submit(jobs.pid).result(timeout=60) for _ in range(4)} == {gpu.backend.pid}
    assert list(on_gpu.map(jobs.double, [1, 2, 3])) == [2, 4, 6]
    with pytest.raises(UnknownTagError):
        executor.options(tags="tpu")
    on_gpu.shutdown()  # a view shares shutdown with its executor
    with pytest.raises(RuntimeError):
        executor.submit(jobs.double, 1)
    assert {row["worker"]: row["jobs"] for row in crew.summary()}[plain.name] == 0


def test_bad_arguments_are_clear_errors(make_crew):
    for wrong in (0, -1):
        with pytest.raises(ValueError, match="max_workers must be greater than 0"):
            CrewExecutor(max_workers=wrong)
    for wrong in (1.5, "2", True):
        with pytest.raises(TypeError, match="max_workers"):
            CrewExecutor(max_workers=wrong)
    with pytest.raises(TypeError, match="crew must be a Crew"):
        CrewExecutor(crew="nightly")
    crew = make_crew()
    crew.recruit(workers=1)
    with pytest.raises(TypeError, match="max_workers, store"):
        CrewExecutor(2, crew=crew, store="local")
    with pytest.raises(TypeError, match=r"unknown setting|rejected its options"):
        CrewExecutor(1, worker_class="subprocess", no_such_option=1)
    executor = CrewExecutor(crew=crew)
    with pytest.raises(TypeError, match="callables"):
        executor.submit(42)
    with pytest.raises(ValueError, match="chunksize"):
        executor.map(jobs.double, [1], chunksize=0)
    with pytest.raises(TypeError, match="progress"):
        executor.map(jobs.double, [1], progress="yes")
    executor.shutdown()


def test_a_chunk_does_not_make_its_worker_import_the_controllers_side(make_crew):
    """Pickled by reference, the chunk's runner is imported by each worker: it must cost nothing."""
    crew = make_crew()
    crew.recruit(workers=1)
    with CrewExecutor(crew=crew) as executor:
        assert list(executor.map(jobs.imported, ["crew_core.api.executor"] * 2, chunksize=2)) == [False, False]


def test_map_in_order_with_chunks_timeout_and_progress(capsys):
    with CrewExecutor(max_workers=2, worker_class="subprocess") as executor:
        assert list(executor.map(pow, range(20), range(20), chunksize=6)) == [n**n for n in range(20)]
        assert list(executor.map(jobs.double, range(30), progress=True)) == [2 * n for n in range(30)]
        assert "30/30" in capsys.readouterr().err
        results = executor.map(jobs.sleep_then, [0.0, 4.0], timeout=1)
        assert next(results) is None
        with pytest.raises(TimeoutError):  # the 4 s job is not back 1 s after map()
            next(results)


def test_a_crash_and_a_closed_crew_end_futures_with_errors(make_crew):
    with CrewExecutor(max_workers=1, worker_class="subprocess", max_tries=1) as executor:
        with pytest.raises(WorkerCrashedError):
            executor.submit(jobs.die, 3).result(timeout=60)
        assert executor.submit(jobs.double, 2).result(timeout=60) == 4  # a new worker took over
    crew = make_crew()
    crew.recruit(workers=1)
    executor = CrewExecutor(crew=crew)
    waiting = [executor.submit(jobs.sleep_then, 30.0) for _ in range(2)]
    crew.close()  # the user closes their crew under the executor: no future hangs
    for future in waiting:
        with pytest.raises(CrewError, match="closed"):
            future.result(timeout=30)


def test_asyncio_and_dask_take_the_executor():
    dask = pytest.importorskip("dask")
    import operator

    with CrewExecutor(max_workers=2, worker_class="subprocess") as executor:

        async def powers() -> list[int]:
            loop = asyncio.get_running_loop()
            return await asyncio.gather(*(loop.run_in_executor(executor, pow, 2, n) for n in range(6)))

        assert asyncio.run(powers()) == [1, 2, 4, 8, 16, 32]
        a = dask.delayed(operator.add)(1, 2)
        b = dask.delayed(operator.mul)(a, 10)
        assert dask.compute(dask.delayed(sum)([a, b]), scheduler=executor) == (33,)
        assert executor.crew.summary().totals["jobs"] >= 6 + 3  # they ran as crew jobs


def test_scikit_learn_grid_search_on_crew_workers_matches_n_jobs_1():
    joblib = pytest.importorskip("joblib")
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    import crew_core.api.joblib

    X, y = load_iris(return_X_y=True)
    grid = {"C": [0.1, 1, 10], "gamma": [0.01, 0.1, 1]}
    serial = GridSearchCV(SVC(), grid, n_jobs=1).fit(X, y)
    with joblib.parallel_config(backend="crew", n_jobs=2, worker_class="subprocess"):
        on_crew = GridSearchCV(SVC(), grid).fit(X, y)
    assert on_crew.best_params_ == serial.best_params_
    assert on_crew.best_score_ == serial.best_score_
    assert list(on_crew.cv_results_["mean_test_score"]) == list(serial.cv_results_["mean_test_score"])
    [executor] = crew_core.api.joblib._executors.values()
    assert 1 <= executor.crew.summary().totals["jobs"] <= 9 * 5  # the fits ran on crew workers, in joblib's batches
    executor.shutdown()


def test_joblib_backend_on_a_crew_of_yours(make_crew):
    joblib = pytest.importorskip("joblib")
    import crew_core.api.joblib  # noqa: F401

    crew = make_crew()
    crew.recruit(workers=2)
    with joblib.parallel_config(backend="crew", crew=crew):
        assert joblib.Parallel()(joblib.delayed(jobs.double)(n) for n in range(8)) == [2 * n for n in range(8)]
        with pytest.raises(ZeroDivisionError):
            joblib.Parallel()(joblib.delayed(divmod)(1, n) for n in (1, 0, 2))
    assert crew.summary().totals["jobs"] >= 8 + 1


def test_joblib_batches_tiny_calls_into_few_crew_jobs(make_crew):
    """joblib's automatic batching, as loky has it: 10,000 tiny calls took 6.5-7.3 s one crew job
    each, against loky's 0.1 s (issue #22); in batches they cost a few hundred jobs at most."""
    joblib = pytest.importorskip("joblib")
    import crew_core.api.joblib  # noqa: F401

    crew = make_crew()
    crew.recruit(workers=2)
    calls = 5_000
    with joblib.parallel_config(backend="crew", crew=crew):
        assert joblib.Parallel()(joblib.delayed(jobs.double)(n) for n in range(calls)) == [2 * n for n in range(calls)]
    sent = crew.summary().totals["jobs"]
    assert sent < calls / 10, f"{sent} crew jobs for {calls} calls: joblib's batches were not used"


def _python(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120,
        cwd=tmp_path,
    )  # fmt: skip


def test_interpreter_waits_for_submitted_calls_at_exit(tmp_path):
    ran = _python("""
        from crew_core import CrewExecutor
        from crew_core.testing import jobs
        executor = CrewExecutor(2, worker_class="subprocess")
        executor.submit(jobs.sleep_then, 1.0, "apple").add_done_callback(lambda f: print(f.result()))
        """, tmp_path)  # fmt: skip
    assert (ran.returncode, ran.stdout.strip(), ran.stderr) == (0, "apple", "")


def test_shutdown_without_waiting_does_not_hang_at_exit(tmp_path):
    ran = _python("""
        from crew_core import CrewExecutor
        from crew_core.testing import jobs
        executor = CrewExecutor(3, worker_class="subprocess")
        executor.submit(jobs.sleep_then, 1.0, "apple").add_done_callback(lambda f: print(f.result()))
        executor.shutdown(wait=False)
        """, tmp_path)  # fmt: skip
    assert (ran.returncode, ran.stdout.strip(), ran.stderr) == (0, "apple", "")


def test_submit_after_interpreter_shutdown_is_refused(tmp_path):
    ran = _python("""
        import atexit
        from crew_core import CrewExecutor
        @atexit.register
        def run_last():
            try:
                executor.submit(id, None)
            except RuntimeError as exc:
                print("refused:", exc)
        executor = CrewExecutor(2, worker_class="subprocess")
        executor.submit(id, 42).result()
        """, tmp_path)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "refused: cannot schedule new futures" in ran.stdout
    assert "Traceback" not in ran.stderr


def test_receive_and_map_leave_executor_jobs_alone(make_crew):
    crew = make_crew()
    crew.recruit(workers=2)
    executor = CrewExecutor(crew=crew)
    futures = [executor.submit(jobs.double, n) for n in range(10)]
    assert crew.map(jobs.double, [100]).values() == [200]
    assert [f.result(timeout=60) for f in futures] == [2 * n for n in range(10)]
    assert crew.receive(timeout=1) is None


def test_joblib_calls_in_two_threads_with_different_n_jobs_both_finish():
    joblib = pytest.importorskip("joblib")
    import threading

    import crew_core.api.joblib  # noqa: F401

    out: dict[int, object] = {}

    def run(n_jobs: int) -> None:
        with joblib.parallel_config(backend="crew", n_jobs=n_jobs, worker_class="subprocess"):
            out[n_jobs] = joblib.Parallel()(joblib.delayed(jobs.sleep_then)(0.05, i) for i in range(12))

    threads = [threading.Thread(target=run, args=(n,)) for n in (2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert out == {2: list(range(12)), 3: list(range(12))}  # neither cancelled the other's work


def test_map_on_a_named_crew_runs_what_was_sent_before_its_input_failed(tmp_path):
    def inputs():
        yield 1
        yield 2
        raise OSError("the input file vanished")

    executor = CrewExecutor(1, worker_class="subprocess", name="mapfail", store=str(tmp_path / "store"))
    with pytest.raises(OSError, match="vanished"):
        executor.map(jobs.double, inputs())
    assert executor.submit(jobs.double, 5).result(timeout=60) == 10
    executor.shutdown()  # does not wait for futures that can never finish
    assert executor.crew._closed


def test_retries_do_not_log_future_state_errors(caplog):
    with CrewExecutor(max_workers=1, worker_class="subprocess", max_tries=2) as executor, pytest.raises(
        WorkerCrashedError
    ):
        executor.submit(jobs.die, 3).result(timeout=120)
    assert "unexpected state" not in caplog.text


def test_a_named_executor_resumed_after_a_crash_does_not_recruit_again(tmp_path):
    script = f"""
        import os
        from crew_core import CrewExecutor
        from crew_core.testing import jobs
        executor = CrewExecutor(2, worker_class="subprocess", name="again", store={str(tmp_path / "store")!r})
        print(len(executor.crew.workers), flush=True)
        executor.submit(jobs.double, 1).result()
        os.kill(os.getpid(), 9)
        """
    counts = [_python(script, tmp_path).stdout.strip() for _ in range(2)]
    assert counts == ["2", "2"]
    executor = CrewExecutor(2, worker_class="subprocess", name="again", store=str(tmp_path / "store"))
    assert len(executor.crew.workers) == 2 and executor.crew.resumed
    executor.shutdown()
