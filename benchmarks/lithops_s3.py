"""lithops' S3 requests per job, counted as ``store_requests.py`` counts crew's: every party.

Run: ``python benchmarks/lithops_s3.py [--workers 4] [--per-worker 8] [--seconds 1]``. Needs
lithops (``.venv/bin/pip install -c constraints.txt lithops``) and moto (the test extras).

lithops runs on its localhost backend with ``workers`` processes and keeps its jobs, results and
statuses in S3: moto's server in a process of its own, which logs every request it serves. After
one warm-up map, ``workers * per_worker`` calls of ``seconds`` each go in one ``map``; wall time,
efficiency (ideal: ``per_worker * seconds``) and requests per job by verb are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sampling import load
from store_requests import per_job, served, sleep_for, store_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--per-worker", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0)
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lithops-bench-") as scratch:
        # lithops keeps its runner, logs and caches under the temporary folder and ~/.lithops:
        # both go in one folder that goes away with the run.
        os.environ.update(TMPDIR=scratch, HOME=scratch)
        tempfile.tempdir = scratch
        run(ns)


def run(ns: argparse.Namespace) -> None:
    import lithops

    print(f"load average at start: {load()} ({os.cpu_count()} cores)")
    with store_url("s3") as (url, _):
        bucket = url.removeprefix("s3://")
        config = {
            "lithops": {"backend": "localhost", "storage": "aws_s3", "log_level": "WARNING", "data_cleaner": False},
            "localhost": {"worker_processes": ns.workers, "runtime": sys.executable},  # this venv
            "aws": {"access_key_id": "testing", "secret_access_key": "testing", "region": "us-east-1"},
            "aws_s3": {"storage_bucket": bucket, "region": "us-east-1"},
        }
        executor = lithops.FunctionExecutor(config=config)
        # Now and then a lithops worker cannot find the function in the module lithops shipped it
        # (AttributeError in its log): get_result would wait for ever, so it gives up after this.
        limit = int(max(120.0, 20 * ns.per_worker * ns.seconds))
        executor.get_result(executor.map(sleep_for, [ns.seconds] * ns.workers), timeout=limit)  # warm
        served(clear=True)
        jobs = ns.workers * ns.per_worker
        start = time.perf_counter()
        results = executor.get_result(executor.map(sleep_for, [ns.seconds] * jobs), timeout=limit)
        wall = time.perf_counter() - start
        counts = served() or {}  # moto's data goes with its process: nothing to clean
    assert len(results) == jobs
    ideal = ns.per_worker * ns.seconds
    print(f"lithops localhost, {ns.workers} workers, {jobs} jobs of {ns.seconds:g} s: {wall:.1f} s / {ideal:.0f} s,"
          f" efficiency {ideal / wall:.2f}, {sum(counts.values()) / jobs:.2f} S3 requests per job from all parties:"
          f" {per_job(counts, jobs)}")  # fmt: skip
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
