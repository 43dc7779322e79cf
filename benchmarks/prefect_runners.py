"""A Prefect flow of 500 tasks on ``CrewTaskRunner`` next to Prefect's ``ThreadPoolTaskRunner`` and
prefect-dask's ``DaskTaskRunner``: results equal, wall times side by side.

Run: ``python benchmarks/prefect_runners.py [--tasks 500] [--repeat 3] [--workers 2] [--no-dask]``
(``dev.py test`` installs prefect and prefect-dask; elsewhere ``pip install -c constraints.txt
prefect prefect-dask -e plugins/prefect-crew``). Flows run against Prefect's own test server
(``prefect_test_harness``: a local API on a temporary SQLite database, offline), with Prefect's
home in a temporary folder. Each runner runs the same flow (``square.map(range(tasks))``, then
every result) in turn, ``--repeat`` rounds, the order rotating from round to round (the load
average around each run is printed); the medians of the flow's wall time
(from calling the flow to its return, the runner's start and stop included) are shown.

Runners: the thread pool (Prefect's default; tasks in the flow's process); crew with a crew made
for the flow run (``CrewTaskRunner(recruit=...)``: its workers start and import Prefect within the
flow's time) and with a crew of warm workers (``CrewTaskRunner(crew=...)``); dask with a
``LocalCluster`` made for the flow run (``DaskTaskRunner``'s default) and with a warm cluster
(``DaskTaskRunner(address=...)``); ``--workers`` worker processes each (one thread each for dask).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampling import load, rotated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-dask", action="store_true", help="leave out DaskTaskRunner")
    ns = parser.parse_args()
    home = tempfile.mkdtemp(prefix="prefect-runners-")
    os.environ["PREFECT_HOME"] = home  # before Prefect is imported: it makes its home then
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # 500 task runs' lines would time the terminal
    os.environ.setdefault("DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", "error")  # and so would dask's workers
    try:
        run(ns)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(ns: argparse.Namespace) -> None:
    import contextlib

    from prefect import flow, task
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect.testing.utilities import prefect_test_harness

    from crew_core import Crew
    from prefect_crew import CrewTaskRunner

    @task
    def square(x: int) -> int:
        return x * x

    def flow_time(runner: Any) -> float:
        @flow(task_runner=runner)
        def squares(n: int) -> list[int]:
            return square.map(range(n)).result(timeout=600)

        start = time.perf_counter()
        values = squares(ns.tasks)
        seconds = time.perf_counter() - start
        assert values == expected, f"{runner!r} gave other results"
        return seconds

    expected = [x * x for x in range(ns.tasks)]
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    print(f"python {sys.version.split()[0]}; {ns.tasks} tasks, {ns.workers} workers, {ns.repeat} repeats (medians)")
    with contextlib.ExitStack() as stack:
        stack.enter_context(prefect_test_harness(server_startup_timeout=120))
        crew = stack.enter_context(Crew(worker_classes=["subprocess"]))
        crew.recruit(workers=ns.workers)
        runners: dict[str, Callable[[], Any]] = {
            "ThreadPoolTaskRunner() (threads of the flow's process)": ThreadPoolTaskRunner,
            f"CrewTaskRunner, a new crew of {ns.workers} subprocess workers": lambda: CrewTaskRunner(
                worker_classes=["subprocess"], recruit=[dict(workers=ns.workers)]
            ),
            f"CrewTaskRunner(crew=...), {ns.workers} warm subprocess workers": lambda: CrewTaskRunner(crew=crew),
        }
        if not ns.no_dask:
            from distributed import LocalCluster
            from prefect_dask import DaskTaskRunner

            dask_options = dict(n_workers=ns.workers, threads_per_worker=1, processes=True, dashboard_address=":0")
            cluster = stack.enter_context(LocalCluster(**dask_options))
            runners[f"DaskTaskRunner, a new LocalCluster of {ns.workers} processes"] = lambda: DaskTaskRunner(
                cluster_kwargs=dask_options
            )
            # By address: Prefect pickles the flow, its task runner with it, into each task's context,
            # and a runner holding the cluster object does not pickle.
            runners[f"DaskTaskRunner(address=...), {ns.workers} warm processes"] = lambda: DaskTaskRunner(
                address=cluster.scheduler_address
            )
        flow_time(CrewTaskRunner(crew=crew))  # warm: the crew's workers import Prefect
        if not ns.no_dask:
            flow_time(runners[f"DaskTaskRunner(address=...), {ns.workers} warm processes"]())
        times: dict[str, list[float]] = {label: [] for label in runners}
        for round_ in range(ns.repeat):  # interleaved: a change of load hits every runner alike
            for label in rotated(list(runners), round_):  # and each goes first in turn
                before = load()
                times[label].append(flow_time(runners[label]()))
                print(f"  round {round_ + 1} {label}: {times[label][-1]:.2f} s  load {before} -> {load()}", flush=True)
    width = max(map(len, times))
    print(f"{'runner':<{width}}  {'flow (s)':>9}  {'per task (ms)':>13}  runs (s)")
    for label, seconds in times.items():
        median = statistics.median(seconds)
        runs = " ".join(f"{s:.2f}" for s in seconds)
        print(f"{label:<{width}}  {median:>9.2f}  {median / ns.tasks * 1000:>13.1f}  {runs}")
    print("results equal: yes (every run's results were checked against the squares)")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
