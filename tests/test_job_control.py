"""Job control on local workers: timeouts, cancel, output, clean workers, lifetimes, crash causes.

The contract suite (``crew_core.testing.WorkerContract``) runs timeout, cancel and output on every
backend; these tests go into what only a local process shows.
"""

from __future__ import annotations

import math
import os
import resource
import signal
import sys
import time
from pathlib import Path

import pytest

from crew_core import CrewExecutor, JobCancelledError, JobTimeoutError, WorkerCrashedError
from crew_core.testing import jobs, process_gone, wait_for


def unstoppable(seconds: float) -> str:
    """Sleep with SIGALRM blocked: as C code holding the GIL would, it cannot be interrupted."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)
    return "finished"


def start_then_hang(seconds: float) -> None:
    """Start a program, then hang where SIGALRM cannot reach (the worker must be killed)."""
    import subprocess

    subprocess.Popen(["sleep", "300"])
    unstoppable(seconds)


def litter() -> int:
    """Change everything a job should not pass on, and leave a process running; return its pid."""
    import subprocess

    os.environ["CREW_TEST_LEAK"] = "1"
    os.chdir("/")
    sys.setrecursionlimit(12345)
    sys.path.insert(0, "/nowhere")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 64), hard))
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    return subprocess.Popen(["sleep", "300"]).pid


def surroundings() -> tuple[object, ...]:
    return (
        os.environ.get("CREW_TEST_LEAK"), os.getcwd(), sys.getrecursionlimit(), "/nowhere" in sys.path,
        resource.getrlimit(resource.RLIMIT_NOFILE)[0], signal.getsignal(signal.SIGUSR1),
    )  # fmt: skip


def fork_and_return() -> str:
    pid = os.fork()
    if pid == 0:
        return "from the child"  # the worker must not go on serving in this process
    os.waitpid(pid, 0)
    return "from the parent"


def die_unless(variable: str) -> str:
    if not os.environ.get(variable):
        os._exit(9)
    return os.environ[variable]


def kill_self(signum: int) -> None:
    os.kill(os.getpid(), signum)


def shout(megabytes: int) -> None:
    import logging

    sys.stdout.write("x" * (megabytes << 20))
    logging.getLogger("a.job").warning("careful")


def test_timeouts_per_job_and_crew_wide(make_crew):
    crew = make_crew(job_timeout=0.5)
    crew.recruit(workers=2)
    short = crew.send(jobs.sleep_then, args=(60,))
    spared = crew.send(jobs.sleep_then, args=(1.0, "done"), job_timeout=30)
    unlimited = crew.send(jobs.sleep_then, args=(1.0, "free"), job_timeout=math.inf)
    results = {r.id: r for r in crew.results(timeout=60)}
    assert results[short].status == "timeout" and "0.5 s" in str(results[short].error)
    assert results[spared].value == "done" and results[unlimited].value == "free"
    for wrong in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="timeout"):
            crew.send(jobs.double, args=(1,), job_timeout=wrong)
    with pytest.raises(TypeError, match="timeout"):
        crew.send(jobs.double, args=(1,), job_timeout="1")
    with pytest.raises(ValueError, match="job_timeout"):
        make_crew(job_timeout=-1)


def test_a_job_that_cannot_be_interrupted_costs_its_worker_and_is_not_run_again(make_crew):
    crew = make_crew(stop_grace=0.5)
    crew.recruit(workers=1)
    crew.send(jobs.double, args=(1,))
    assert crew.receive(timeout=60).value == 2
    job = crew.send(unstoppable, args=(120,), job_timeout=0.5)
    result = crew.receive(timeout=120)
    assert result.id == job and result.status == "timeout" and isinstance(result.error, JobTimeoutError)
    assert "could not stop it" in str(result.error)
    assert crew.map(jobs.double, [3]).values() == [6]  # a relaunched worker goes on
    [row] = crew.summary()
    assert row["launches"] == 2 and row["timeouts"] == 1 and row["crashes"] == 0
    assert crew.receive(timeout=1) is None  # it was not run again


def test_killing_a_worker_ends_what_its_job_started(make_crew):
    import subprocess

    crew = make_crew(stop_grace=0.5)
    [worker] = crew.recruit(workers=1)
    crew.send(jobs.double, args=(1,))
    assert crew.receive(timeout=60).value == 2
    pid = worker.backend.pid
    crew.send(start_then_hang, args=(120,), job_timeout=0.5)
    def program() -> str:
        return subprocess.run(["pgrep", "-P", str(pid), "-f", "sleep 300"], capture_output=True, text=True).stdout

    wait_for(program, timeout=60, what="the job's program to start")
    orphan = int(program())
    assert crew.receive(timeout=120).status == "timeout"
    wait_for(lambda: process_gone(orphan), timeout=30, what="the job's program to end with its worker")


def test_cancel_by_tags_and_what_it_refuses(make_crew, tmp_path):
    crew = make_crew()
    crew.recruit(workers=1, tags={"slow"})
    crew.recruit(workers=1)
    started = tmp_path / "started"
    slow = [crew.send(jobs.touch_then_sleep, args=(str(started), 300), tags="slow") for _ in range(3)]
    quick = crew.send(jobs.double, args=(2,))
    wait_for(started.exists, timeout=60, what="a slow job to start")
    assert sorted(crew.cancel(tags="slow")) == slow
    results = {r.id: r for r in crew.results(timeout=60)}
    assert [results[i].status for i in slow] == ["cancelled"] * 3 and results[quick].value == 4
    assert all(isinstance(results[i].error, JobCancelledError) for i in slow)
    assert crew.cancel(10_000) == []  # unknown: nothing happens
    with pytest.raises(TypeError, match="job id or tags"):
        crew.cancel()
    with pytest.raises(TypeError, match="job id"):
        crew.cancel("1")


def test_output_is_capped_and_log_records_go_with_stderr(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    crew.send(shout, args=(2,))
    result = crew.receive(timeout=60)
    assert result.status == "success"
    assert result.stdout.startswith("[crew: the first 1048576 bytes were cut]\n") and result.stdout.endswith("x")
    assert len(result.stdout) < (1 << 20) + 100
    assert "careful" in result.stderr


def test_output_capture_can_be_turned_off(make_crew, capfd):
    crew = make_crew(capture_output=False)
    crew.recruit(workers=1)
    crew.send(jobs.print_and_run, args=("loud", "louder", ["echo", "loudest"]))
    result = crew.receive(timeout=60)
    assert (result.status, result.stdout, result.stderr) == ("success", "", "")
    wait_for(lambda: "loudest" in capfd.readouterr().out or None, timeout=10, what="the worker's own output")


def test_a_job_leaves_nothing_behind_for_the_next(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    crew.send(surroundings)
    before = crew.receive(timeout=60).value
    crew.send(litter)
    littered = crew.receive(timeout=60)
    child = littered.value
    assert littered.status == "success" and "left running were ended" in " ".join(littered.warnings)
    crew.send(surroundings)
    assert crew.receive(timeout=60).value == before
    assert process_gone(child)
    assert crew.summary().totals["launches"] == 1  # the same warm worker


def test_a_forked_child_never_becomes_a_second_worker(make_crew, tmp_path):
    crew = make_crew()
    crew.recruit(workers=1)
    crew.send(fork_and_return)
    assert crew.receive(timeout=60).value == "from the parent"
    results = crew.map(jobs.mark_then_sleep, [str(tmp_path)] * 20, [f"job{n}" for n in range(20)], [0] * 20)
    assert results.ok
    ran = sorted(path.name.split(".")[0] for path in tmp_path.iterdir())
    assert ran == sorted(f"job{n}" for n in range(20))  # each once


def test_workers_leave_after_tasks_max_jobs_and_come_back(make_crew):
    crew = make_crew()
    crew.recruit(workers=1, tasks_max=2)
    pids = []
    for _ in range(5):
        crew.send(jobs.pid)
        pids.append(crew.receive(timeout=60).value)
    assert len(set(pids)) == 3 and all(pids.count(pid) <= 2 for pid in pids)
    [row] = crew.summary()
    assert row["launches"] == 3 and row["crashes"] == 0
    [worker] = crew.workers.values()
    crew.send(jobs.pid)  # the third launch's second job: it leaves after it
    assert crew.receive(timeout=60).value == pids[-1]
    wait_for(lambda: not worker.up(), timeout=60, what="the worker to leave after its 2 jobs")
    assert worker.backend.returncode == 0  # a lifetime's end is no failure to its backend
    with pytest.raises(ValueError, match="tasks_max"):
        crew.recruit(workers=1, tasks_max=0)
    with pytest.raises(TypeError, match="tasks_max"):
        crew.recruit(workers=1, tasks_max=2.5)


def test_workers_leave_after_seconds_wall(make_crew):
    crew = make_crew()
    [worker] = crew.recruit(workers=1, seconds_wall=1)
    crew.send(jobs.pid)
    first = crew.receive(timeout=60).value
    wait_for(lambda: not worker.up(), timeout=60, what="the worker to leave after 1 s")
    crew.send(jobs.pid)
    assert crew.receive(timeout=60).value != first  # launched afresh for the new job
    with pytest.raises(ValueError, match="seconds_wall must be a positive number"):
        crew.recruit(workers=1, seconds_wall=0)


def test_a_crash_says_how_the_worker_died(make_crew):
    crew = make_crew(max_tries=1)
    crew.recruit(workers=1)
    causes = {}
    for name, fun, args in [("exit", os._exit, (13,)), ("segv", kill_self, (signal.SIGSEGV,)),
                            ("kill", kill_self, (signal.SIGKILL,))]:  # fmt: skip
        crew.send(fun, args=args)
        result = crew.receive(timeout=60)
        assert result.status == "crash" and isinstance(result.error, WorkerCrashedError)
        causes[name] = str(result.error)
    assert "exit code 13" in causes["exit"]
    assert "killed by SIGSEGV" in causes["segv"]
    assert "SIGKILL" in causes["kill"] and "out of memory" in causes["kill"]


def test_crash_tags_send_the_next_try_to_other_workers(make_crew):
    crew = make_crew(max_tries=3)
    crew.recruit(workers=1, tags={"small"})
    crew.recruit(workers=1, tags={"big"}, env={"CREW_TEST_BIG": "yes"})
    job = crew.send(die_unless, args=("CREW_TEST_BIG",), tags="small", crash_tags=["big"])
    result = crew.receive(timeout=60)
    assert result.id == job and result.value == "yes" and result.tags == {"big"} and result.tries == 2
    with pytest.raises(TypeError, match="crash_tags"):
        crew.send(jobs.double, args=(1,), crash_tags="big")
    with pytest.raises(LookupError):
        crew.send(jobs.double, args=(1,), crash_tags=["huge"])


def test_executor_options_carry_a_timeout():
    with CrewExecutor(max_workers=1, worker_class="subprocess") as executor:
        assert executor.submit(jobs.double, 1).result(timeout=60) == 2
        future = executor.options(job_timeout=0.5).submit(jobs.sleep_then, 60)
        with pytest.raises(JobTimeoutError):
            future.result(timeout=60)
        with pytest.raises(TimeoutError):  # JobTimeoutError is a TimeoutError, as users catch it
            executor.options(job_timeout=0.5).submit(jobs.sleep_then, 60).result(timeout=60)


def test_interrupted_jobs_leave_no_alarm_behind(make_crew, tmp_path: Path):
    crew = make_crew()
    crew.recruit(workers=1)
    # A generous timeout for a quick job (a loaded CI machine took over 0.3 s for its first run),
    # then a job that outlasts it: a stale alarm would stop that one.
    crew.send(jobs.sleep_then, args=(0.01, "quick"), job_timeout=2)
    assert crew.receive(timeout=60).value == "quick"
    crew.send(jobs.sleep_then, args=(2.5, "after"))  # no timeout: a stale alarm must not stop it
    assert crew.receive(timeout=60).value == "after"


# ---------------------------------------------------------------- found by review
def raise_a_long_chain(links: int, seconds: float) -> None:
    """Raise an exception whose traceback takes a while to format, just before ``seconds``."""
    error: BaseException | None = None
    for link in range(links):
        try:
            raise ValueError(link)
        except ValueError as exc:
            exc.__context__ = error
            error = exc
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        pass
    assert error is not None
    raise error


def swallow(seconds: float) -> str:
    try:
        time.sleep(seconds)
    except:  # noqa: E722 - a careless job, on purpose
        pass
    return "swallowed"


def program_from_a_thread() -> int:
    import subprocess
    import threading

    started: list[int] = []
    ready = threading.Event()

    def run() -> None:
        started.append(subprocess.Popen(["sleep", "300"]).pid)
        ready.set()
        time.sleep(600)  # the thread lives on, holding the program

    threading.Thread(target=run, daemon=True).start()
    ready.wait()
    return started[0]


def forkserver_pool() -> tuple[list[int], int]:
    import multiprocessing
    import multiprocessing.forkserver

    with multiprocessing.get_context("forkserver").Pool(2) as pool:
        values = pool.map(abs, [-1, -2, -3])
    return values, multiprocessing.forkserver._forkserver._forkserver_pid


def lower_open_files_for_good() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def test_a_timeout_while_crew_formats_the_jobs_error_does_not_kill_the_worker(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    crew.send(raise_a_long_chain, args=(3000, 0.95), job_timeout=1.0)
    result = crew.receive(timeout=60)
    assert result.status in ("error", "timeout") and result.tries == 1
    [row] = crew.summary()
    assert (row["launches"], row["crashes"]) == (1, 0)


def test_a_job_that_swallows_its_timeout_still_times_out(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    crew.send(swallow, args=(30,), job_timeout=0.5)
    result = crew.receive(timeout=60)
    assert result.status == "timeout" and isinstance(result.error, JobTimeoutError) and result.value is None


def test_cancelling_a_running_job_and_the_one_behind_it_keeps_the_worker(make_crew, tmp_path):
    crew = make_crew(stop_grace=1)
    crew.recruit(workers=1, tags={"grid"})
    started = tmp_path / "started"
    crew.send(jobs.touch_then_sleep, args=(str(started), 300), tags="grid")
    crew.send(jobs.sleep_then, args=(300,), tags="grid")
    wait_for(started.exists, timeout=60, what="the first job to start")
    assert len(crew.cancel(tags="grid")) == 2
    assert {r.status for r in crew.results(timeout=60)} == {"cancelled"}
    assert crew.map(jobs.double, [1]).values() == [2]
    assert crew.summary().totals["launches"] == 1  # stopped, not killed


def test_cancelling_one_job_of_a_batch_leaves_the_others_alone(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    assert crew.map(jobs.sleep_then, [0.0] * 20, range(20)).ok  # measured as quick: they go in batches
    ids = [crew.send(jobs.sleep_then, args=(2.0 if n == 3 else 0.0, n)) for n in range(8)]
    wait_for(lambda: crew.workers["subprocess-1"].busy(), timeout=30, what="the batch to start")
    assert crew.cancel(ids[6]) == [ids[6]]
    results = {r.id: r for r in crew.results(timeout=60)}
    assert results[ids[6]].status == "cancelled"
    assert [results[i].value for i in ids if i != ids[6]] == [0, 1, 2, 3, 4, 5, 7]
    assert crew.summary().totals["launches"] == 1


def test_tasks_max_holds_within_batches(make_crew):
    crew = make_crew()
    crew.recruit(workers=1, tasks_max=3)
    pids = [result.value for result in crew.map(lambda _: os.getpid(), range(30))]
    assert max(pids.count(pid) for pid in set(pids)) <= 3 and len(set(pids)) >= 10


def test_a_program_started_from_a_job_thread_is_ended(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    crew.send(program_from_a_thread)
    result = crew.receive(timeout=60)
    wait_for(lambda: process_gone(result.value), timeout=30, what="the program to be ended")


def test_multiprocessing_helpers_a_job_keeps_stay_usable(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    servers = set()
    for _ in range(3):
        crew.send(forkserver_pool)
        result = crew.receive(timeout=120)
        assert result.status == "success" and result.value[0] == [1, 2, 3], result.traceback
        servers.add(result.value[1])
    assert len(servers) == 1  # kept between jobs
    crew.close()
    wait_for(lambda: process_gone(servers.pop()), timeout=30, what="the forkserver to end with its worker")


def test_a_limit_that_cannot_be_put_back_retires_the_worker(make_crew):
    crew = make_crew()
    [worker] = crew.recruit(workers=1)
    crew.send(jobs.pid)
    first = crew.receive(timeout=60).value
    crew.send(lower_open_files_for_good)
    result = crew.receive(timeout=60)
    assert result.status == "success"
    [note] = [w for w in result.warnings if w.startswith("crew:")]
    assert "RLIMIT_NOFILE cannot be put back" in note and "leaves after the job" in note
    crew.send(jobs.pid)
    assert crew.receive(timeout=60).value != first  # a fresh process serves next
    assert crew.summary().totals["crashes"] == 0 and worker.up()
