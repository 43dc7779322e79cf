"""Efficiency, controller requests per job and LIST rates, side by side on the local store, S3 and GCS.

Run: ``python benchmarks/store_requests.py [--stores local,s3,gcs] [--workers 4,24] [--per-worker 8]
[--seconds 1] [--idle-seconds 60]``.

For each store and crew size, warm subprocess workers run ``per_worker`` jobs of ``seconds`` each;
ideal time is ``per_worker * seconds``. The controller's requests are counted in its process; on
S3, moto's server also logs every request it serves, so the "all" column counts every party
(controller and workers, by verb: what S3 would bill), and workers' requests are the rest. S3 is
moto's server in a process of its own, GCS is fake-gcs-server; both need the test extras
(``python3 dev.py test`` installs them). Then one worker idles on S3 and its requests per minute
are counted from moto's log once its polls have backed off.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@contextmanager
def store_url(kind: str) -> Iterator[tuple[str, Any]]:
    """A fresh store location of ``kind`` and its store class (None for the local store)."""
    if kind == "local":
        memory = "/dev/shm" if os.path.isdir("/dev/shm") else None
        with tempfile.TemporaryDirectory(prefix="crew-bench-", dir=memory) as folder:
            yield folder, None
    elif kind == "s3":
        import boto3
        from crew_aws import S3Store
        from crew_aws.testing import moto_s3

        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        with moto_s3(own_process=True) as endpoint:
            os.environ["AWS_ENDPOINT_URL_S3"] = endpoint  # workers inherit it
            boto3.client("s3").create_bucket(Bucket="crew-bench")
            yield "s3://crew-bench", S3Store
            os.environ.pop("AWS_ENDPOINT_URL_S3")
    elif kind == "gcs":
        from crew_gcp import GCSStore
        from crew_gcp.testing import gcs_emulator
        from google.cloud import storage

        with gcs_emulator():
            os.environ["GOOGLE_CLOUD_PROJECT"] = "crew-bench"
            storage.Client(project="crew-bench").create_bucket("crew-bench")
            yield "gs://crew-bench", GCSStore
    else:
        raise SystemExit(f"unknown store {kind!r}: local, s3 or gcs")


def efficiency(url: str, cls: Any, workers: int, per_worker: int, seconds: float) -> dict[str, Any]:
    """Run ``workers * per_worker`` jobs of ``seconds`` on warm workers; time and count them."""
    from crew_core import Crew

    location = url if cls is None else f"{url}/{uuid.uuid4().hex[:8]}"
    with Crew(store=location, worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=workers)
        crew.launch()
        for _ in range(workers):  # warm: every worker has run one job, durations are known
            crew.send(sleep_for, args=(seconds,))
        assert len(list(crew.results(timeout=600))) == workers
        s3 = cls is not None and cls.name == "s3"
        if cls is not None:
            cls.requests.clear()
        if s3:
            served(clear=True)
        start = time.perf_counter()
        for _ in range(workers * per_worker):
            crew.send(sleep_for, args=(seconds,))
        done = list(crew.results(timeout=3600))
        wall = time.perf_counter() - start
        counts = dict(cls.requests) if cls is not None else {}
        everyone = served() if s3 else None
    assert len(done) == workers * per_worker and all(r.ok for r in done)
    return {"wall": wall, "ideal": per_worker * seconds, "jobs": len(done), "counts": counts, "all": everyone}


def served(clear: bool = False) -> dict[str, int] | None:
    """Every party's S3 requests by verb, as moto served them; None where crew-aws's moto does
    not log them (an older tree's, under ``engines.py``)."""
    endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
    try:
        from crew_aws.testing import served_requests
    except ImportError:
        return None

    by_verb: dict[str, int] = {}
    for verb, _ in served_requests(endpoint, clear=clear):
        by_verb[verb] = by_verb.get(verb, 0) + 1
    return by_verb


def everyone_row(run: dict[str, Any]) -> str:
    """All parties' requests per job, and the workers' share (all less the controller's), by verb."""
    everyone, jobs = run["all"], run["jobs"]
    controller = merged(run["counts"])
    workers = {verb: n - controller.get(verb, 0) for verb, n in everyone.items()}
    return (f"{sum(everyone.values()) / jobs:.2f} per job from all parties: {per_job(everyone, jobs)};"
            f" workers {sum(workers.values()) / jobs:.2f}: {per_job(workers, jobs)}")


def idle_worker(url: str, cls: Any, seconds: float) -> tuple[float, dict[str, int]]:
    """Requests per minute of one idle subprocess worker once its polls have backed off, as moto
    served them (all requests less the controller's: the worker is another process)."""
    from crew_core import Crew

    with Crew(store=f"{url}/{uuid.uuid4().hex[:8]}", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1, idle_timeout=None)
        crew.send(sleep_for, args=(0.0,))
        assert [r.ok for r in crew.results(timeout=600)] == [True]
        low, high = cls.poll_interval
        ramp = 0.0
        while low < high:  # the pauses double from the shortest to the longest
            ramp, low = ramp + low, low * 2
        time.sleep(ramp + high)
        cls.requests.clear()
        served(clear=True)
        time.sleep(seconds)
        controller = merged(dict(cls.requests))
        everyone = served()
    assert everyone is not None
    worker = {verb: n - controller.get(verb, 0) for verb, n in everyone.items()}
    return sum(worker.values()) * 60 / seconds, {verb: n for verb, n in worker.items() if n}


def merged(counts: dict[str, int]) -> dict[str, int]:
    """Operation counts by verb."""
    names = {"ListObjectsV2": "LIST", "PutObject": "PUT", "GetObject": "GET", "DeleteObjects": "DELETE",
             "objects.list": "LIST", "objects.insert": "PUT", "objects.get": "GET", "objects.delete": "DELETE",
             "HeadBucket": "HEAD"}  # fmt: skip
    verbs: dict[str, int] = {}
    for op, n in counts.items():
        verbs[names.get(op, op)] = verbs.get(names.get(op, op), 0) + n
    return verbs


def per_job(verbs: dict[str, int], jobs: int) -> str:
    return " ".join(f"{op} {n / jobs:.2f}" for op, n in sorted(verbs.items()) if n)


def short(counts: dict[str, int], jobs: int) -> str:
    return per_job(merged(counts), jobs)


def lists(counts: dict[str, int]) -> int:
    return counts.get("ListObjectsV2", 0) + counts.get("objects.list", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="local,s3,gcs")
    parser.add_argument("--workers", default="4,24")
    parser.add_argument("--per-worker", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per store and size; medians are shown")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="0 skips the idle measurement")
    ns = parser.parse_args()
    sizes = [int(n) for n in ns.workers.split(",")]
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    print(f"jobs of {ns.seconds:g} s, {ns.per_worker} per warm subprocess worker; req/job: the controller's")
    header = f"{'store':6} {'workers':>7} {'wall / ideal':>14} {'efficiency':>10} {'req/job':>8} {'LIST/s':>7}"
    print(f"{header}  requests per job")
    list_rates: dict[str, dict[int, float]] = {}
    for kind in ns.stores.split(","):
        with store_url(kind) as (url, cls):
            for workers in sizes:
                runs = [efficiency(url, cls, workers, ns.per_worker, ns.seconds) for _ in range(ns.repeat)]
                run = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
                wall, jobs, counts = run["wall"], run["jobs"], run["counts"]
                total = sum(counts.values())
                rate = statistics.median(lists(r["counts"]) / r["wall"] for r in runs)
                list_rates.setdefault(kind, {})[workers] = rate
                per_job = f"{total / jobs:8.2f}" if cls else f"{'-':>8}"
                list_rate = f"{rate:7.2f}" if cls else f"{'-':>7}"
                print(f"{kind:6} {workers:7d} {wall:6.1f} s / {run['ideal']:3.0f} s {run['ideal'] / wall:10.2f}"
                      f" {per_job} {list_rate}  {short(counts, jobs) if cls else '(local requests are not counted)'}",
                      flush=True)  # fmt: skip
                if run["all"] is not None:
                    print(f"{'':6} {'':7} {everyone_row(run)}", flush=True)
            if cls is not None and len(sizes) > 1 and list_rates[kind].get(sizes[0]):
                ratio = list_rates[kind][sizes[-1]] / list_rates[kind][sizes[0]]
                print(f"{'':6} LIST rate at {sizes[-1]} workers / at {sizes[0]}: {ratio:.2f}x")
            if kind == "s3" and ns.idle_seconds > 0 and served() is not None:  # counted from moto's log
                per_minute, counts = idle_worker(url, cls, ns.idle_seconds)
                print(f"{kind:6} idle worker: {per_minute:.1f} requests per minute ({counts} in"
                      f" {ns.idle_seconds:.0f} s, polls backed off to {cls.poll_interval[1]:g} s)", flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
