"""What durability costs at send: 10,000 sends to a named crew (each job in the store before send
returns) next to an unnamed one, from one thread and from 8, on the local store and moto's S3.

Run: ``python benchmarks/durable_send.py [--stores local,s3] [--jobs 10000] [--threads 1,8]``.

A worker is recruited and launched in the background as the first job asks for it, as in real
use. Sends from several threads share journal writes (group commit), so their cost per job
falls with the number of threads sending; ``with crew.batch():`` makes one write per block.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from store_requests import store_url


def noop(x: int) -> int:
    return x


def send_all(url: str, cls: object, jobs: int, threads: int, named: bool, batch: int = 0) -> tuple[float, int]:
    """Seconds to send ``jobs`` jobs from ``threads`` threads, and the store requests made (S3)."""
    from crew_core import Crew

    location = url if cls is None else f"{url}/{uuid.uuid4().hex[:8]}"
    name = f"bench-{uuid.uuid4().hex[:6]}" if named else None
    with Crew(store=location, worker_classes=["subprocess"], name=name) as crew:
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
        requests = sum(getattr(cls, "requests", {}).values()) if cls is not None else 0
        crew.dismiss()
    return seconds, requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="local,s3")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--threads", default="1,8")
    ns = parser.parse_args()
    os.environ.setdefault("XDG_STATE_HOME", tempfile.mkdtemp(prefix="crew-bench-keys-"))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    print(f"{ns.jobs:,} sends; the named crew has each job in the store before send returns")
    for kind in ns.stores.split(","):
        with store_url(kind) as (url, cls):
            for threads in [int(t) for t in ns.threads.split(",")]:
                plain, _ = send_all(url, cls, ns.jobs, threads, named=False)
                durable, requests = send_all(url, cls, ns.jobs, threads, named=True)
                batched, _ = send_all(url, cls, ns.jobs, threads, named=True, batch=1000)
                writes = f", {requests / ns.jobs:.2f} requests/job" if cls is not None else ""
                print(f"  {kind:5} {threads} thread(s): unnamed {plain:6.2f} s ({plain / ns.jobs * 1e6:5.1f} µs/job)"
                      f"  named {durable:6.2f} s ({durable / ns.jobs * 1e6:7.1f} µs/job{writes})"
                      f"  named, crew.batch() of 1,000: {batched:5.2f} s ({batched / ns.jobs * 1e6:5.1f} µs/job)",
                      flush=True)  # fmt: skip
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
