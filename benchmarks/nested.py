"""The main process's cost per job: a nested crew next to a flat crew on the same S3 (moto's server).

Run: ``python benchmarks/nested.py [--jobs 2000] [--inner 16] [--forwarders 2] [--seconds 0.01]
[--repeat 3]``.

Nested: the main process runs a crew on the local store with ``--forwarders`` forwarders (worker
class "nested"), each running an inner crew of ``--inner`` subprocess workers on S3. Flat: one
crew of ``forwarders * inner`` subprocess workers on the same S3. Both run ``--jobs`` jobs that
sleep ``--seconds``, on warm workers; runs alternate, and medians are printed with ratios.

Measured in the main process only: CPU seconds (every thread of it, ``time.process_time``) per
job from the first send to the last result, the wall time of each ``send`` call, and the wall
time of ``receive()`` when a result is ready (``receivable()`` said so). S3 runs in a process of
its own, so its work is not counted for either crew.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def measure(crew: Any, jobs: int, seconds: float) -> dict[str, float]:
    crew.map(nap, [0.0] * 50)  # warm: every worker up, functions cached
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sends = []
    for _ in range(jobs):
        t = time.perf_counter()
        crew.send(nap, (seconds,))
        sends.append(time.perf_counter() - t)
    ready: list[float] = []
    got = 0
    while got < jobs:
        if crew.receivable():
            t = time.perf_counter()
            result = crew.receive(timeout=0)
            ready.append(time.perf_counter() - t)
        else:
            result = crew.receive(timeout=300)
        if result is None:
            raise SystemExit(f"only {got} of {jobs} results came")
        assert result.ok, result.error
        got += 1
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "cpu_ms_per_job": 1000 * cpu / jobs,
        "send_us_p50": 1e6 * statistics.median(sends),
        "receive_ready_us_p50": 1e6 * statistics.median(ready) if ready else float("nan"),
        "receive_ready_us_p99": 1e6 * sorted(ready)[int(0.99 * (len(ready) - 1))] if ready else float("nan"),
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--inner", type=int, default=16, help="inner workers per forwarder")
    parser.add_argument("--forwarders", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=0.01, help="each job's sleep")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import boto3
    from crew_aws.testing import moto_s3

    from crew_core import Crew

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    runs: dict[str, list[dict[str, float]]] = {"flat": [], "nested": []}
    with moto_s3(own_process=True) as endpoint, tempfile.TemporaryDirectory(prefix="crew-nested-") as folder:
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint  # forwarders and workers inherit it
        boto3.client("s3").create_bucket(Bucket="crew-bench")
        total = args.forwarders * args.inner
        for round_ in range(args.repeat):
            for kind in ("flat", "nested") if round_ % 2 == 0 else ("nested", "flat"):
                if kind == "flat":
                    crew = Crew(store=f"s3://crew-bench/flat-{round_}", worker_classes=["subprocess"])
                    crew.recruit(workers=total, worker_class="subprocess")
                else:
                    crew = Crew(store=os.path.join(folder, f"outer-{round_}"), worker_classes=["subprocess"])
                    inner = {"store": f"s3://crew-bench/inner-{round_}",
                             "recruit": [{"workers": args.inner, "worker_class": "subprocess"}]}  # fmt: skip
                    crew.recruit(workers=args.forwarders, worker_class="nested", inner=inner)
                with crew:
                    figures = measure(crew, args.jobs, args.seconds)
                runs[kind].append(figures)
                print(f"round {round_} {kind:6s} " + "  ".join(f"{k}={v:.3g}" for k, v in figures.items()), flush=True)
    print(f"\n{args.jobs} jobs of {args.seconds} s; {args.forwarders} forwarders x {args.inner} inner workers vs"
          f" {args.forwarders * args.inner} flat workers, all on moto's S3; medians of {args.repeat}; load"
          f" {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"{'':24s}{'flat':>12s}{'nested':>12s}{'flat/nested':>14s}")
    for key in runs["flat"][0]:
        flat = statistics.median(run[key] for run in runs["flat"])
        nested = statistics.median(run[key] for run in runs["nested"])
        print(f"{key:24s}{flat:12.3f}{nested:12.3f}{flat / nested:14.2f}x")


if __name__ == "__main__":
    main()
