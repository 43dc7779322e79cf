"""Bytes the controller writes per job when many jobs share one large argument, with and without ``crew.put``.

Run: ``python benchmarks/put_once.py [--megabytes 200] [--jobs 1000] [--workers 2]``. Each job
gets the same ``megabytes`` object and a number; the store counts the bytes the controller puts
into it. With the object passed as is, every task carries a pickled copy; with ``crew.put`` it is
uploaded once (content-addressed) and each worker fetches it once.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from crew_local import LocalStore


class CountingStore(LocalStore):
    """A local store that counts the bytes put through this object (the controller's writes)."""

    written = 0

    def put(self, key: str, data: bytes) -> None:
        type(self).written += len(data)
        super().put(key, data)


def size_of(data: Any, n: int) -> int:
    return len(data) + n * 0


def run(payload: bytes, jobs: int, workers: int, use_put: bool) -> tuple[float, float]:
    from crew_core import Crew

    store = CountingStore()
    try:
        with Crew(store=store, worker_classes=["subprocess"]) as crew:
            crew.recruit(workers=workers)
            crew.launch()
            CountingStore.written = 0
            start = time.perf_counter()
            argument = crew.put(payload) if use_put else payload
            for n in range(jobs):
                crew.send(size_of, args=(argument, n))
            results = list(crew.results())
            elapsed = time.perf_counter() - start
            assert len(results) == jobs and all(r.value == len(payload) for r in results), results[:1]
            return CountingStore.written / jobs, elapsed
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=float, default=200)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plain-jobs", type=int, default=20,
                        help="jobs run without crew.put (each writes a whole copy)")
    ns = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    payload = os.urandom(int(ns.megabytes * 2**20))
    print(f"{ns.jobs} jobs sharing one {ns.megabytes:g} MB argument, {ns.workers} local workers:")  # fmt: skip
    put_bytes, put_time = run(payload, ns.jobs, ns.workers, use_put=True)
    print(f"  with crew.put(): {put_bytes / 2**10:12,.1f} KiB written per job, {put_time:6.1f} s in all")
    if ns.plain_jobs:
        plain_bytes, plain_time = run(payload, ns.plain_jobs, ns.workers, use_put=False)
        per_job = plain_time / ns.plain_jobs
        print(f"  passed as is:    {plain_bytes / 2**10:12,.1f} KiB written per job, {per_job * 1000:6.1f} ms per job"
              f" (measured on {ns.plain_jobs} jobs)")
        print(f"  with crew.put(): {put_time / ns.jobs * 1000:6.1f} ms per job; {plain_bytes / put_bytes:,.0f}x fewer"
              f" bytes, {per_job / (put_time / ns.jobs):.1f}x faster per job")


if __name__ == "__main__":
    main()
