"""``recruit(initializer=, initargs=)``: what each launch runs before its first job, with real workers.

The contract every worker class runs (``WorkerContract``) checks once-per-launch and a failing
initializer; here: the checks at the call, an initializer the worker cannot unpickle, what it sets
up staying for every job, named crews that resume, the executor and nested crews.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ProcessPoolExecutor

import pytest

from crew_core import Crew, CrewExecutor, SerializationError, WorkerInitError
from crew_core.plugin.processes import process_alive
from crew_core.testing import jobs, process_gone, wait_for


def _inits(folder) -> list[int]:
    """The pids of the processes that ran ``jobs.initialize`` into ``folder``."""
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted(int(name.rsplit(".", 1)[1]) for name in names)


def set_variable(name: str, value: str) -> None:
    os.environ[name] = value


_helpers: list[subprocess.Popen[bytes]] = []  # in the worker: the processes start_helper started


def start_helper(path: str) -> None:
    """An initializer that starts a helper process (a local server, say) for the jobs to use."""
    _helpers.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]))
    with open(path, "w") as handle:
        handle.write(str(_helpers[-1].pid))


def helper_alive(path: str) -> bool:
    with open(path) as handle:
        return process_alive(int(handle.read()))


# ---------------------------------------------------------------------- the call
@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"initializer": "jobs.initialize"}, TypeError, "initializer must be callable"),
        ({"initializer": jobs.initialize, "initargs": 3}, TypeError, "initargs must be a tuple"),
        ({"initializer": jobs.initialize, "initargs": "ab"}, TypeError, "initargs must be a tuple"),
        ({"initargs": (1,)}, TypeError, "initargs was given without an initializer"),
        ({"initializer": jobs.initialize, "initargs": (threading.Lock(),)}, SerializationError,
         "cannot be pickled to reach the workers"),
    ],
)  # fmt: skip
def test_bad_initializers_are_refused_at_recruit_and_no_worker_is_made(make_crew, arguments, error, match):
    crew = make_crew()
    with pytest.raises(error, match=match):
        crew.recruit(workers=1, **arguments)
    assert crew.workers == {}


def test_initargs_may_be_any_iterable(make_crew, tmp_path):
    crew = make_crew()
    crew.recruit(workers=1, initializer=jobs.initialize, initargs=iter([str(tmp_path / "inits"), "from a list"]))
    crew.send(jobs.initialized)
    assert crew.receive(timeout=60).value[0] == "from a list"


# ---------------------------------------------------------------------- on the worker
def test_what_it_sets_up_stays_for_every_job_of_the_launch(make_crew, tmp_path):
    """The environment the initializer sets is what each job starts from (jobs' own changes are
    undone after them, not its)."""
    crew = make_crew()
    crew.recruit(workers=1, initializer=set_variable, initargs=("CREW_TEST_INIT", "set up"))
    for _ in range(3):
        crew.send(jobs.getenv, args=("CREW_TEST_INIT",))
        result = crew.receive(timeout=60)
        assert result is not None and result.value == "set up", result


def test_processes_it_starts_serve_every_job_and_end_with_the_worker(make_crew, tmp_path):
    """Processes a job leaves running are ended after it; those the initializer started are not."""
    crew = make_crew()
    path = str(tmp_path / "helper.pid")
    crew.recruit(workers=1, initializer=start_helper, initargs=(path,))
    for _ in range(3):
        crew.send(helper_alive, args=(path,))
        result = crew.receive(timeout=60)
        assert result is not None and result.value is True, result
    crew.close()  # the worker leaves, and every process below it ends
    with open(path) as handle:
        pid = int(handle.read())
    wait_for(lambda: process_gone(pid), timeout=60, what="the initializer's helper process to end")


def test_each_relaunch_runs_it_again_and_only_once(make_crew, tmp_path):
    crew = make_crew()
    folder = tmp_path / "inits"
    crew.recruit(workers=1, tasks_max=3, initializer=jobs.initialize, initargs=(str(folder), 1))
    pids = set()
    for _ in range(9):
        crew.send(jobs.initialized)
        result = crew.receive(timeout=60)
        assert result is not None and result.value[0] == 1, result
        pids.add(result.value[1])
    assert len(pids) == 3 and _inits(folder) == sorted(pids)


def test_an_initializer_the_worker_cannot_unpickle_is_a_worker_init_error(make_crew, tmp_path, monkeypatch):
    """Pickled by reference to a module that is gone by the time the worker starts."""
    folder = tmp_path / "modules"
    folder.mkdir()
    (folder / "only_here.py").write_text("def setup():\n    pass\n")
    monkeypatch.syspath_prepend(str(folder))
    import only_here

    try:
        crew = make_crew()
        crew.recruit(workers=1, initializer=only_here.setup)
        shutil.rmtree(folder)  # local workers import what the controller can: not this any more
        crew.send(jobs.double, args=(2,))
        result = crew.receive(timeout=60)
        assert result is not None and isinstance(result.error, WorkerInitError), result
        assert "cannot be unpickled on this worker" in result.error.traceback
        assert "only_here" in result.error.traceback
    finally:
        sys.modules.pop("only_here", None)


def test_a_failed_initializer_is_not_relaunched_in_a_loop(make_crew):
    crew = make_crew()
    [worker] = crew.recruit(workers=1, initializer=jobs.fail_to_initialize, initargs=("broken",))
    for round_ in range(3):  # each send finds the worker retired: an error at once, no launch
        ids = [crew.send(jobs.double, args=(n,)) for n in range(2)]
        results = [crew.receive(timeout=60) for _ in ids]
        assert all(r is not None and isinstance(r.error, WorkerInitError) for r in results), (round_, results)
        assert "broken" in str(results[0].error)
    assert crew.summary()[0]["launches"] == 1
    wait_for(lambda: not worker.up(), timeout=60, what="the retired worker to be down")
    assert not crew.sendable()  # nothing would start at once: no worker can


def test_a_worker_init_error_pickles_with_its_traceback():
    import pickle

    error = pickle.loads(pickle.dumps(WorkerInitError("job 1 never ran", "Traceback ...\nRuntimeError: x\n")))
    assert str(error) == "job 1 never ran" and error.traceback.endswith("RuntimeError: x\n")


# ---------------------------------------------------------------------- named crews
def test_a_resumed_named_crew_relaunches_its_workers_with_their_initializer(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("CREW_SECRET", raising=False)
    store, folder = str(tmp_path / "store"), tmp_path / "inits"
    first = Crew(store=store, name="warm", worker_classes=["subprocess"])
    try:
        first.recruit(workers=1, initializer=jobs.initialize, initargs=(str(folder), "from the roster"))
        first.send(jobs.initialized)
        assert first.receive(timeout=60).value[0] == "from the roster"
    finally:  # as if the controller died: its workers (which end with it) and loop end, its objects stay
        first._manager.close()
        first._closed = True
    assert len(_inits(folder)) == 1
    with Crew(store=store, name="warm", worker_classes=["subprocess"]) as crew:
        assert crew.resumed and list(crew.workers) == ["subprocess-1"]
        crew.send(jobs.initialized)
        result = crew.receive(timeout=60)
        assert result is not None and result.value[0] == "from the roster", result
        assert len(_inits(folder)) == 2 and result.value[1] in _inits(folder)


# ---------------------------------------------------------------------- the executor and nested crews
def test_the_executor_takes_process_pool_executors_initializer(tmp_path):
    folder = str(tmp_path / "inits")
    with ProcessPoolExecutor(max_workers=1, initializer=jobs.initialize, initargs=(folder, "pool")) as pool:
        expected = pool.submit(jobs.initialized).result()[0]
    with CrewExecutor(max_workers=2, worker_class="subprocess", initializer=jobs.initialize,
                      initargs=(folder, "pool")) as executor:  # fmt: skip
        values = [executor.submit(jobs.initialized).result(timeout=60)[0] for _ in range(4)]
    assert values == [expected] * 4


def test_an_executor_on_a_given_crew_refuses_an_initializer(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    with pytest.raises(TypeError, match="initializer"):
        CrewExecutor(crew=crew, initializer=jobs.initialize)


def test_a_forwarders_inner_workers_run_the_initializer(make_crew, tmp_path):
    crew = make_crew(store=tmp_path / "outer")
    folder = tmp_path / "inits"
    inner = {"store": str(tmp_path / "inner"), "recruit": [{"workers": 2, "worker_class": "subprocess"}]}
    crew.recruit(worker_class="nested", inner=inner, initializer=jobs.initialize, initargs=(str(folder), "deep"))
    ids = [crew.send(jobs.initialized) for _ in range(6)]
    results = [crew.receive(timeout=120) for _ in ids]
    assert all(r is not None and r.value[0] == "deep" for r in results), results
    assert set(_inits(folder)) >= {r.value[1] for r in results}  # run where the jobs ran


def test_a_forwarders_failing_initializer_is_a_worker_init_error(make_crew, tmp_path):
    crew = make_crew(store=tmp_path / "outer")
    inner = {"store": str(tmp_path / "inner"), "recruit": [{"workers": 1, "worker_class": "subprocess"}]}
    crew.recruit(worker_class="nested", inner=inner, initializer=jobs.fail_to_initialize, initargs=("deep down",))
    crew.send(jobs.double, args=(1,))
    result = crew.receive(timeout=120)
    assert result is not None and isinstance(result.error, WorkerInitError), result
    assert "deep down" in result.error.traceback
