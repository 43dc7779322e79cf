"""CrewTaskRunner with real Prefect: a flow's tasks run on crew workers with Prefect's semantics."""

from __future__ import annotations

import asyncio
import os
import pickle
import re
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from prefect import flow, tags, task, unmapped
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.futures import wait
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from crew_core import Crew
from prefect_crew import CrewTaskRunner, PrefectCrewFuture

pytestmark = pytest.mark.usefixtures("prefect_home")


# Tasks live in this module: crew's subprocess workers import it (the controller's sys.path).
@task
def square(x: int) -> int:
    return x * x


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def total(numbers: list[int], extra: dict[str, int]) -> int:
    return sum(numbers) + sum(extra.values())


@task
def boom() -> int:
    raise ValueError("boom")


@task(retries=2, retry_delay_seconds=0)
def flaky(counter: str) -> int:
    """Fails on its first two tries (counted in a file: Prefect retries it within one crew job)."""
    path = Path(counter)
    tries = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(tries))
    if tries < 3:
        raise RuntimeError(f"try {tries} fails")
    return tries


@task
def write(path: str, text: str) -> None:
    time.sleep(0.3)  # the reader would find nothing if it did not wait
    Path(path).write_text(text)


@task
def read(path: str) -> str:
    return Path(path).read_text()


@task
async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


@task
def where(_: int) -> int:
    time.sleep(0.05)  # long enough that both workers take some
    return os.getpid()


@task(tags={"crew:big"})
def where_big() -> int:
    return os.getpid()


@task
def die() -> None:
    os._exit(3)


@task(persist_result=True)
def persisted(x: int) -> int:
    return x + 1


def runs_on(crew: Crew) -> CrewTaskRunner:
    return CrewTaskRunner(crew=crew)


def final_states(flow_run_id: Any, expected: int, deadline: float = 30.0) -> dict[str, list[str]]:
    """The final states' names of a flow run's task runs in the API, by task (they come as events: poll)."""
    end = time.monotonic() + deadline
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            final = [run for run in runs if run.state is not None and run.state.is_final()]
            if len(final) >= expected or time.monotonic() > end:
                states: dict[str, list[str]] = {}
                for run in final:  # a run's name is its task's and a suffix
                    states.setdefault(run.name.rsplit("-", 1)[0], []).append(run.state.name)
                return {name: sorted(names) for name, names in states.items()}
            time.sleep(0.2)


def test_a_flow_of_tasks_returns_their_results_with_futures_as_parameters(crew):
    @flow(task_runner=runs_on(crew))
    def arithmetic() -> tuple[int, int, int]:
        a, b = square.submit(3), square.submit(4)
        assert isinstance(a, PrefectCrewFuture)
        c = add.submit(a, b)  # futures as parameters
        nested = total.submit([a, b, c], {"one": square.submit(1)})  # inside collections too
        return a.result(timeout=60), c.result(timeout=60), nested.result(timeout=60)

    assert arithmetic() == (9, 25, 9 + 16 + 25 + 1)


def test_tasks_run_on_the_crews_workers(crew):
    @flow(task_runner=runs_on(crew))
    def pids() -> list[int]:
        return where.map(range(6)).result(timeout=60)

    worker_pids = set(pids())
    assert os.getpid() not in worker_pids
    assert worker_pids <= {child.pid for child in psutil.Process().children(recursive=True)}


def test_a_failing_task_fails_and_what_depends_on_it_is_not_ready(crew):
    @flow(task_runner=runs_on(crew))
    def failing() -> tuple[State, State, State, Any]:
        bad = boom.submit()
        after = add.submit(bad, 1)
        waited = square.submit(2, wait_for=[bad])
        wait([bad, after, waited], timeout=60)
        return bad.state, after.state, waited.state, get_flow_run_id()

    bad, after, waited, flow_run_id = failing()
    assert bad.is_failed() and bad.name == "Failed"
    with pytest.raises(ValueError, match="boom"):
        bad.result()
    assert after.is_pending() and after.name == "NotReady"  # as Prefect's other runners leave it
    assert waited.name == "NotReady"
    assert final_states(flow_run_id, 1) == {"boom": ["Failed"]}  # the API was told, from the worker


def test_retries_are_prefects_and_the_api_sees_them(crew, tmp_path):
    counter = tmp_path / "tries"

    @flow(task_runner=runs_on(crew))
    def retrying() -> tuple[State, Any]:
        future = flaky.submit(str(counter))
        future.wait(timeout=60)
        return future.state, get_flow_run_id()

    state, flow_run_id = retrying()
    assert state.is_completed() and state.result() == 3  # two failures, retried by Prefect's engine
    assert counter.read_text() == "3"
    assert final_states(flow_run_id, 1) == {"flaky": ["Completed"]}
    with get_client(sync_client=True) as client:
        (run,) = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        names = [s.name for s in client.read_task_run_states(run.id)]
    assert names.count("Retrying") == 2 and names[-1] == "Completed"


def test_map_with_unmapped_and_wait(crew):
    @flow(task_runner=runs_on(crew))
    def mapped() -> list[int]:
        futures = add.map(range(8), unmapped(100))
        _, not_done = wait(futures, timeout=60)
        assert not not_done
        return futures.result(timeout=60)

    assert mapped() == [100 + i for i in range(8)]


def test_wait_for_holds_a_task_until_its_upstream_ends(crew, tmp_path):
    path = str(tmp_path / "message")

    @flow(task_runner=runs_on(crew))
    def ordered() -> str:
        written = write.submit(path, "hello")
        return read.submit(path, wait_for=[written]).result(timeout=60)

    assert ordered() == "hello"


def test_async_tasks_and_persisted_results(crew, prefect_home):
    @flow(task_runner=runs_on(crew))
    def both() -> tuple[int, int]:
        return async_double.submit(21).result(timeout=60), persisted.submit(1).result(timeout=60)

    assert both() == (42, 2)
    assert list((prefect_home / "storage").iterdir())  # the worker wrote it where the flow's settings say


def test_500_tasks_give_the_same_results_as_the_thread_pool(crew):
    def squares(runner: Any) -> list[int]:
        @flow(task_runner=runner)
        def many() -> list[int]:
            return square.map(range(500)).result(timeout=300)

        return many()

    assert squares(runs_on(crew)) == squares(ThreadPoolTaskRunner(max_workers=4)) == [i * i for i in range(500)]


def test_a_runner_makes_and_closes_its_own_crew_and_a_dead_worker_crashes_its_task(tmp_path):
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    runner = CrewTaskRunner(store=tmp_path / "store", worker_classes=["subprocess"], recruit=[dict(workers=2)],
                            max_tries=1)  # fmt: skip

    @flow(task_runner=runner)
    def own() -> tuple[int, State]:
        dead = die.submit()
        dead.wait(timeout=60)
        return square.submit(5).result(timeout=60), dead.state

    value, dead = own()
    assert value == 25
    assert dead.is_crashed() and "WorkerCrashedError" in dead.message
    assert runner.crew is None  # the flow ran on a duplicate of it, which closed its crew
    deadline = time.monotonic() + 30
    while (left := {child.pid for child in psutil.Process().children(recursive=True)} - before) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert not left, "a worker outlived its crew"
    assert not any((tmp_path / "store").iterdir()) if (tmp_path / "store").exists() else True


def test_crew_tags_among_a_tasks_tags_choose_its_workers(tmp_path):
    with Crew(store=tmp_path / "store", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        crew.recruit(workers=1, tags="big")
        crew.launch()

        @flow(task_runner=runs_on(crew))
        def placed() -> tuple[list[int], list[int], State]:
            by_task = [where_big.submit() for _ in range(4)]
            with tags("crew:big", "nightly"):  # a block's tags count too; other tags are Prefect's own
                by_block = where.map(range(4))
            with tags("crew:nobody"):
                unknown = square.submit(2)
            unknown.wait(timeout=60)
            return [f.result(timeout=60) for f in by_task], by_block.result(timeout=60), unknown.state

        on_big, in_block, unknown = placed()
        assert len(set(on_big) | set(in_block)) == 1  # all on the one worker that carries "big"
        assert unknown.is_crashed() and "UnknownTagError" in unknown.message and "nobody" in unknown.message


def test_duplicate_equality_and_pickling(crew):
    runner = CrewTaskRunner(store="local", worker_classes=["subprocess"], recruit=[dict(workers=2)], max_tries=2)
    assert runner.duplicate() == runner and runner.duplicate() is not runner
    assert runner != CrewTaskRunner(store="local", recruit=[dict(workers=3)])
    assert pickle.loads(pickle.dumps(runner)) == runner
    on_crew = runs_on(crew)
    assert on_crew.duplicate() == on_crew
    assert pickle.loads(pickle.dumps(on_crew)).crew is None  # a crew stays where it runs
    with pytest.raises(ValueError, match="recruit on the crew instead"):
        CrewTaskRunner(crew=crew, recruit=[dict(workers=1)])
    with pytest.raises(RuntimeError, match="must be started"):
        runner.submit(square, {"x": 1})


def test_the_readmes_example_runs_as_written(capsys):
    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.DOTALL)
    (example,) = [block for block in blocks if "__main__" in block]  # the complete one
    exec(compile(example, str(readme), "exec"), {"__name__": "__main__"})
    assert "30 days, 120060 in all\n" in capsys.readouterr().out


def get_flow_run_id() -> Any:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    return context.flow_run.id
