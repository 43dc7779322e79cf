"""What durability costs at send: 10,000 sends to a named crew (each job in the store before send
returns) next to an unnamed one, from one thread and from 8, on the local store and moto's S3.

Run: ``python benchmarks/durable_send.py [--stores local,s3] [--jobs 10000] [--threads 1,8]
[--repeat 3]``.

Three variants: an unnamed crew, a named one, and a named one sending in ``with crew.batch():``
blocks of 1,000 (one journal write per block). Every sample runs in a fresh interpreter with a
crew of its own; each round runs every variant once, in an order that rotates from round to
round, and the medians are printed with their range, the load average around each sample, and
each variant's time as a multiple of the unnamed crew's. On S3 the store requests the sending
process makes while the sends run are counted: what a durable send waits for. An unnamed crew
writes its jobs after ``send`` returns, and the worker's requests are not counted (it runs the
jobs, not the sends); ``benchmarks/store_requests.py`` counts a whole run's requests.

A worker is recruited and launched in the background as the first job asks for it, as in real
use. Sends from several threads share journal writes (group commit), so their cost per job
falls with the number of threads sending.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampling import fresh_sample, load, median_range, rotated
from store_requests import store_url

#: The variants, by the name a sample is asked for: (label, named, journal writes per block).
VARIANTS = {"unnamed": ("unnamed", False, 0), "named": ("named", True, 0),
            "batched": ("named, crew.batch() of 1,000", True, 1000)}  # fmt: skip


def noop(x: int) -> int:
    return x


def send_all(url: str, jobs: int, threads: int, named: bool, batch: int = 0) -> dict[str, float]:
    """Seconds to send ``jobs`` jobs from ``threads`` threads, and the store requests made per job (S3)."""
    from crew_core import Crew

    cls = None
    if url.startswith("s3://"):
        from crew_aws import S3Store

        cls = S3Store
    name = f"bench-{uuid.uuid4().hex[:6]}" if named else None
    with Crew(store=f"{url}/{uuid.uuid4().hex[:8]}", worker_classes=["subprocess"], name=name) as crew:
        crew.recruit(workers=1)
        per_thread = jobs // threads
        if cls is not None:
            cls.requests.clear()
        start = time.perf_counter()

        def sender() -> None:
            if not batch:
                for n in range(per_thread):
                    crew.send(noop, args=(n,))
                return
            for first in range(0, per_thread, batch):
                with crew.batch():  # one journal write per block
                    for n in range(first, min(first + batch, per_thread)):
                        crew.send(noop, args=(n,))

        pool = [threading.Thread(target=sender) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        seconds = time.perf_counter() - start
        requests = sum(cls.requests.values()) if cls is not None else 0
        crew.dismiss()
    return {"seconds": seconds, "requests_per_job": requests / (per_thread * threads)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="local,s3")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--threads", default="1,8")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved samples per variant; medians shown")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one sample may take")
    parser.add_argument("--sample", help=argparse.SUPPRESS)  # variant:threads:url, in a fresh interpreter
    ns = parser.parse_args()
    if ns.sample:
        variant, threads, url = ns.sample.split(":", 2)
        _, named, batch = VARIANTS[variant]
        print(json.dumps(send_all(url, ns.jobs, int(threads), named, batch)))
        return
    if ns.repeat < 1:
        parser.error("--repeat must be at least 1")
    thread_counts = [int(t) for t in ns.threads.split(",")]
    if any(t < 1 or ns.jobs % t for t in thread_counts):
        parser.error(f"--threads must be positive and divide --jobs {ns.jobs}: {ns.threads}")

    print(f"load average at start: {load()} ({os.cpu_count()} cores)")
    print(f"{ns.jobs:,} sends; the named crew has each job in the store before send returns; medians of"
          f" {ns.repeat} interleaved samples, each in a fresh interpreter", flush=True)  # fmt: skip
    # A named crew keeps its key under XDG_STATE_HOME: a folder of the run's own, removed after it.
    with tempfile.TemporaryDirectory(prefix="crew-bench-keys-") as keys:
        os.environ["XDG_STATE_HOME"] = keys  # the samples inherit it
        for kind in ns.stores.split(","):
            with store_url(kind) as (url, _):
                for threads in thread_counts:
                    runs = sample_rounds(kind, url, threads, ns)
                    summary(kind, threads, runs, ns)
    print(f"load average at end: {load()}")


def sample_rounds(kind: str, url: str, threads: int, ns: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """``--repeat`` rounds of every variant, each round in a rotated order."""
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for round_ in range(ns.repeat):
        for variant in rotated(list(VARIANTS), round_):
            before = load()
            args = [os.path.abspath(__file__), "--sample", f"{variant}:{threads}:{url}", "--jobs", str(ns.jobs)]
            result = fresh_sample(args, ns.timeout, f"{kind} {threads} thread(s) {variant}")
            if result is None:
                continue
            runs[variant].append(result)
            seconds = result["seconds"]
            print(f"  round {round_ + 1} {kind:5} {threads} thread(s) {variant:8} {seconds:7.3f} s"
                  f" ({seconds / ns.jobs * 1e6:7.1f} µs/job)  load {before} -> {load()}", flush=True)  # fmt: skip
    return runs


def summary(kind: str, threads: int, runs: dict[str, list[dict[str, float]]], ns: argparse.Namespace) -> None:
    """Each variant's median (range) in µs per job, requests per job on S3, and its ratio to the unnamed crew."""
    print(f"{kind} store, {threads} sending thread(s), µs/job, median (range) of {ns.repeat}:")
    plain = [r["seconds"] for r in runs["unnamed"]]
    for variant, (label, _, _) in VARIANTS.items():
        samples = [r["seconds"] / ns.jobs * 1e6 for r in runs[variant]]
        if not samples:
            print(f"    {label:30} -")
            continue
        requests = [r["requests_per_job"] for r in runs[variant]]
        line = f"    {label:30} {median_range(samples, '{:.1f}'):28}"
        if kind != "local":
            line += f" {statistics.median(requests):5.2f} store requests/job while sending"
        if plain:
            ratio = statistics.median(r["seconds"] for r in runs[variant]) / statistics.median(plain)
            line += f"  {ratio:6.2f}x unnamed"
        print(line, flush=True)


if __name__ == "__main__":
    main()
