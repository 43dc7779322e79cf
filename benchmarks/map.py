"""``Crew.map`` and ``CrewExecutor.map`` over 10,000 no-op inputs next to ``ProcessPoolExecutor.map``,
interleaved, same run; and one ``submit(...).result()`` round trip on each executor.

Run: ``python benchmarks/map.py [--inputs 10000] [--repeat 3] [--workers 2]``. Each run starts a
fresh pool or crew with warm workers; each round runs every variant once, in an order that rotates
from round to round, with the load average around it; the medians are shown with their range.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampling import load, rotated


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
    print(f"load average at start: {load()} ({os.cpu_count()} cores)")
    from crew_core import CrewExecutor

    n, w = ns.inputs, ns.workers
    maps: dict[str, Callable[[], float]] = {
        "crew.map": lambda: crew_map(n, w),
        "CrewExecutor.map chunksize=1": lambda: executor_map(n, w, 1),
        "CrewExecutor.map chunksize=100": lambda: executor_map(n, w, 100),
        "PPE.map chunksize=1": lambda: pool_map(n, w, 1),
        "PPE.map chunksize=100": lambda: pool_map(n, w, 100),
    }
    trip_kinds: dict[str, Callable[[], float]] = {
        "CrewExecutor": lambda: round_trip(lambda k: CrewExecutor(k, worker_class="subprocess")),
        "ProcessPoolExecutor": lambda: round_trip(ProcessPoolExecutor),
    }
    variants = {**maps, **trip_kinds}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(ns.repeat):
        for name in rotated(list(variants), round_):
            before = load()
            samples[name].append(variants[name]())
            print(f"  round {round_ + 1} {name:32} {samples[name][-1]:8.4f} s  load {before} -> {load()}", flush=True)
    runs = {name: samples[name] for name in maps}
    trips = {name: samples[name] for name in trip_kinds}
    medians = {name: statistics.median(times) for name, times in runs.items()}
    print(f"map over {ns.inputs:,} no-op inputs, {ns.workers} workers (median of {ns.repeat} interleaved runs):")
    for name, seconds in medians.items():
        print(f"  {name:32} {seconds:6.2f} s  ({ns.inputs / seconds:8.0f} inputs/s; range"
              f" {min(runs[name]):.2f}-{max(runs[name]):.2f} s)")  # fmt: skip
    for chunksize in (1, 100):
        ratio = medians[f"CrewExecutor.map chunksize={chunksize}"] / medians[f"PPE.map chunksize={chunksize}"]
        print(f"  ratio CrewExecutor.map / PPE.map, chunksize={chunksize}: {ratio:.2f}x time")
    print(f"  ratio crew.map / PPE.map chunksize=1: {medians['crew.map'] / medians['PPE.map chunksize=1']:.2f}x time")
    crew_trip, pool_trip = (statistics.median(trips[name]) for name in ("CrewExecutor", "ProcessPoolExecutor"))
    print(f"submit().result() round trip, 1 warm worker, p50: CrewExecutor {crew_trip * 1e3:.3f} ms,"
          f" ProcessPoolExecutor {pool_trip * 1e3:.3f} ms, ratio {crew_trip / pool_trip:.2f}x")  # fmt: skip
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
