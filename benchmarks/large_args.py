"""Large arguments without ``crew.put``: the controller's peak memory and the wall time of 50 jobs
each given one 100 MB numpy array, on 2 local workers (issue #22: crew's controller peaked at
5.2 GB and took 33 s, ProcessPoolExecutor 0.34 GB and 19 s, loky 0.24 GB and 14 s, dask 8 s).

Run: ``python benchmarks/large_args.py [--size 100] [--jobs 50] [--workers 2] [--repeat 3]
[--engines crew,ppe,loky,dask]``. Every run is a fresh process (``--one ENGINE``), so that its
peak resident memory (``ru_maxrss``, the controller's own) is that run's; next to it, every
party's: the peak of the summed PSS of the controller and every process below it (workers,
schedulers, helpers; sampled every 20 ms) and the CPU all of them spent while the jobs ran. Files
a store keeps in memory (``/dev/shm``) are not counted. The engines take turns, each first in
turn, and the medians and the ratios of crew's to each other's are printed with the load average
around each run. The pool is started and warmed before the clock starts; the
array is made before it too (its size is in the "before" column). loky is the standalone package
if installed, else the copy inside joblib; dask is ``distributed``'s local cluster of processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampling import TreePeakMemory, load, rotated, tree_cpu

ENGINES = ("crew", "ppe", "loky", "dask")
LABELS = {"crew": "crew.send", "ppe": "ProcessPoolExecutor", "loky": "loky", "dask": "dask distributed"}


def total(array: Any) -> float:
    """The job: read every byte of its argument."""
    return float(array.sum())


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Clock:
    """The measured window: wall seconds and the CPU seconds of this process and every process below
    it (read at ``stop``, while the pool's workers are still there to be read)."""

    seconds = cpu_s = 0.0

    def start(self) -> None:
        self._wall, self._cpu = time.perf_counter(), tree_cpu()

    def stop(self) -> None:
        self.seconds, self.cpu_s = time.perf_counter() - self._wall, tree_cpu() - self._cpu


def _crew(array: Any, jobs: int, workers: int, clock: Clock) -> list[float]:
    from crew_core import Crew

    with Crew(store="local", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=workers)
        crew.map(total, [array[:1]] * workers)  # warm: every worker up
        clock.start()
        for _ in range(jobs):
            crew.send(total, (array,))
        values = [result.get() for result in crew.results()]
        clock.stop()
        return values


def _futures(make: Callable[[], Any], array: Any, jobs: int, clock: Clock) -> list[float]:
    pool = make()
    try:
        list(pool.map(total, [array[:1]] * 4))  # warm
        clock.start()
        futures = [pool.submit(total, array) for _ in range(jobs)]
        values = [future.result() for future in futures]
        clock.stop()
        return values
    finally:
        pool.shutdown(wait=True)


def _loky(workers: int) -> Any:
    try:
        from loky import get_reusable_executor
    except ImportError:
        from joblib.externals.loky import get_reusable_executor
    return get_reusable_executor(max_workers=workers)


def _dask(array: Any, jobs: int, workers: int, clock: Clock) -> list[float]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.gather(client.map(total, [array[:1]] * workers, pure=False))  # warm
        clock.start()
        futures = [client.submit(total, array, pure=False) for _ in range(jobs)]
        values: list[float] = client.gather(futures)
        clock.stop()
        return values


def one(engine: str, size_mb: float, jobs: int, workers: int) -> dict[str, float]:
    """One run in this process: seconds, the controller's peak memory before and after, and the peak
    memory and CPU of every process (the controller, its workers, a scheduler...)."""
    import numpy as np

    array = np.ones(int(size_mb * 1_000_000 / 8))
    before = peak_mb()
    clock = Clock()
    with TreePeakMemory() as memory:
        if engine == "crew":
            values = _crew(array, jobs, workers, clock)
        elif engine == "ppe":
            from concurrent.futures import ProcessPoolExecutor

            values = _futures(lambda: ProcessPoolExecutor(workers), array, jobs, clock)
        elif engine == "loky":
            values = _futures(lambda: _loky(workers), array, jobs, clock)
        else:
            values = _dask(array, jobs, workers, clock)
    assert values == [float(array.size)] * jobs, values[:3]
    return {"seconds": clock.seconds, "before_mb": before, "peak_mb": peak_mb(), "all_peak_mb": memory.peak_mb,
            "all_cpu_s": clock.cpu_s}  # fmt: skip


def available(engine: str) -> bool:
    modules = {"loky": "joblib", "dask": "distributed"}.get(engine)
    if modules is None:
        return True
    try:
        __import__(modules)
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=float, default=100.0, help="megabytes of the array each job gets")
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--one", choices=ENGINES, help=argparse.SUPPRESS)  # a single run, in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.size, args.jobs, args.workers)))
        return
    engines = [e for e in args.engines.split(",") if e]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise SystemExit(f"unknown engines {sorted(unknown)}; choose from {', '.join(ENGINES)}")
    skipped = [e for e in engines if not available(e)]
    engines = [e for e in engines if e not in skipped]
    print(f"load average at start: {load()} ({os.cpu_count()} cores)")
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)}")
    runs: dict[str, list[dict[str, float]]] = {engine: [] for engine in engines}
    for round_ in range(args.repeat):
        for engine in rotated(engines, round_):  # interleaved, each first in turn
            before = load()
            command = [sys.executable, __file__, "--one", engine, "--size", str(args.size), "--jobs",
                       str(args.jobs), "--workers", str(args.workers)]  # fmt: skip
            out = subprocess.run(command, capture_output=True, text=True, timeout=1800)
            if out.returncode != 0:
                raise SystemExit(f"{engine} failed:\n{out.stderr}")
            runs[engine].append(json.loads(out.stdout.strip().splitlines()[-1]))
            run = runs[engine][-1]
            print(f"  round {round_ + 1} {engine}: {run['seconds']:.2f} s, controller's peak {run['peak_mb']:.0f} MB,"
                  f" all processes' peak {run['all_peak_mb']:.0f} MB, CPU {run['all_cpu_s']:.2f} s;"
                  f" load {before} -> {load()}")  # fmt: skip
    print(f"{args.jobs} jobs each given a {args.size:g} MB array, {args.workers} workers, medians of {args.repeat}"
          " (peak memory: the controller's resident, and the sum of every process's PSS, workers and"
          " schedulers included; CPU: every process, while the jobs ran):")  # fmt: skip
    medians = {}
    for engine, samples in runs.items():
        seconds, peak, all_peak, cpu = (statistics.median(s[k] for s in samples)
                                        for k in ("seconds", "peak_mb", "all_peak_mb", "all_cpu_s"))  # fmt: skip
        before = statistics.median(s["before_mb"] for s in samples)
        medians[engine] = (seconds, peak, all_peak, cpu)
        print(f"  {LABELS[engine]:20s} {seconds:7.2f} s   peak {peak:7.0f} MB   (before sending {before:5.0f} MB;"
              f" {min(s['seconds'] for s in samples):.2f}-{max(s['seconds'] for s in samples):.2f} s)"
              f"   all processes: peak {all_peak:7.0f} MB, CPU {cpu:6.2f} s")  # fmt: skip
    if "crew" in medians:
        crew = medians["crew"]
        for engine, (seconds, peak, all_peak, cpu) in medians.items():
            if engine != "crew":
                print(f"  ratio crew/{LABELS[engine]}: time {crew[0] / seconds:.2f}, peak memory {crew[1] / peak:.2f},"
                      f" all processes' peak memory {crew[2] / all_peak:.2f}, CPU {crew[3] / cpu:.2f}")  # fmt: skip
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
