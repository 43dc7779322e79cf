"""A poll's cost on a store that cannot list after a key, against the crew's history.

Run: ``python benchmarks/client_filtered.py [--stores local,s3] [--jobs 500,5500] [--workers 2]
[--repeat 3]``.

Such a backend (Azure Blob continues a listing only from an opaque marker) fetches every key under
the inbox at every poll and drops the old ones on the client. The store classes here do exactly
that (``crew_core.testing.ClientFilteredListing``): ``local`` deletes in batches of 100 and has no
doorbells, like a remote store; ``s3`` is moto's server with ``StartAfter`` ignored.

Each run sends ``jobs`` one-job tasks in waves of one per worker, then reports the controller's
last inbox listings: keys fetched and seconds each (medians of the last 20). Two policies, run
interleaved: ``kept``, what the core did before ``Store.lists_from_key`` (results below the
watermark stay until the crew closes, which costs nothing where listings start after a key), and
``prompt``, now (every key read goes within ``delete_batch`` keys or two seconds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampling import load, rotated

LAST = 20  # listings at the end of a run whose size and time are reported


def double(x: int) -> int:
    return 2 * x


@contextmanager
def store_class(kind: str) -> Iterator[tuple[Any, Any]]:
    """The store class of ``kind`` and a function that makes a fresh, empty store of it."""
    if kind == "local":
        from crew_local.client_filtered import ClientFilteredLocalStore

        memory = "/dev/shm" if os.path.isdir("/dev/shm") else None
        with tempfile.TemporaryDirectory(prefix="crew-bench-", dir=memory) as folder:
            yield ClientFilteredLocalStore, lambda: ClientFilteredLocalStore(os.path.join(folder, uuid.uuid4().hex[:8]))
    elif kind == "s3":
        import boto3
        from crew_aws.testing import moto_s3
        from crew_aws.testing.client_filtered import ClientFilteredS3Store

        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        with moto_s3(own_process=True) as endpoint:
            os.environ["AWS_ENDPOINT_URL_S3"] = endpoint  # workers inherit it
            boto3.client("s3").create_bucket(Bucket="crew-bench")
            yield ClientFilteredS3Store, lambda: ClientFilteredS3Store.from_url(f"s3://crew-bench/{uuid.uuid4().hex[:8]}")
    else:
        raise SystemExit(f"unknown store {kind!r}: local or s3")


def run(cls: Any, make: Any, policy: str, jobs: int, workers: int) -> dict[str, float]:
    """``jobs`` one-job tasks under ``policy``; the last inbox listings' size and time."""
    from crew_core import Crew
    from crew_core.wire import protocol

    cls.lists_from_key = policy == "kept"  # the controller's view only: workers list as before
    cls.listings.clear()
    store = make()
    start = time.perf_counter()
    try:
        with Crew(store=store, worker_classes=["subprocess"]) as crew:
            crew.recruit(workers=workers)
            for first in range(0, jobs, workers):
                ids = [crew.send(double, args=(n,)) for n in range(first, min(first + workers, jobs))]
                for job_id in ids:
                    assert crew.result(job_id, timeout=600).ok
            wall = time.perf_counter() - start
            last = cls.listings_under(protocol.inbox_prefix(crew.id))[-LAST:]
    finally:
        store.close()
        del cls.lists_from_key  # back to the class's own declaration
    return {
        "fetched": statistics.median(listing.fetched for listing in last),
        "ms": 1000 * statistics.median(listing.seconds for listing in last),
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="local,s3")
    parser.add_argument("--jobs", default="500,5500", help="history sizes, comma-separated")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per cell; medians are shown")
    ns = parser.parse_args()
    sizes = [int(n) for n in ns.jobs.split(",")]
    print(f"load average at start: {load()} ({os.cpu_count()} cores)")
    print(f"{'store':6} {'jobs':>6} {'policy':7} {'keys fetched':>12} {'ms/listing':>10} {'wall s':>8}   runs")
    for kind in ns.stores.split(","):
        with store_class(kind) as (cls, make):
            for jobs in sizes:
                samples: dict[str, list[dict[str, float]]] = {"kept": [], "prompt": []}
                for round_ in range(ns.repeat):
                    for policy in rotated(["kept", "prompt"], round_):
                        samples[policy].append(run(cls, make, policy, jobs, ns.workers))
                cells = {}
                for policy, runs in samples.items():
                    cell = {k: statistics.median(r[k] for r in runs) for k in ("fetched", "ms", "wall")}
                    cells[policy] = cell
                    spread = " ".join(f"{r['ms']:.2f}" for r in runs)
                    print(f"{kind:6} {jobs:>6} {policy:7} {cell['fetched']:>12.0f} {cell['ms']:>10.2f}"
                          f" {cell['wall']:>8.1f}   ms: {spread}")  # fmt: skip
                ratio = cells["kept"]["ms"] / cells["prompt"]["ms"] if cells["prompt"]["ms"] else float("inf")
                print(f"{'':6} {'':>6} a listing costs {ratio:.1f}x less with prompt deletes")
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
