"""Throughput and round trip of a local crew next to ``ProcessPoolExecutor`` (and dask, if present).

Run: ``python benchmarks/throughput.py [--jobs 10000] [--round-trips 2000]``. Prints jobs/s of
each peer on the same machine in the same run, their ratio, and single-job round-trip times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any


def noop(x: int) -> int:
    return x


def crew_throughput(jobs: int, worker_class: str) -> float:
    from crew_core import Crew

    with Crew(store="local", worker_classes=[worker_class]) as crew:
        crew.recruit(workers=2)
        crew.launch()
        crew.send(noop, args=(0,))  # warm the workers up, as the pool below is warmed up
        crew.send(noop, args=(0,))
        crew.receive(), crew.receive()
        start = time.perf_counter()
        for i in range(jobs):
            crew.send(noop, args=(i,))
        received = sum(1 for _ in crew.results())
        elapsed = time.perf_counter() - start
    assert received == jobs, received
    return jobs / elapsed


def pool_throughput(jobs: int) -> float:
    with ProcessPoolExecutor(2) as pool:
        wait([pool.submit(noop, 0) for _ in range(4)])
        start = time.perf_counter()
        futures = [pool.submit(noop, i) for i in range(jobs)]
        wait(futures)
        elapsed = time.perf_counter() - start
    return jobs / elapsed


def dask_throughput(jobs: int) -> float | None:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        return None
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client:
        client.gather(client.map(noop, range(4), pure=False))
        start = time.perf_counter()
        client.gather(client.map(noop, range(jobs), pure=False))
        elapsed = time.perf_counter() - start
    return jobs / elapsed


@contextmanager
def warm_round_trips(fn: Callable[[int], Any]) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """One round trip of ``fn(i)`` through a 1-worker crew, and one through ``ProcessPoolExecutor(1)``:
    both launched and warmed up by 50 trips each. ``fn`` comes from the running script, which
    workers (started in another folder) cannot import: it travels pickled by value."""
    from crew_core import Crew

    with Crew(store="local", worker_classes=["subprocess"]) as crew, ProcessPoolExecutor(1) as pool:
        crew.recruit(workers=1)

        def crew_trip(i: int) -> None:
            crew.send(fn, args=(i,))
            crew.receive()

        def pool_trip(i: int) -> None:
            pool.submit(fn, i).result()

        for _ in range(50):
            crew_trip(0), pool_trip(0)
        yield crew_trip, pool_trip


def round_trips(count: int, rounds: int = 10) -> tuple[list[float], list[float]]:
    """Single-job round trips of a 1-worker crew and of ``ProcessPoolExecutor(1)``, interleaved."""

    def trips(call: object, n: int) -> list[float]:
        times = []
        for i in range(n):
            start = time.perf_counter()
            call(i)  # type: ignore[operator]
            times.append(time.perf_counter() - start)
        return times

    with warm_round_trips(noop) as (crew_trip, pool_trip):
        crew_times: list[float] = []
        pool_times: list[float] = []
        for _ in range(rounds):  # interleaved, so a noisy moment hurts both alike
            crew_times += trips(crew_trip, count // rounds)
            pool_times += trips(pool_trip, count // rounds)
    return crew_times, pool_times


def signing_cost(count: int = 20000, beside: bool = False) -> float:
    """Seconds per job to sign and check a one-job task and its answer (a job's whole signing cost):
    with the crew's Ed25519 key for tasks (a remote worker), or ``beside``: a local worker's MAC."""
    try:
        from crew_core.wire import protocol
        from crew_core.wire.serialize import FunctionCache, dump_args
        from crew_core.wire.signing import RunKeys, Sealed, new_secret
    except ImportError:  # before keys per party (one crew secret): the same script runs on the old engine
        return _signing_cost_one_secret(count)
    keys = RunKeys(new_secret())
    controller = Sealed(None, keys, tasks_by_mac=lambda worker, launch: beside)  # type: ignore[arg-type]  # no store
    worker = Sealed(None, keys.worker_keys("w-1", 1, tasks_by_mac=beside))  # type: ignore[arg-type]
    digest, function, _ = FunctionCache().dump(noop)
    call = protocol.Call(1, digest, dump_args(noop, (1,), {}))
    task = protocol.encode_task(protocol.Batch(7, (call,), {digest: function}))
    answer = protocol.encode_result(protocol.ResultBatch(7, "w-1", 1, ((1, b"x" * 60),)))
    key_task, key_answer = "c/workers/w-1/1/000000000007", "c/inbox/000000000007"
    worker.unseal(key_task, controller.seal(key_task, task))  # imports and key set-up are not per job
    start = time.perf_counter()
    for _ in range(count):
        worker.unseal(key_task, controller.seal(key_task, task))
        controller.unseal(key_answer, worker.seal(key_answer, answer))
    return (time.perf_counter() - start) / count


def _signing_cost_one_secret(count: int) -> float:
    from crew_core import protocol  # pre-v2 paths
    from crew_core.serialize import FunctionCache, dump_args
    from crew_core.signing import Sealed, new_secret

    sealed = Sealed(None, new_secret())  # type: ignore[arg-type]  # seal/unseal only: no store needed
    digest, function, _ = FunctionCache().dump(noop)
    call = protocol.Call(1, digest, dump_args(noop, (1,), {}))
    task = protocol.encode_task(protocol.Batch(7, (call,), {digest: function}))
    answer = protocol.encode_result(protocol.ResultBatch(7, "w-1", 1, ((1, b"x" * 60),)))
    key_task, key_answer = "c/workers/w-1/1/000000000007", "c/inbox/000000000007"
    start = time.perf_counter()
    for _ in range(count):
        sealed.unseal(key_task, sealed.seal(key_task, task))
        sealed.unseal(key_answer, sealed.seal(key_answer, answer))
    return (time.perf_counter() - start) / count


def import_time() -> float:
    code = "import time; t = time.perf_counter(); import crew_core; print(time.perf_counter() - t)"
    runs = [float(subprocess.check_output([sys.executable, "-c", code])) for _ in range(5)]
    return min(runs)


SAMPLES = {
    "crew-subprocess": lambda jobs: crew_throughput(jobs, "subprocess"),
    "crew-executor": lambda jobs: crew_throughput(jobs, "executor"),
    "pool": pool_throughput,
    "dask": dask_throughput,
}


def sample(name: str, jobs: int) -> float | None:
    """One throughput measurement in a fresh interpreter, so no run inherits another's state."""
    out = subprocess.run(
        [sys.executable, __file__, "--sample", name, "--jobs", str(jobs)], capture_output=True, text=True, check=True
    )
    value = out.stdout.strip().splitlines()[-1]
    return None if value == "None" else float(value)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--round-trips", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per peer; medians are shown")
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--sample", choices=sorted(SAMPLES), help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.sample:
        print(SAMPLES[ns.sample](ns.jobs))
        return

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at start: {load} ({os.cpu_count()} cores)")
    print(f"no-op jobs through 2 workers: {ns.jobs} (median of {ns.repeat} interleaved runs, each in a fresh process)")
    peers = ["crew-subprocess", "crew-executor", "pool"] + ([] if ns.no_dask else ["dask"])
    runs: dict[str, list[float]] = {peer: [] for peer in peers}
    for _ in range(ns.repeat):  # interleaved, so a noisy moment hurts every peer alike
        for peer in peers:
            value = sample(peer, ns.jobs)
            if value is not None:
                runs[peer].append(value)
    crew_rate, crew_exec_rate, pool_rate = (statistics.median(runs[k]) for k in peers[:3])
    print(f"  crew (2 subprocess workers)     {crew_rate:10.0f} jobs/s")
    print(f"  crew (2 executor workers)       {crew_exec_rate:10.0f} jobs/s")
    print(f"  ProcessPoolExecutor(2)          {pool_rate:10.0f} jobs/s")
    print(f"  ratio crew/ProcessPoolExecutor  {crew_rate / pool_rate:10.2f}x")
    if runs.get("dask"):
        dask_rate = statistics.median(runs["dask"])
        if dask_rate:
            print(f"  dask.distributed LocalCluster(2) {dask_rate:9.0f} jobs/s")
            print(f"  ratio crew/dask                 {crew_rate / dask_rate:10.2f}x")

    print(f"single-job round trip (send, then receive), {ns.round_trips} trips each, interleaved in 10 rounds:")
    crew_rt, pool_rt = round_trips(ns.round_trips)
    print(f"  crew                    p50 {pct(crew_rt, 50):6.3f} ms   p95 {pct(crew_rt, 95):6.3f} ms")
    print(f"  ProcessPoolExecutor(1)  p50 {pct(pool_rt, 50):6.3f} ms   p95 {pct(pool_rt, 95):6.3f} ms")
    print(f"  ratio crew/ProcessPoolExecutor p50 {pct(crew_rt, 50) / pct(pool_rt, 50):.2f}x")
    print(f"signing: {signing_cost() * 1e6:.1f} µs per job (sign and check a one-job task and its answer;"
          " a remote worker's: Ed25519 tasks)")
    print(f"signing beside: {signing_cost(beside=True) * 1e6:.1f} µs per job (a local worker's: MAC tasks)")
    print(f"import crew_core: {import_time() * 1000:.1f} ms (best of 5 fresh interpreters)")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
