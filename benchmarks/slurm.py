"""crew on a real single-node Slurm: cold start to first result, and jobs/s through 2 warm workers,
next to the same with local subprocess workers (what Slurm adds).

Run: ``python benchmarks/slurm.py [--jobs 2000] [--cold 1] [--repeat 3] [--classes slurm,subprocess]``.
Uses the cluster named by ``SLURM_CONF`` if set, else starts one with
``crew_slurm.testing.SlurmCluster`` (Slurm's daemons must be installed).

Every sample runs in a fresh interpreter with a crew and a store of its own: a *cold* sample times
``--cold`` crews from ``send`` to the first result (a worker launched for the job), a *warm* one
the jobs/s of ``--jobs`` no-op jobs through 2 workers that have run a job. Each round runs every
(worker class, sample) pair once, in an order that rotates from round to round; medians are
printed with their range, the load average around each sample, and Slurm's figures as a multiple
of the subprocess workers'.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampling import fresh_sample, load, median_range, rotated

CLASSES = ("slurm", "subprocess")
KINDS = ("cold", "warm")


def noop(x: int) -> int:
    return x


def cold(worker_class: str, folder: str, starts: int) -> dict[str, float]:
    """Seconds from ``send`` to the first result of ``starts`` fresh crews, each launching its worker."""
    from crew_core import Crew

    seconds = []
    for n in range(starts):
        with Crew(store=os.path.join(folder, f"cold-{n}"), worker_classes=[worker_class]) as crew:
            crew.recruit(workers=1, **_options(worker_class, folder))
            start = time.perf_counter()
            crew.send(noop, args=(1,))
            crew.receive()
            seconds.append(time.perf_counter() - start)
    return {"cold_s": statistics.median(seconds)}


def warm(worker_class: str, folder: str, jobs: int) -> dict[str, float]:
    """No-op jobs per second through 2 workers that have each run a job."""
    from crew_core import Crew

    with Crew(store=os.path.join(folder, "warm"), worker_classes=[worker_class]) as crew:
        crew.recruit(workers=2, **_options(worker_class, folder))
        crew.launch()
        for i in range(2):
            crew.send(noop, args=(i,))
        list(crew.results())
        start = time.perf_counter()
        for i in range(jobs):
            crew.send(noop, args=(i,))
        done = sum(1 for _ in crew.results())
        elapsed = time.perf_counter() - start
    assert done == jobs, f"{done} of {jobs} results"
    return {"jobs_s": done / elapsed}


def _options(worker_class: str, folder: str) -> dict[str, str]:
    return {"log_dir": os.path.join(folder, "logs")} if worker_class == "slurm" else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000, help="no-op jobs of a warm sample")
    parser.add_argument("--cold", type=int, default=1, help="cold starts per cold sample (their median)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved samples of each kind; medians shown")
    parser.add_argument("--classes", default=",".join(CLASSES), help="worker classes, of " + ",".join(CLASSES))
    parser.add_argument("--timeout", type=float, default=600, help="seconds one sample may take")
    parser.add_argument("--sample", help=argparse.SUPPRESS)  # class:kind:folder, in a fresh interpreter
    ns = parser.parse_args()
    if ns.sample:
        worker_class, kind, folder = ns.sample.split(":", 2)
        figures = cold(worker_class, folder, ns.cold) if kind == "cold" else warm(worker_class, folder, ns.jobs)
        print(json.dumps(figures))
        return
    classes = [c.strip() for c in ns.classes.split(",") if c.strip()]
    if not classes or set(classes) - set(CLASSES):
        parser.error(f"--classes: choose from {', '.join(CLASSES)}")
    if ns.repeat < 1 or ns.cold < 1:
        parser.error("--repeat and --cold must be at least 1")

    from crew_slurm.testing import SlurmCluster

    with ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="crew-bench-slurm-"))
        if "slurm" in classes and "SLURM_CONF" not in os.environ:
            cluster = stack.enter_context(SlurmCluster(os.path.join(folder, "slurm")))
            os.environ.update(cluster.env)  # the samples inherit it
            subprocess.run(["srun", "true"], check=True)  # the first job after a start waits ~3 s
        os.environ["XDG_STATE_HOME"] = os.path.join(folder, "state")  # launch secrets: removed with the folder
        print(f"load average at start: {load()} ({os.cpu_count()} cores)")
        print(f"medians of {ns.repeat} interleaved samples, each in a fresh interpreter", flush=True)
        pairs = [f"{c}:{k}" for c in classes for k in KINDS]
        runs: dict[str, list[dict[str, float]]] = {pair: [] for pair in pairs}
        for round_ in range(ns.repeat):
            for pair in rotated(pairs, round_):
                before = load()
                place = os.path.join(folder, f"{pair.replace(':', '-')}-{round_}")
                args = [os.path.abspath(__file__), "--sample", f"{pair}:{place}", "--jobs", str(ns.jobs),
                        "--cold", str(ns.cold)]  # fmt: skip
                result = fresh_sample(args, ns.timeout, f"round {round_ + 1} {pair}")
                if result is not None:
                    runs[pair].append(result)
                figures = ", ".join(f"{k} {v:.3f}" for k, v in (result or {}).items())
                print(f"  round {round_ + 1} {pair:16} {figures:20} load {before} -> {load()}", flush=True)
        table(classes, runs, ns)
    print(f"load average at end: {load()}")


def table(classes: list[str], runs: dict[str, list[dict[str, float]]], ns: argparse.Namespace) -> None:
    rows = (("cold", "cold_s", f"cold crew, send -> first result, s (median of {ns.cold} per sample)", "{:.2f}"),
            ("warm", "jobs_s", f"2 warm workers, {ns.jobs} no-op jobs, jobs/s", "{:.0f}"))  # fmt: skip
    for kind, figure, label, fmt in rows:
        print(label)
        medians = {}
        for worker_class in classes:
            values = [r[figure] for r in runs[f"{worker_class}:{kind}"]]
            if values:
                medians[worker_class] = statistics.median(values)
            print(f"    {worker_class:12} {median_range(values, fmt) if values else '-'}")
        if len(medians) == 2:
            print(f"    slurm / subprocess: {medians['slurm'] / medians['subprocess']:.2f}x")


if __name__ == "__main__":
    main()
