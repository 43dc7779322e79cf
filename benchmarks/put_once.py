"""Many jobs sharing one large numpy array: ``crew.put`` next to ray, loky and ProcessPoolExecutor.

Run: ``python benchmarks/put_once.py [--megabytes 100] [--jobs 50] [--workers 2] [--repeat 3]``.
Each job gets the same array and a number and returns one element. Timed, for every party: from
handing the array over to the last result, with warm workers that have imported numpy (their
start is not timed, except where the array can only reach workers as they start: PPE's and
loky's ``initializer``).

- ``crew.put``: the array is put once and each job gets the reference; the store counts the bytes
  that every party (controller and workers) writes and reads, mapped reads included.
- ``crew, passed as is`` (``--plain``): the same number of jobs, each carrying the array.
- ``ray.put``: ``ray.put`` once, each task gets the reference (zero-copy reads from plasma).
- ``loky`` and ``ProcessPoolExecutor``: an executor whose ``initializer`` stores the array in
  each worker (loky spawns and pickles it; PPE forks, so its workers inherit it uncopied).

Peers that are not installed are skipped (``.venv/bin/pip install -c constraints.txt ray loky``:
the versions the figures in docs/benchmarks.md were measured with). Variants are interleaved, ``--repeat`` times; the
medians are printed with ratios to ray's and the load average before each round (this machine
may be shared: read the figures as noisy).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def element(array: Any, n: int) -> float:
    return float(array[n])


def _keep(array: Any) -> None:
    # On a module every worker has: loky pickles these two functions by value, each with globals of its own.
    import sys

    sys.put_once_array = array  # type: ignore[attr-defined]


def _element_of_kept(n: int) -> float:
    import sys

    return float(sys.put_once_array[n])  # type: ignore[attr-defined]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def crew_run(array: Any, jobs: int, workers: int, use_put: bool) -> tuple[float, str]:
    from crew_core import Crew
    from crew_local.counting import CountingStore

    store = CountingStore()
    try:
        with Crew(store=store, worker_classes=["subprocess"]) as crew:
            crew.recruit(workers=workers)
            crew.launch()
            for n in range(workers * 4):  # warm: every worker has started, imported numpy and run a job
                crew.send(element, args=(array[: workers * 4], n))
            list(crew.results())
            store.reset()
            start = time.perf_counter()
            argument = crew.put(array) if use_put else array
            for n in range(jobs):
                crew.send(element, args=(argument, n))
            values = sorted(r.value for r in crew.results())
            elapsed = time.perf_counter() - start
            assert values == sorted(float(array[n]) for n in range(jobs)), values[:3]
            return elapsed, _traffic(store, os.getpid())
    finally:
        store.close()


def _traffic(store: Any, controller: int) -> str:
    """Bytes written and read in the store, by the controller and by the workers."""
    written = read = 0
    worker_read = worker_mapped = 0
    for access in store.accesses():
        if access.op.startswith("put"):
            written += access.size
        elif access.pid == controller:
            read += access.size
        elif access.op == "get_buffer":
            worker_mapped += access.size
        else:
            worker_read += access.size
    mb = 2**20
    return (f"written {written / mb:,.1f} MB; read by the controller {read / mb:,.1f} MB, by workers"
            f" {worker_read / mb:,.1f} MB copied + {worker_mapped / mb:,.1f} MB mapped")  # fmt: skip


def ray_run(array: Any, jobs: int, ray: Any, remote: Any) -> float:
    start = time.perf_counter()
    ref = ray.put(array)
    values = ray.get([remote.remote(ref, n) for n in range(jobs)])
    elapsed = time.perf_counter() - start
    assert values == [float(array[n]) for n in range(jobs)]
    return elapsed


def initializer_run(array: Any, jobs: int, workers: int, make: Callable[..., Any]) -> float:
    start = time.perf_counter()
    executor = make(workers, _keep, (array,))
    try:
        values = list(executor.map(_element_of_kept, range(jobs)))
    finally:
        executor.shutdown(wait=True)
    elapsed = time.perf_counter() - start
    assert values == [float(array[n]) for n in range(jobs)]
    return elapsed


def ppe_fork(workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> Any:
    context = multiprocessing.get_context("fork")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=initializer, initargs=initargs)


def loky_executor(workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> Any:
    from loky import ProcessPoolExecutor as LokyExecutor

    return LokyExecutor(workers, initializer=initializer, initargs=initargs)


def add_peers(ns: argparse.Namespace, array: Any, variants: dict[str, Callable[[], float]]) -> Any:
    """Add the peers that are installed to ``variants``; ray's module if it was started."""
    try:
        import ray
    except ImportError:
        print("  ray: not installed, skipped")
        ray = None
    if ray is not None:
        ray.init(num_cpus=ns.workers, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(element)
        warm = array[: ns.workers * 4]
        ray.get([remote.remote(warm, n) for n in range(len(warm))])  # every worker started, numpy imported
        variants["ray.put"] = lambda: ray_run(array, ns.jobs, ray, remote)
    try:
        import loky  # noqa: F401
    except ImportError:
        print("  loky: not installed, skipped")
    else:
        variants["loky (initializer)"] = lambda: initializer_run(array, ns.jobs, ns.workers, loky_executor)
    variants["ProcessPoolExecutor (initializer, fork)"] = lambda: initializer_run(array, ns.jobs, ns.workers, ppe_fork)
    return ray


def peers_row(peer: str, megabytes: float = 100, jobs: int = 50, workers: int = 2) -> float | None:
    """One sample of ``peer`` (peers.py's names: crew, pool, loky, ray) for peers.py's shared-object
    row, in seconds; None for a peer not installed or not measured here (dask)."""
    import numpy

    array = numpy.random.default_rng(0).random(int(megabytes * 2**20) // 8)
    if peer == "crew":
        return crew_run(array, jobs, workers, use_put=True)[0]
    if peer == "pool":
        return initializer_run(array, jobs, workers, ppe_fork)
    try:
        if peer == "loky":
            return initializer_run(array, jobs, workers, loky_executor)
        if peer == "ray":
            import ray

            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            try:
                remote = ray.remote(element)
                ray.get([remote.remote(array[: workers * 4], n) for n in range(workers * 4)])  # warm
                return ray_run(array, jobs, ray, remote)
            finally:
                ray.shutdown()
    except ImportError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=float, default=100)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--plain", action="store_true", help="also run crew with the array passed to every job")
    parser.add_argument("--no-peers", action="store_true", help="crew only")
    ns = parser.parse_args()
    import numpy

    array = numpy.random.default_rng(0).random(int(ns.megabytes * 2**20) // 8)
    print(f"load average at start: {load()} ({os.cpu_count()} cores)")
    print(f"{ns.jobs} jobs sharing one {array.nbytes / 2**20:g} MB float64 array, {ns.workers} workers each,"
          f" medians of {ns.repeat} interleaved rounds")  # fmt: skip

    variants: dict[str, Callable[[], float]] = {}
    traffic: dict[str, str] = {}

    def crew_variant(label: str, use_put: bool) -> Callable[[], float]:
        def run() -> float:
            elapsed, traffic[label] = crew_run(array, ns.jobs, ns.workers, use_put)
            return elapsed

        return run

    variants["crew.put"] = crew_variant("crew.put", True)
    if ns.plain:
        variants["crew, passed as is"] = crew_variant("crew, passed as is", False)
    ray: Any = None
    try:
        if not ns.no_peers:
            ray = add_peers(ns, array, variants)
        times: dict[str, list[float]] = {label: [] for label in variants}
        for round_ in range(ns.repeat):
            print(f"  round {round_ + 1}: load {load()}")
            for label, run in variants.items():
                times[label].append(run())
    finally:
        if ray is not None:
            ray.shutdown()
    medians = {label: statistics.median(samples) for label, samples in times.items()}
    width = max(len(label) for label in medians)
    for label, median in medians.items():
        samples = ", ".join(f"{s:.3f}" for s in times[label])
        ratio = f"  {median / medians['ray.put']:5.2f}x ray" if "ray.put" in medians else ""
        print(f"  {label:<{width}} {median:7.3f} s{ratio}   ({samples})")
        if label in traffic:
            print(f"  {'':<{width}}   store, all parties: {traffic[label]}")
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
