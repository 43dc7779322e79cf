"""The main process's cost per job: a nested crew next to a flat crew on the same S3 (moto's server).

Run: ``python benchmarks/nested.py [--jobs 2000] [--inner 16] [--forwarders 2] [--seconds 0.01]
[--repeat 3]``.

Nested: the main process runs a crew on the local store with ``--forwarders`` forwarders (worker
class "nested"), each running an inner crew of ``--inner`` subprocess workers on S3. Flat: one
crew of ``forwarders * inner`` subprocess workers on the same S3. Both run ``--jobs`` jobs that
sleep ``--seconds``, on warm workers; runs alternate, and medians are printed with ratios.

CPU per job, from the first send to the last result, of every process of each setup (every
thread of each, from ``/proc/*/task/*/schedstat``): the main process (``cpu_ms_per_job``, the
controller), the forwarders (nested only), the workers (the inner workers when nested), and all of
them together (``cpu_ms_per_job_all``). Also the main process's wall time of each ``send`` call
and of ``receive()`` when a result is ready (``receivable()`` said so). S3 (moto's server) is
shared by both setups and runs in a process of its own, left out of both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampling import load, process_cpu, rotated, tree

#: Who a process below the main one is, by its depth: the main process's children are the flat
#: crew's workers or the nested crew's forwarders, whose children are the inner workers.
PARTIES = {"flat": ("controller", "workers", "workers"), "nested": ("controller", "forwarders", "workers")}


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def cpu_by_party(kind: str, left_out: set[int]) -> dict[int, tuple[str, float]]:
    """Each live process of the setup (every one below this process but ``left_out``): its party and CPU seconds."""
    parties = PARTIES[kind]
    cpu = {}
    for pid, depth in tree().items():
        if pid in left_out:
            continue
        try:
            cpu[pid] = (parties[min(depth, 2)], process_cpu(pid))
        except OSError:  # ended meanwhile
            pass
    return cpu


def measure(crew: Any, kind: str, jobs: int, seconds: float, left_out: set[int]) -> dict[str, float]:
    crew.map(nap, [0.0] * 50)  # warm: every worker up, functions cached
    cpu0 = cpu_by_party(kind, left_out)
    wall0 = time.perf_counter()
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
    wall = time.perf_counter() - wall0
    spent = {"controller": 0.0, "forwarders": 0.0, "workers": 0.0}
    for pid, (party, cpu) in cpu_by_party(kind, left_out).items():
        spent[party] += cpu - cpu0.get(pid, (party, 0.0))[1]  # a process started meanwhile counts from 0
    return {
        "cpu_ms_per_job": 1000 * spent["controller"] / jobs,
        "cpu_ms_per_job_forwarders": 1000 * spent["forwarders"] / jobs,
        "cpu_ms_per_job_workers": 1000 * spent["workers"] / jobs,
        "cpu_ms_per_job_all": 1000 * sum(spent.values()) / jobs,
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
        left_out = set(tree())  # this process's own children so far: moto's server
        left_out.discard(os.getpid())
        print(f"load average at start: {load()} ({os.cpu_count()} cores)", flush=True)
        for round_ in range(args.repeat):
            for kind in rotated(["flat", "nested"], round_):
                before = load()
                if kind == "flat":
                    crew = Crew(store=f"s3://crew-bench/flat-{round_}", worker_classes=["subprocess"])
                    crew.recruit(workers=total, worker_class="subprocess")
                else:
                    crew = Crew(store=os.path.join(folder, f"outer-{round_}"), worker_classes=["subprocess"])
                    inner = {"store": f"s3://crew-bench/inner-{round_}",
                             "recruit": [{"workers": args.inner, "worker_class": "subprocess"}]}  # fmt: skip
                    crew.recruit(workers=args.forwarders, worker_class="nested", inner=inner)
                with crew:
                    figures = measure(crew, kind, args.jobs, args.seconds, left_out)
                runs[kind].append(figures)
                print(f"round {round_} {kind:6s} " + "  ".join(f"{k}={v:.3g}" for k, v in figures.items())
                      + f"  load {before} -> {load()}", flush=True)  # fmt: skip
    print(f"\n{args.jobs} jobs of {args.seconds} s; {args.forwarders} forwarders x {args.inner} inner workers vs"
          f" {args.forwarders * args.inner} flat workers, all on moto's S3; medians of {args.repeat} (range"
          f" below); load average at end: {load()}")  # fmt: skip
    print(f"{'':28s}{'flat':>12s}{'nested':>12s}{'flat/nested':>14s}")
    for key in runs["flat"][0]:
        flat = [run[key] for run in runs["flat"]]
        nested = [run[key] for run in runs["nested"]]
        a, b = statistics.median(flat), statistics.median(nested)
        ratio = f"{a / b:14.2f}x" if b > 0 else f"{'-':>14s}"  # a party the setup does not have
        print(f"{key:28s}{a:12.3f}{b:12.3f}{ratio}")
        if args.repeat > 1:
            spread = [f"{min(v):.3f}-{max(v):.3f}" for v in (flat, nested)]
            print(f"{'  range':28s}{spread[0]:>12s} {spread[1]:>12s}")


if __name__ == "__main__":
    main()
