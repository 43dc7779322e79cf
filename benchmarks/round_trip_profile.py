"""Where one local round trip's time goes: each step timed on its own, next to the whole trip.

Run: ``python benchmarks/round_trip_profile.py [--count 3000]``. Prints the median cost of each
step of one job's round trip on the local store (in ``/dev/shm``), in the order the job meets
them, then the whole round trip of a 1-worker crew and of ``ProcessPoolExecutor(1)``; what the
steps do not account for is the two processes' wake-ups and thread hand-offs, which
``wake-ups`` measures on its own: a ping-pong between two processes over the store's doorbells
(named pipes) and over a plain pipe (what ``ProcessPoolExecutor`` uses).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from throughput import warm_round_trips  # this folder: the script's own, first on sys.path


def noop(x: int) -> int:
    return x


def per_call(fun: Callable[[], Any], count: int) -> float:
    """Median µs of ``fun()`` over ``count`` calls (in 20 timed groups)."""
    group = max(1, count // 20)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        for _ in range(group):
            fun()
        times.append((time.perf_counter() - start) / group)
    return statistics.median(times) * 1e6


def ping_pong(count: int, doorbells: bool) -> float:
    """µs per one-way hop between two processes (a hop wakes the other process)."""
    from crew_local import LocalStore

    if doorbells:
        store = LocalStore()
        store.wait("a", 0), store.wait("b", 0)  # both listen before the child starts
    else:
        ab, ba = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # the other side: answers every ring
        try:
            for _ in range(count):
                if doorbells:
                    while not store.wait("a", 1.0):
                        pass
                    store.notify("b")
                else:
                    os.read(ab[0], 1)
                    os.write(ba[1], b"!")
        finally:
            os._exit(0)
    start = time.perf_counter()
    for _ in range(count):
        if doorbells:
            store.notify("a")
            while not store.wait("b", 1.0):
                pass
        else:
            os.write(ab[1], b"!")
            os.read(ba[0], 1)
    elapsed = time.perf_counter() - start
    os.waitpid(pid, 0)
    if doorbells:
        store.close()
    else:
        for fd in (*ab, *ba):
            os.close(fd)
    return elapsed / count / 2 * 1e6


def steps(count: int) -> list[tuple[str, float]]:
    from crew_core.agent.runtime import run_call
    from crew_core.agent.sandbox import JobGuard
    from crew_core.wire import protocol
    from crew_core.wire.serialize import FunctionCache, FunctionTable, dump_args, dump_outcome, load_outcome
    from crew_core.wire.signing import RunKeys, Sealed, new_secret
    from crew_local import LocalStore

    store = LocalStore()
    keys = RunKeys(new_secret())
    controller = Sealed(store, keys, tasks_by_mac=lambda worker, launch: True)
    worker = Sealed(store, keys.worker_keys("w-1", 1, tasks_by_mac=True))
    digest, function, _ = FunctionCache().dump(noop)
    call = protocol.Call(1, digest, dump_args(noop, (1,), {}))
    batch = protocol.Batch(7, (call,), {digest: function})
    task = protocol.encode_task(batch)
    key_task, key_answer = "c/workers/w-1/1/000000000007", "c/inbox/000000000007"
    sealed_task = controller.seal(key_task, task)
    table = FunctionTable()
    guard = JobGuard(capture=True, cancelled=set())
    outcome = run_call(call, batch.functions, table, guard)
    result = protocol.ResultBatch(7, "w-1", 1, ((1, outcome),))
    answer = protocol.encode_result(result)
    sealed_answer = worker.seal(key_answer, answer)
    store.put(key_task, sealed_task)
    store.put(key_answer, sealed_answer)
    store.wait("ring", 0)
    ring = lambda: store.notify("ring")  # noqa: E731
    for i in range(20 * max(1, count // 20)):  # what the delete step deletes, one per call
        store.put(f"c/workers/w-2/1/{i + 100:012d}", sealed_task)  # not in the listed folder
    doomed = iter([f"c/workers/w-2/1/{i + 100:012d}" for i in range(20 * max(1, count // 20))])
    timed: list[tuple[str, Callable[[], Any]]] = [
        ("controller: pickle the call (dump_args)", lambda: dump_args(noop, (1,), {})),
        ("controller: encode the task", lambda: protocol.encode_task(batch)),
        ("controller: sign the task (MAC)", lambda: controller.seal(key_task, task)),
        ("controller: write the task (store.put)", lambda: store.put(key_task, sealed_task)),
        ("controller: ring the worker (notify)", ring),
        ("worker: hear the ring (wait, rung)", lambda: (ring(), store.wait("ring", 1))),  # less a ring, below
        ("worker: list its tasks", lambda: store.list("c/workers/w-1/1/")),
        ("worker: read the task (store.get)", lambda: store.get(key_task)),
        ("worker: check the task (MAC)", lambda: worker.unseal(key_task, sealed_task)),
        ("worker: decode the task", lambda: protocol.decode_task(task, key_task)),
        ("worker: run the call, no guard", lambda: run_call(call, batch.functions, table)),
        ("worker: run the call with its guard", lambda: run_call(call, batch.functions, table, guard)),
        ("worker: encode the answer", lambda: protocol.encode_result(result)),
        ("worker: sign the answer (MAC)", lambda: worker.seal(key_answer, answer)),
        ("worker: write the answer (store.put)", lambda: store.put(key_answer, sealed_answer)),
        ("worker: ring the controller (notify)", ring),
        ("controller: read the answer (store.get)", lambda: store.get(key_answer)),
        ("controller: check the answer (MAC)", lambda: controller.unseal(key_answer, sealed_answer)),
        ("controller: decode the answer", lambda: protocol.decode_result(answer, key_answer)),
        ("controller: unpickle the outcome", lambda: load_outcome(outcome, False)),
        ("controller: delete the task", lambda: store.delete([next(doomed)])),
        ("(for scale: dump_outcome alone)", lambda: dump_outcome(protocol.Outcome("success", 1))),
    ]
    try:
        costs = [(label, per_call(fun, count)) for label, fun in timed]
        ring_cost = costs[4][1]
        return [(label, us - (ring_cost if "hear the ring" in label else 0)) for label, us in costs]
    finally:
        guard.close()
        store.close()


SIDES = ("crew", "pool")


def trips(count: int) -> dict[str, dict[str, float]]:
    """Round trips of a 1-worker crew and of ``ProcessPoolExecutor(1)``, interleaved: p50 and p90 (µs),
    and the CPU each side spent per trip (µs): the controller's process (all its threads) and the
    worker's (with ``ProcessPoolExecutor``, its one worker process). CPU time, unlike the wall
    clock, hardly depends on what else the machine runs."""
    import psutil

    def cpu(pids: list[int]) -> float:
        return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)

    def timed(call: Callable[[int], Any], n: int, workers: list[int], into: dict[str, Any]) -> None:
        mine, theirs = time.process_time(), cpu(workers)
        for i in range(n):
            start = time.perf_counter()
            call(i)
            into["times"].append(time.perf_counter() - start)
        into["controller"] += time.process_time() - mine
        into["worker"] += cpu(workers) - theirs

    out: dict[str, dict[str, Any]] = {side: {"times": [], "controller": 0.0, "worker": 0.0} for side in SIDES}
    with warm_round_trips(noop) as (crew_trip, pool_trip):
        children = psutil.Process().children(recursive=True)
        crew_workers = [p.pid for p in children if "crew_core" in p.cmdline()]  # python -m crew_core worker
        pool_workers = [p.pid for p in children if p.pid not in crew_workers]
        for _ in range(10):
            timed(crew_trip, count // 10, crew_workers, out["crew"])
            timed(pool_trip, count // 10, pool_workers, out["pool"])
    figures = {}
    for side, got in out.items():
        q = statistics.quantiles(got["times"], n=10)
        n = len(got["times"])
        figures[side] = {"p50": statistics.median(got["times"]) * 1e6, "p90": q[8] * 1e6,
                         "controller": got["controller"] / n * 1e6, "worker": got["worker"] / n * 1e6}  # fmt: skip
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=3000)
    ns = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    total = 0.0
    print("steps of one round trip on the local store (median µs each, timed alone, warm):")
    for label, us in steps(ns.count):
        if not label.startswith("(") and "no guard" not in label:
            total += us
        print(f"  {label:48} {us:8.1f}")
    print(f"  {'sum of the steps (with the guard)':48} {total:8.1f}")
    door, pipe = ping_pong(ns.count, True), ping_pong(ns.count, False)
    print("wake-ups: one hop from one process to another that sleeps until it comes (median µs):")
    print(f"  {'over the store doorbells (named pipes)':48} {door:8.1f}")
    print(f"  {'over a plain pipe':48} {pipe:8.1f}")
    got = trips(ns.count)
    print("the whole round trip (µs), and the CPU each process spent on it (µs per trip):")
    for side, label in (("crew", "crew, 1 subprocess worker"), ("pool", "ProcessPoolExecutor(1)")):
        f = got[side]
        print(f"  {label:30} p50 {f['p50']:7.1f}  p90 {f['p90']:7.1f}   CPU: controller {f['controller']:6.1f},"
              f" worker {f['worker']:6.1f}")  # fmt: skip
    print(f"  {'crew p50 - steps - 2 doorbell hops':48} {got['crew']['p50'] - total - 2 * door:8.1f}"
          "  (thread hand-offs, the loop's own bookkeeping)")  # fmt: skip
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
