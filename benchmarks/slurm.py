"""crew on a real single-node Slurm: cold start to first result, and jobs/s through 2 warm workers.

Run: ``python benchmarks/slurm.py [--jobs 2000]``. Uses the cluster named by ``SLURM_CONF`` if
set, else starts one with ``crew_slurm.testing.SlurmCluster`` (Slurm's daemons must be installed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from contextlib import ExitStack


def noop(x: int) -> int:
    return x


def main() -> None:
    from crew_slurm.testing import SlurmCluster

    from crew_core import Crew

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--cold", type=int, default=3, help="cold starts to time")
    ns = parser.parse_args()
    with ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory())
        if "SLURM_CONF" not in os.environ:
            cluster = stack.enter_context(SlurmCluster(os.path.join(folder, "slurm")))
            os.environ.update(cluster.env)
            subprocess.run(["srun", "true"], check=True)  # the first job after a start waits ~3 s
        store = os.path.join(folder, "store")
        colds = []
        for _ in range(ns.cold):
            with Crew(store=store, worker_classes=["slurm"]) as crew:
                crew.recruit(workers=1, log_dir=os.path.join(folder, "logs"))
                start = time.perf_counter()
                crew.send(noop, args=(1,))
                crew.receive()
                colds.append(time.perf_counter() - start)
        print(
            f"cold crew, send -> first result: median {statistics.median(colds):.2f} s"
            f" (min {min(colds):.2f}, max {max(colds):.2f}, {ns.cold} runs)"
        )
        with Crew(store=store, worker_classes=["slurm"]) as crew:
            crew.recruit(workers=2, log_dir=os.path.join(folder, "logs"))
            crew.launch()
            for i in range(2):
                crew.send(noop, args=(i,))
            list(crew.results())
            start = time.perf_counter()
            for i in range(ns.jobs):
                crew.send(noop, args=(i,))
            done = sum(1 for _ in crew.results())
            elapsed = time.perf_counter() - start
        print(f"2 warm Slurm workers: {done / elapsed:.0f} no-op jobs/s ({done} jobs in {elapsed:.2f} s)")


if __name__ == "__main__":
    main()
