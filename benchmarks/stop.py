"""How long ``crew stop`` takes to end a dead controller's workers: found on their backend by the
crew's label (``Worker.find``/``end``) against through the store alone (each worker leaving once it
has not seen its crew's lease renewed for ``lease_timeout``: a lease that is gone counts as one
that stands still, since anyone who can write the store can delete it).

Run: ``python benchmarks/stop.py [--workers 8] [--lease 40] [--repeat 3]``. Local detached
subprocess workers, each busy with a long job when their controller is killed with SIGKILL; the
two ways take turns going first, with the load average around each sample.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

from crew_core.leftovers import stop_crew
from crew_core.plugins import default_plugins
from crew_core.processes import process_alive
from crew_local import LocalStore

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampling import load, rotated

CONTROLLER = """
import os, sys, time
from crew_core import Crew
from crew_core.testing import jobs
store, workers, lease, marks = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
crew = Crew(store=store, worker_classes=["subprocess"], lease_timeout=lease)
handles = crew.recruit(workers=workers, detached=True)
for n in range(workers):
    crew.send(jobs.mark_then_sleep, args=(marks, f"job{n}", 3600))
while len(os.listdir(marks) if os.path.isdir(marks) else []) < workers:
    time.sleep(0.01)
print(crew.id, *[h.backend.pid for h in handles], flush=True)
os.kill(os.getpid(), 9)
"""


def orphans(workers: int, lease: float) -> tuple[str, str, list[int]]:
    """A store with a crew whose controller was SIGKILLed while its workers ran long jobs."""
    folder = tempfile.mkdtemp()
    store, out = os.path.join(folder, "store"), os.path.join(folder, "out")
    with open(out, "w") as handle:  # not a pipe: the detached workers would hold it open
        marks = os.path.join(folder, "marks")
        command = [sys.executable, "-c", textwrap.dedent(CONTROLLER), store, str(workers), str(lease), marks]
        subprocess.run(command, stdout=handle, stdin=subprocess.DEVNULL, check=False)
    with open(out) as handle:
        crew_id, *pids = handle.read().split()
    return store, crew_id, [int(pid) for pid in pids]


def time_stop(workers: int, lease: float, backends: bool) -> float:
    store, crew_id, pids = orphans(workers, lease)
    started = time.perf_counter()
    stop_crew(LocalStore(store), crew_id, worker_class=default_plugins().workers.get if backends else None)
    while any(process_alive(pid) for pid in pids):
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    shutil.rmtree(os.path.dirname(store), ignore_errors=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--lease", type=float, default=40.0, help="the crew's lease_timeout (the store path's wait)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {load()} ({os.cpu_count()} cores)")
    found, store_only = [], []
    for round_ in range(args.repeat):  # interleaved, each way first in turn
        for backends in rotated([True, False], round_):
            before, samples = load(), found if backends else store_only
            samples.append(time_stop(args.workers, args.lease, backends=backends))
            way = "found on their backend" if backends else "through the store alone"
            print(f"  round {round_ + 1} {way}: {samples[-1]:.3f} s  load {before} -> {load()}", flush=True)
    a, b = statistics.median(found), statistics.median(store_only)
    print(f"{args.workers} busy workers of a dead controller, lease_timeout {args.lease:g} s, median of {args.repeat}:")
    print(f"  crew stop, found on their backend: {a:.3f} s  (range {min(found):.3f}-{max(found):.3f})")
    print(f"  through the store alone:           {b:.3f} s  ({b / a:.0f}x longer; range"
          f" {min(store_only):.3f}-{max(store_only):.3f})")  # fmt: skip
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
