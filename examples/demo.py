"""The demo that `python3 dev.py demo` runs: a real crew on the local default."""

import os
import time
import warnings

from crew_core import Crew


def simulate(seed: int) -> dict:
    """A small job: some arithmetic, a warning now and then, a result to send back."""
    import random

    rng = random.Random(seed)
    total = sum(rng.random() for _ in range(50_000))
    if seed % 5 == 0:
        warnings.warn(f"seed {seed} is a multiple of five")
    return {"seed": seed, "mean": total / 50_000, "pid": os.getpid()}


def fails(x: int) -> None:
    raise ValueError(f"bad input {x}")


def main() -> None:
    started = time.perf_counter()
    with Crew() as crew:
        crew.recruit(workers=2, idle_timeout=30)
        crew.recruit(workers=1, tags={"special"}, idle_timeout=30)
        print(f"crew {crew.id} with workers {sorted(crew.workers)}; store at {crew.store.describe()}")
        ids = [crew.send(simulate, args=(seed,)) for seed in range(20)]
        ids.append(crew.send(fails, args=(7,), tags="special"))
        pids = set()
        for result in crew.results(timeout=60):
            if result.ok:
                pids.add(result.value["pid"])
                note = f" warnings={result.warnings}" if result.warnings else ""
                print(f"job {result.id:2d} on {result.worker}: mean={result.value['mean']:.4f}{note}")
            else:
                last = result.traceback.strip().splitlines()[-1]
                print(f"job {result.id:2d} on {result.worker}: {result.status}: {last}")
        print(f"{len(ids)} jobs on {len(pids)} worker processes in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
