"""crew next to its peers, in one run: the standing comparison of issue #23.

Run: ``python benchmarks/peers.py [--jobs 10000] [--round-trips 2000] [--short 400] [--repeat 3]
[--peers crew,pool,loky,dask,ray] [--busy]``.

Every peer gets 2 warm workers (a few calls run before any clock starts) and the same work, and
every sample runs in a fresh interpreter; the samples are interleaved (each round runs every peer
once, in an order that rotates from round to round) and medians are printed, with each peer's
ratio to crew. The rows:

- **throughput**: ``--jobs`` no-op calls through ``map``: crew's automatic batching
  (``crew.map``) next to each peer's own batching, ``map(chunksize=c)`` with the chunk size
  ``multiprocessing.Pool.map`` picks (jobs / (4 x workers)); dask and ray, which have no
  ``chunksize``, get the same chunks as one task each. Then the same with ``chunksize=1`` for the
  peers (one task per call for dask and ray), where crew's ``map`` runs again as it is. Between
  them, crew with the peers' chunks (``CrewExecutor.map(chunksize=c)``, one job per chunk) next to
  the peers' chunked ``map`` again: equal work on both sides.
- **CPU per job**: user + system CPU of every process of the peer (the controller or client, its
  workers, schedulers and daemons: the whole process tree) during the throughput window, so a
  peer cannot look fast by burning cores the clock does not see.
- **round trip**: one call at a time (submit, wait for its result), p50 and p90.
- **short jobs**: ``--short`` jobs of 10 ms each (sleeping), all submitted at once; efficiency is
  the ideal time (jobs x 10 ms / 2 workers) over the wall time.
- **import**: what a user of the peer imports (``from crew_core import Crew``, ``import loky``...),
  by ``python -X importtime``: the cumulative times of the modules it imports at the top level,
  best of 5 fresh interpreters.
- **shared object** (100 MB used by 50 jobs): measured by ``benchmarks/put_once.py``; this script
  prints its row when that script offers ``peers_row(peer) -> seconds | None`` (see :func:`shared_row`).

``--busy`` keeps every core busy (one ``yes > /dev/null`` per core, started before the first
sample and ended after the last) to see who keeps their lead on a loaded machine. The load average
is printed before and after each sample; on a shared machine treat every figure as noisy.
Peers that are not installed are skipped (loky, dask distributed and ray are optional). Columns:
crew (the local store, subprocess workers), ``concurrent.futures.ProcessPoolExecutor``, loky's
``ProcessPoolExecutor``, dask distributed's ``LocalCluster`` (processes, 1 thread each), ray.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampling import fresh_sample, load, rotated, tree_cpu

WORKERS = 2
JOB_SECONDS = 0.01
PEERS = ("crew", "pool", "loky", "dask", "ray")
LABELS = {"crew": "crew", "pool": "ProcessPool", "loky": "loky", "dask": "dask", "ray": "ray"}  # column heads
MODULES = {"crew": "crew_core", "pool": "concurrent.futures", "loky": "loky", "dask": "distributed", "ray": "ray"}
#: What a user of each peer imports to use it (timed in the import row).
IMPORTS = {"crew": "from crew_core import Crew", "pool": "from concurrent.futures import ProcessPoolExecutor",
           "loky": "import loky", "dask": "from dask.distributed import Client", "ray": "import ray"}  # fmt: skip
KINDS = ("throughput", "round_trip", "short")


def noop(x: int) -> int:
    return x


def chunk_of_noops(xs: list[int]) -> list[int]:
    return [noop(x) for x in xs]


def short_job(x: int) -> int:
    time.sleep(JOB_SECONDS)
    return x


def chunk_size(jobs: int) -> int:
    """What ``multiprocessing.Pool.map`` picks by default: about 4 chunks per worker."""
    size, extra = divmod(jobs, WORKERS * 4)
    return max(1, size + bool(extra))


# ------------------------------------------------------------------ one peer, seen the same way
class Peer:
    """A pool of 2 warm workers behind three calls: map (batched), one call at a time, many at once."""

    def map(self, fun: Callable[[int], int], items: list[int], chunksize: int) -> list[int]:
        raise NotImplementedError

    def call(self, fun: Callable[[int], int], x: int) -> int:
        raise NotImplementedError

    def many(self, fun: Callable[[int], int], items: list[int]) -> list[int]:
        raise NotImplementedError


class CrewPeer(Peer):
    def __init__(self, crew: Any) -> None:
        self.crew = crew

    def map(self, fun: Callable[[int], int], items: list[int], chunksize: int) -> list[int]:
        return self.crew.map(fun, items).values()  # type: ignore[no-any-return]  # crew batches by itself

    def chunked(self, fun: Callable[[int], int], items: list[int], chunksize: int) -> list[int]:
        """The peers' own batching, with crew's ``concurrent.futures`` interface: one job per chunk."""
        from crew_core import CrewExecutor

        with CrewExecutor(crew=self.crew) as executor:
            return list(executor.map(fun, items, chunksize=chunksize))

    def call(self, fun: Callable[[int], int], x: int) -> int:
        self.crew.send(fun, args=(x,))
        return self.crew.receive().value  # type: ignore[no-any-return]

    def many(self, fun: Callable[[int], int], items: list[int]) -> list[int]:
        for x in items:
            self.crew.send(fun, args=(x,))
        return [result.value for result in self.crew.results()]


class ExecutorPeer(Peer):
    """``concurrent.futures``' interface: ProcessPoolExecutor and loky."""

    def __init__(self, executor: Any) -> None:
        self.executor = executor

    def map(self, fun: Callable[[int], int], items: list[int], chunksize: int) -> list[int]:
        return list(self.executor.map(fun, items, chunksize=chunksize))

    def call(self, fun: Callable[[int], int], x: int) -> int:
        return self.executor.submit(fun, x).result()  # type: ignore[no-any-return]

    def many(self, fun: Callable[[int], int], items: list[int]) -> list[int]:
        return [future.result() for future in [self.executor.submit(fun, x) for x in items]]


class DaskPeer(Peer):
    def __init__(self, client: Any) -> None:
        self.client = client

    def map(self, fun: Callable[[int], int], items: list[int], chunksize: int) -> list[int]:
        chunks = [items[i : i + chunksize] for i in range(0, len(items), chunksize)]
        done = self.client.gather(self.client.map(chunk_of_noops, chunks, pure=False))
        return [x for chunk in done for x in chunk]

    def call(self, fun: Callable[[int], int], x: int) -> int:
        return self.client.submit(fun, x, pure=False).result()  # type: ignore[no-any-return]

    def many(self, fun: Callable[[int], int], items: list[int]) -> list[int]:
        return self.client.gather(self.client.map(fun, items, pure=False))  # type: ignore[no-any-return]


class RayPeer(Peer):
    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self.remote: dict[Any, Any] = {}

    def _remote(self, fun: Any) -> Any:
        if fun not in self.remote:
            self.remote[fun] = self.ray.remote(num_cpus=1)(fun)
        return self.remote[fun]

    def map(self, fun: Callable[[int], int], items: list[int], chunksize: int) -> list[int]:
        chunks = [items[i : i + chunksize] for i in range(0, len(items), chunksize)]
        task = self._remote(chunk_of_noops)
        return [x for chunk in self.ray.get([task.remote(c) for c in chunks]) for x in chunk]

    def call(self, fun: Callable[[int], int], x: int) -> int:
        return self.ray.get(self._remote(fun).remote(x))  # type: ignore[no-any-return]

    def many(self, fun: Callable[[int], int], items: list[int]) -> list[int]:
        task = self._remote(fun)
        return self.ray.get([task.remote(x) for x in items])  # type: ignore[no-any-return]


@contextmanager
def open_peer(name: str) -> Iterator[Peer]:
    """The peer with 2 workers, started and warmed up (each worker has run calls)."""
    if name == "crew":
        from crew_core import Crew

        with Crew(store="local", worker_classes=["subprocess"]) as crew:
            crew.recruit(workers=WORKERS)
            crew.launch()
            peer: Peer = CrewPeer(crew)
            _warm(peer)
            yield peer
    elif name == "pool":
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(WORKERS) as pool:
            peer = ExecutorPeer(pool)
            _warm(peer)
            yield peer
    elif name == "loky":
        import loky

        with loky.ProcessPoolExecutor(WORKERS) as pool:
            peer = ExecutorPeer(pool)
            _warm(peer)
            yield peer
    elif name == "dask":
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None)
        with cluster, Client(cluster) as client:
            peer = DaskPeer(client)
            _warm(peer)
            yield peer
    elif name == "ray":
        import ray

        ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            peer = RayPeer(ray)
            _warm(peer)
            yield peer
        finally:
            ray.shutdown()
    else:
        raise ValueError(f"unknown peer {name!r}: one of {', '.join(PEERS)}")


def _warm(peer: Peer) -> None:
    for fun in (noop, short_job):
        peer.many(fun, list(range(2 * WORKERS)))
    peer.map(noop, list(range(4 * WORKERS)), 1)
    if isinstance(peer, CrewPeer):  # its workers import what runs a chunk before any clock starts
        peer.chunked(noop, list(range(4 * WORKERS)), 2)
    for i in range(10):
        peer.call(noop, i)


def installed(name: str) -> bool:
    from importlib.util import find_spec

    return find_spec(MODULES[name].split(".")[0]) is not None


# ------------------------------------------------------------------ the measurements, in a sample process
def measure(name: str, kind: str, ns: argparse.Namespace) -> dict[str, float]:
    with open_peer(name) as peer:
        if kind == "throughput":
            items = list(range(ns.jobs))
            figures = {}
            variants = [("", peer.map, chunk_size(ns.jobs)), ("_1", peer.map, 1)]
            if isinstance(peer, CrewPeer):  # crew also gets the peers' chunks
                variants.insert(1, ("_c", peer.chunked, chunk_size(ns.jobs)))
            for suffix, run, chunksize in variants:
                cpu, start = tree_cpu(), time.perf_counter()
                out = run(noop, items, chunksize)
                wall, cpu = time.perf_counter() - start, tree_cpu() - cpu
                assert out == items, "wrong results"
                figures |= {f"jobs_s{suffix}": ns.jobs / wall, f"cpu_ms_per_job{suffix}": cpu / ns.jobs * 1000}
            if not isinstance(peer, CrewPeer):  # the row of equal chunks shows their chunked map again
                figures |= {"jobs_s_c": figures["jobs_s"], "cpu_ms_per_job_c": figures["cpu_ms_per_job"]}
            return figures
        if kind == "round_trip":
            times = []
            for i in range(ns.round_trips):
                start = time.perf_counter()
                peer.call(noop, i)
                times.append(time.perf_counter() - start)
            q = statistics.quantiles(times, n=10)
            return {"p50_ms": statistics.median(times) * 1000, "p90_ms": q[8] * 1000}
        if kind == "short":
            items = list(range(ns.short))
            start = time.perf_counter()
            out = peer.many(short_job, items)
            wall = time.perf_counter() - start
            assert sorted(out) == items, "wrong results"
            return {"efficiency": ns.short * JOB_SECONDS / WORKERS / wall}
    raise ValueError(kind)


def import_ms(statement: str, best_of: int = 5) -> float:
    """What ``statement`` imports, by ``-X importtime`` (the cumulative times of the modules it
    imports at the top level, what the interpreter imports before any code runs left out), best of
    ``best_of`` fresh interpreters."""
    line = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", re.M)  # top level: no indent

    def top_level(code: str) -> list[tuple[str, int]]:
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                             check=True).stderr  # fmt: skip
        return [(name, int(us)) for us, name in line.findall(err)]

    startup = {name for name, _ in top_level("pass")}
    return min(sum(us for name, us in top_level(statement) if name not in startup) for _ in range(best_of)) / 1000


def shared_row(name: str, megabytes: float) -> float | None:
    """One sample of the shared-object row: ``benchmarks/put_once.py``'s ``peers_row(peer)`` (seconds
    for 50 jobs sharing a ``megabytes`` array on 2 workers, or None for a peer it skips)."""
    try:
        import put_once
    except ImportError:
        return None
    row = getattr(put_once, "peers_row", None)
    return None if row is None else row(name, megabytes)  # type: ignore[no-any-return]


# ------------------------------------------------------------------ the driver
def sample(name: str, kind: str, ns: argparse.Namespace) -> dict[str, float] | None:
    """One measurement in a fresh interpreter, so no run inherits another's state."""
    args = [os.path.abspath(__file__), "--sample", f"{name}:{kind}", "--jobs", str(ns.jobs),
            "--round-trips", str(ns.round_trips), "--short", str(ns.short)]  # fmt: skip
    return fresh_sample(args, ns.timeout, f"{name} {kind}")


@contextmanager
def busy(on: bool) -> Iterator[None]:
    """One ``yes > /dev/null`` per core while the block runs (``--busy``)."""
    env = {**os.environ, "CREW_PEERS_BUSY": "1"}  # a mark that tells this script's load from others'
    cores = (os.cpu_count() or 1) if on else 0
    hogs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL, env=env) for _ in range(cores)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


ROWS = (  # (kind, figure, label, format, higher is better)
    ("throughput", "jobs_s", "{jobs} no-op calls via map, jobs/s", "{:.0f}", True),
    ("throughput", "cpu_ms_per_job", "  CPU of all processes, ms per job", "{:.3f}", False),
    ("throughput", "jobs_s_c", "the same chunks for crew too, jobs/s", "{:.0f}", True),
    ("throughput", "cpu_ms_per_job_c", "  CPU of all processes, ms per job", "{:.3f}", False),
    ("throughput", "jobs_s_1", "the same, peers' chunksize=1, jobs/s", "{:.0f}", True),
    ("throughput", "cpu_ms_per_job_1", "  CPU of all processes, ms per job", "{:.3f}", False),
    ("round_trip", "p50_ms", "round trip p50, ms", "{:.3f}", False),
    ("round_trip", "p90_ms", "round trip p90, ms", "{:.3f}", False),
    ("short", "efficiency", "{short} jobs of 10 ms, efficiency", "{:.3f}", True),
)


def table(peers: list[str], runs: dict[tuple[str, str], list[dict[str, float]]], imports: dict[str, float],
          shared: dict[str, float | None], ns: argparse.Namespace) -> None:  # fmt: skip
    width = 16
    print("\n" + " " * 38 + "".join(f"{LABELS[p]:>{width}}" for p in peers))
    for kind, figure, label, fmt, _ in ROWS:
        values = {p: [r[figure] for r in runs.get((p, kind), [])] for p in peers}
        if not any(values.values()):
            continue  # a row not asked for (--rows), or one no peer could run
        cells = [fmt.format(statistics.median(v)) if v else "-" for v in values.values()]
        print(f"{label.format(jobs=ns.jobs, short=ns.short):38}" + "".join(f"{c:>{width}}" for c in cells))
        spread = [f"{fmt.format(min(v))}-{fmt.format(max(v))}" if len(v) > 1 else "" for v in values.values()]
        if any(spread):
            print(f"{'  range':38}" + "".join(f"{c:>{width}}" for c in spread))
    if not shared:
        pass  # not asked for (--rows)
    elif any(v is not None for v in shared.values()):
        cells = [f"{shared[p]:.2f}" if shared.get(p) is not None else "-" for p in peers]
        print(f"{f'50 jobs sharing {ns.shared_megabytes:g} MB, s':38}" + "".join(f"{c:>{width}}" for c in cells))
    else:
        print(f"{f'50 jobs sharing {ns.shared_megabytes:g} MB, s':38}  (no peer could be measured)")

    if imports:
        print(f"{'import, as its users do, ms':38}" + "".join(
            f"{imports[p]:>{width}.1f}" if p in imports else f"{'-':>{width}}" for p in peers))  # fmt: skip
    print("\nratios, crew / peer (above 1: crew better)" if "crew" in peers else "")
    for kind, figure, label, _, higher in ROWS:
        crew = [r[figure] for r in runs.get(("crew", kind), [])]
        if not crew:
            continue
        cells = []
        for p in peers[1:]:
            other = [r[figure] for r in runs.get((p, kind), [])]
            if not other:
                cells.append("-")
                continue
            a, b = statistics.median(crew), statistics.median(other)
            if min(a, b) <= 0:  # a CPU time below the clock's tick
                cells.append("-")
                continue
            ratio = a / b if higher else b / a
            cells.append(f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x")  # 0.0047x, not 0.00x
        label = label.format(jobs=ns.jobs, short=ns.short)
        print(f"{label:38}" + " " * width + "".join(f"{c:>{width}}" for c in cells))
    if "crew" in imports:
        cells = [f"{imports[p] / imports['crew']:.2f}x" if p in imports else "-" for p in peers[1:]]
        print(f"{'import, as its users do':38}" + " " * width + "".join(f"{c:>{width}}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000, help="no-op calls in the throughput row")
    parser.add_argument("--round-trips", type=int, default=2_000, help="single calls in the round-trip row")
    parser.add_argument("--short", type=int, default=400, help="10 ms jobs in the efficiency row")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved samples per peer and row; medians shown")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated, of " + ",".join(PEERS))
    parser.add_argument("--rows", default="throughput,round_trip,short,import,shared",
                        help="comma-separated, of throughput,round_trip,short,import,shared")  # fmt: skip
    parser.add_argument("--shared-megabytes", type=float, default=100, help="the array of the shared-object row")
    parser.add_argument("--busy", action="store_true", help="keep every core busy meanwhile (yes > /dev/null)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one sample may take")
    parser.add_argument("--sample", help=argparse.SUPPRESS)  # peer:kind, in a fresh interpreter
    ns = parser.parse_args()
    if ns.sample:
        name, kind = ns.sample.split(":")
        print(json.dumps(measure(name, kind, ns)))
        return

    wanted = [p.strip() for p in ns.peers.split(",") if p.strip()]
    unknown = sorted(set(wanted) - set(PEERS))
    if unknown:
        parser.error(f"unknown peers {unknown}: choose from {', '.join(PEERS)}")
    missing = [p for p in wanted if not installed(p)]
    peers = sorted((p for p in wanted if p not in missing), key=lambda p: p != "crew")  # crew first: ratios to it
    rows = {r.strip() for r in ns.rows.split(",")}
    kinds = [k for k in KINDS if k in rows]
    print(f"load average at start: {load()} ({os.cpu_count()} cores){' with every core kept busy' if ns.busy else ''}")
    if missing:
        print(f"not installed, skipped: {', '.join(missing)}")
    print(f"{WORKERS} warm workers each; medians of {ns.repeat} interleaved samples, each in a fresh interpreter;"
          f" map chunk size {chunk_size(ns.jobs)} for the peers (crew batches by itself)", flush=True)  # fmt: skip
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    with busy(ns.busy):
        for round_ in range(ns.repeat):
            order = rotated(peers, round_)  # who goes first rotates
            for kind in kinds:
                for name in order:
                    before = load()
                    result = sample(name, kind, ns)
                    if result is not None:
                        runs.setdefault((name, kind), []).append(result)
                    figures = ", ".join(f"{k} {v:.3f}" for k, v in (result or {}).items())
                    print(f"  round {round_ + 1} {kind:10} {name:5} {figures:42} load {before} -> {load()}", flush=True)
        imports = {p: import_ms(IMPORTS[p]) for p in peers} if "import" in rows else {}
        shared_samples: dict[str, list[float]] = {p: [] for p in peers} if "shared" in rows else {}
        for _ in range(ns.repeat if shared_samples else 0):  # interleaved, as the other rows
            for p in peers:
                if (seconds := shared_row(p, ns.shared_megabytes)) is not None:
                    shared_samples[p].append(seconds)
        shared = {p: statistics.median(v) if v else None for p, v in shared_samples.items()}
    table(peers, runs, imports, shared, ns)
    print(f"\nload average at end: {load()}")


if __name__ == "__main__":
    main()
