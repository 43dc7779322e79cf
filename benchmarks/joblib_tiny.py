"""joblib's ``Parallel`` over 10,000 tiny calls on the ``"crew"`` backend next to loky, joblib's
default, interleaved in one run (issue #22: 6.5-7.3 s against loky's 0.09-0.15 s before the crew
backend used joblib's automatic batching).

Run: ``python benchmarks/joblib_tiny.py [--calls 10000] [--repeat 5] [--workers 2]``. Both backends
keep their workers warm between ``Parallel`` calls, as joblib users get them; each round times one
call of each after a warm-up call. Medians, their ratio, and the load average are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def tiny(x: int) -> int:
    return x + 1


def timed(backend: str, calls: int, workers: int) -> float:
    from joblib import Parallel, delayed, parallel_config

    with parallel_config(backend=backend, n_jobs=workers):
        Parallel()(delayed(tiny)(i) for i in range(100))  # warm (its workers stay for the next call)
        start = time.perf_counter()
        out = Parallel()(delayed(tiny)(i) for i in range(calls))
        elapsed = time.perf_counter() - start
    assert out == [i + 1 for i in range(calls)]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    import crew_core.api.joblib  # noqa: F401  # registers the "crew" backend

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    times: dict[str, list[float]] = {"crew": [], "loky": []}
    for round_ in range(args.repeat):
        order = ["crew", "loky"] if round_ % 2 == 0 else ["loky", "crew"]  # interleaved, each first in turn
        for backend in order:
            times[backend].append(timed(backend, args.calls, args.workers))
    crew, loky = statistics.median(times["crew"]), statistics.median(times["loky"])
    print(f"{args.calls:,} tiny calls, {args.workers} workers, medians of {args.repeat}:")
    for backend, samples in times.items():
        print(f"  {backend:5s} {statistics.median(samples):7.3f} s   (min {min(samples):.3f}, max {max(samples):.3f})")
    print(f"  crew/loky time ratio: {crew / loky:.2f}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
