"""Does a user's thread driving the crew's loop pay? The same crew with and without it, interleaved.

Run: ``python benchmarks/driving.py [--round-trips 1000] [--jobs 10000] [--repeat 5]``. On a store
whose requests take microseconds (the local store), a thread waiting in ``receive()`` runs the
loop itself instead of waiting for the manager thread (``Manager.drive``): two thread hand-offs
fewer per round trip. With ``Manager.drive_from_user_threads`` off, only the manager thread runs
it. Prints the round trip's p50 and p95 and the throughput of each, medians over the rounds, and
their ratios, with the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def noop(x: int) -> int:
    return x


def measure(driving: bool, round_trips: int, jobs: int) -> tuple[float, float, float]:
    from crew_core import Crew
    from crew_core.runner.manager import Manager

    Manager.drive_from_user_threads = driving
    try:
        with Crew(store="local", worker_classes=["subprocess"]) as crew:
            crew.recruit(workers=2)
            crew.launch()
            for i in range(20):  # warm the workers up
                crew.send(noop, args=(i,))
                crew.receive()
            times = []
            for i in range(round_trips):
                start = time.perf_counter()
                crew.send(noop, args=(i,))
                crew.receive()
                times.append(time.perf_counter() - start)
            times.sort()
            start = time.perf_counter()
            crew.map(noop, range(jobs))
            throughput = jobs / (time.perf_counter() - start)
        return times[len(times) // 2] * 1e3, times[int(len(times) * 0.95)] * 1e3, throughput
    finally:
        Manager.drive_from_user_threads = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    for round_ in range(args.repeat):
        for driving in (True, False) if round_ % 2 == 0 else (False, True):  # alternate who goes first
            results[driving].append(measure(driving, args.round_trips, args.jobs))
            p50, p95, rate = results[driving][-1]
            print(f"  round {round_ + 1}, {'driving   ' if driving else 'not driving'}: p50 {p50:.3f} ms,"
                  f" p95 {p95:.3f} ms, {rate:,.0f} jobs/s, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    medians = {d: [statistics.median(r[i] for r in results[d]) for i in range(3)] for d in (True, False)}
    print(f"{'':28}{'driving':>12}{'not driving':>14}{'ratio':>8}")
    for i, (label, unit) in enumerate([("round trip p50", "ms"), ("round trip p95", "ms"), ("throughput", "jobs/s")]):
        on, off = medians[True][i], medians[False][i]
        print(f"{label + ' (' + unit + ')':28}{on:12.3f}{off:14.3f}{on / off:8.2f}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
