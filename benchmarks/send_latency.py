"""How long ``send`` takes, and whether memory stays flat, next to ``ProcessPoolExecutor.submit``.

Run: ``python benchmarks/send_latency.py [--jobs 100000] [--repeat 3]``. Each sample runs in a
fresh interpreter; crew and the pool take turns going first. Prints, for no-op jobs through 2
local workers: the time to send them all, the time until all are back, and the controller's
memory (RSS) before, at its peak and after; the peak of every process's memory together (summed
PSS of the controller and its workers) and the CPU all of them spent; then the latency of single
``send`` calls on a crew whose backend takes 2 s to start a worker (as creating a Cloud Run job
can), where ``send`` must not wait for it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampling import TreePeakMemory, load, rotated, tree_cpu


def noop(x: int) -> int:
    return x


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def crew_sample(jobs: int) -> dict[str, float]:
    from crew_core import Crew

    with Crew(store="local", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=2)
        crew.launch()
        for _ in range(2):
            crew.send(noop, args=(0,))
        list(crew.results())
        before, cpu = rss_mb(), tree_cpu()
        with TreePeakMemory() as memory:
            start = time.perf_counter()
            for i in range(jobs):
                crew.send(noop, args=(i,))
            sent = time.perf_counter() - start
            received = sum(1 for _ in crew.results())
            back = time.perf_counter() - start
        assert received == jobs
        return {"send": sent, "back": back, "before": before, "peak": peak_mb(), "after": rss_mb(),
                "all_peak": memory.peak_mb, "all_cpu": tree_cpu() - cpu}  # fmt: skip


def pool_sample(jobs: int) -> dict[str, float]:
    from concurrent.futures import ProcessPoolExecutor, wait

    with ProcessPoolExecutor(2) as pool:
        wait([pool.submit(noop, 0) for _ in range(4)])
        before, cpu = rss_mb(), tree_cpu()
        with TreePeakMemory() as memory:
            start = time.perf_counter()
            futures = [pool.submit(noop, i) for i in range(jobs)]
            sent = time.perf_counter() - start
            wait(futures)
            back = time.perf_counter() - start
        del futures
        return {"send": sent, "back": back, "before": before, "peak": peak_mb(), "after": rss_mb(),
                "all_peak": memory.peak_mb, "all_cpu": tree_cpu() - cpu}  # fmt: skip


def slow_start_sample(sends: int) -> dict[str, float]:
    """Latency of ``send`` while the backend takes 2 s to start each worker."""
    from crew_core import Crew
    from crew_local import SubprocessWorker

    class SlowStart(SubprocessWorker):
        worker_class = "slow-start"

        def start(self, launch):  # type: ignore[no-untyped-def]
            time.sleep(2.0)  # an API that creates a job and waits for an operation
            super().start(launch)

    times = []
    with Crew(store="local", worker_classes=[SlowStart]) as crew:
        crew.recruit(workers=4)
        for i in range(sends):
            start = time.perf_counter()
            crew.send(noop, args=(i,))
            times.append(time.perf_counter() - start)
        assert sum(1 for _ in crew.results()) == sends
    times.sort()
    return {"p50": times[len(times) // 2], "p99": times[int(len(times) * 0.99)], "max": times[-1]}


SAMPLES = {"crew": crew_sample, "pool": pool_sample, "slow": slow_start_sample}


def sample(name: str, jobs: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--sample", name, "--jobs", str(jobs)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sample", choices=sorted(SAMPLES), help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.sample:
        print(json.dumps(SAMPLES[ns.sample](ns.jobs)))
        return
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    runs: dict[str, list[dict[str, float]]] = {"crew": [], "pool": []}
    for round_ in range(ns.repeat):
        for name in rotated(list(runs), round_):
            before = load()
            runs[name].append(sample(name, ns.jobs))
            print(f"  round {round_ + 1} {name:4} send all {runs[name][-1]['send']:.3f} s, all back"
                  f" {runs[name][-1]['back']:.3f} s  load {before} -> {load()}", flush=True)  # fmt: skip

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[name])

    print(f"{ns.jobs:,} no-op jobs through 2 local workers (medians of {ns.repeat} interleaved fresh processes)")
    for name, label in (("crew", "crew (2 subprocess workers)"), ("pool", "ProcessPoolExecutor(2)")):
        print(f"  {label:28} send all {median(name, 'send'):6.2f} s ({median(name, 'send') / ns.jobs * 1e6:5.1f} µs"
              f" each)   all back {median(name, 'back'):6.2f} s   RSS {median(name, 'before'):.0f} MB before,"
              f" {median(name, 'peak'):.0f} MB peak, {median(name, 'after'):.0f} MB after")  # fmt: skip
    print(f"  all processes (controller and workers): peak PSS {median('crew', 'all_peak'):.0f} MB crew,"
          f" {median('pool', 'all_peak'):.0f} MB pool; CPU {median('crew', 'all_cpu') / ns.jobs * 1e6:.1f} µs/job"
          f" crew, {median('pool', 'all_cpu') / ns.jobs * 1e6:.1f} µs/job pool")  # fmt: skip
    print(f"  ratio crew/pool: send {median('crew', 'send') / median('pool', 'send'):.2f}x,"
          f" all back {median('crew', 'back') / median('pool', 'back'):.2f}x")  # fmt: skip
    slow = sample("slow", 1000)
    print(f"send on a backend that takes 2 s to start a worker (1,000 sends, 4 workers): p50"
          f" {slow['p50'] * 1e6:.1f} µs, p99 {slow['p99'] * 1e6:.1f} µs, max {slow['max'] * 1e3:.2f} ms")  # fmt: skip
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
