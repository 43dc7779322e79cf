"""``Crew.map`` over 10,000 no-op inputs next to ``ProcessPoolExecutor.map``, interleaved, same run.

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
    runs: dict[str, list[float]] = {"crew.map": [], "PPE.map chunksize=1": [], "PPE.map chunksize=100": []}
    for _ in range(ns.repeat):
        runs["crew.map"].append(crew_map(ns.inputs, ns.workers))
        runs["PPE.map chunksize=1"].append(pool_map(ns.inputs, ns.workers, 1))
        runs["PPE.map chunksize=100"].append(pool_map(ns.inputs, ns.workers, 100))
    medians = {name: statistics.median(times) for name, times in runs.items()}
    print(f"map over {ns.inputs:,} no-op inputs, {ns.workers} workers (median of {ns.repeat} interleaved runs):")
    for name, seconds in medians.items():
        print(f"  {name:24} {seconds:6.2f} s  ({ns.inputs / seconds:8.0f} inputs/s)")
    for name in list(medians)[1:]:
        print(f"  ratio crew.map / {name}: {medians['crew.map'] / medians[name]:.2f}x time")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
