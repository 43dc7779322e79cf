"""``Crew.map`` and ``CrewExecutor.map`` over 10,000 no-op inputs next to ``ProcessPoolExecutor.map``,
interleaved, same run; and one ``submit(...).result()`` round trip on each executor.

Run: ``python benchmarks/map.py [--inputs 10000] [--repeat 3] [--workers 2]``. Each run starts a
fresh pool or crew with warm workers; the medians are shown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor


def noop(x: int) -> int:
    return x


def crew_map(inputs: int, workers: int) -> float:
    from crew_core import Crew

    with Crew(store="local", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=workers)
        crew.map(noop, range(workers))  # warm
        start = time.perf_counter()
        assert crew.map(noop, range(inputs), progress=False).values() == list(range(inputs))
        return time.perf_counter() - start


def executor_map(inputs: int, workers: int, chunksize: int) -> float:
    from crew_core import CrewExecutor

    with CrewExecutor(workers, worker_class="subprocess") as executor:
        list(executor.map(noop, range(workers)))  # warm
        start = time.perf_counter()
        assert list(executor.map(noop, range(inputs), chunksize=chunksize)) == list(range(inputs))
        return time.perf_counter() - start


def round_trip(executor_type: type, trips: int = 200) -> float:
    """Median seconds of ``submit(noop, 1).result()`` on one warm worker."""
    times = []
    with executor_type(1) as executor:
        executor.submit(noop, 0).result()
        for _ in range(trips):
            start = time.perf_counter()
            executor.submit(noop, 1).result()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def pool_map(inputs: int, workers: int, chunksize: int) -> float:
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(noop, range(workers)))  # warm
        start = time.perf_counter()
        assert list(pool.map(noop, range(inputs), chunksize=chunksize)) == list(range(inputs))
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    ns = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    runs: dict[str, list[float]] = {
        "crew.map": [], "CrewExecutor.map chunksize=1": [], "CrewExecutor.map chunksize=100": [],
        "PPE.map chunksize=1": [], "PPE.map chunksize=100": [],
    }  # fmt: skip
    trips: dict[str, list[float]] = {"CrewExecutor": [], "ProcessPoolExecutor": []}
    from crew_core import CrewExecutor

    for _ in range(ns.repeat):
        runs["crew.map"].append(crew_map(ns.inputs, ns.workers))
        runs["PPE.map chunksize=1"].append(pool_map(ns.inputs, ns.workers, 1))
        runs["CrewExecutor.map chunksize=1"].append(executor_map(ns.inputs, ns.workers, 1))
        runs["PPE.map chunksize=100"].append(pool_map(ns.inputs, ns.workers, 100))
        runs["CrewExecutor.map chunksize=100"].append(executor_map(ns.inputs, ns.workers, 100))
        trips["CrewExecutor"].append(round_trip(lambda n: CrewExecutor(n, worker_class="subprocess")))
        trips["ProcessPoolExecutor"].append(round_trip(ProcessPoolExecutor))
    medians = {name: statistics.median(times) for name, times in runs.items()}
    print(f"map over {ns.inputs:,} no-op inputs, {ns.workers} workers (median of {ns.repeat} interleaved runs):")
    for name, seconds in medians.items():
        print(f"  {name:32} {seconds:6.2f} s  ({ns.inputs / seconds:8.0f} inputs/s)")
    for chunksize in (1, 100):
        ratio = medians[f"CrewExecutor.map chunksize={chunksize}"] / medians[f"PPE.map chunksize={chunksize}"]
        print(f"  ratio CrewExecutor.map / PPE.map, chunksize={chunksize}: {ratio:.2f}x time")
    print(f"  ratio crew.map / PPE.map chunksize=1: {medians['crew.map'] / medians['PPE.map chunksize=1']:.2f}x time")
    crew_trip, pool_trip = (statistics.median(trips[name]) for name in ("CrewExecutor", "ProcessPoolExecutor"))
    print(f"submit().result() round trip, 1 warm worker, p50: CrewExecutor {crew_trip * 1e3:.3f} ms,"
          f" ProcessPoolExecutor {pool_trip * 1e3:.3f} ms, ratio {crew_trip / pool_trip:.2f}x")  # fmt: skip
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
