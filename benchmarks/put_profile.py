"""Where a shared object's time goes: each step of ``crew.put`` and a worker's first read, timed alone.

Run: ``python benchmarks/put_profile.py [--megabytes 100] [--repeat 5]``. Prints, for a numpy
array of that size on the local store (in ``/dev/shm`` where there is one), the median wall and
CPU time of each step in the order the object meets them: the controller pickles it (its data out
of band), hashes its buffer, copies the buffer into the store and writes the signed header; each
worker reads and checks the header, maps the buffer, hashes it and unpickles the array over the
mapping. Then two references: one plain copy of the buffer in memory (about what ``ray.put`` does
into its object store) and SHA-256 of the buffer (the hash before BLAKE3). ``put_once.py`` times
the whole, 50 jobs on 2 workers, next to the peers; what the steps here do not account for is
the jobs' own round trips and the processes' wake-ups.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(step: Callable[[], Any], repeat: int, after: Callable[[], Any] | None = None) -> tuple[float, float]:
    """Median wall and CPU (this process, all threads) milliseconds of ``step()``; ``after()``, untimed."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        if after is not None:
            after()
    return statistics.median(walls) * 1e3, statistics.median(cpus) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=100, help="size of the shared array")
    parser.add_argument("--repeat", type=int, default=5, help="samples per step; medians shown")
    ns = parser.parse_args()

    import cloudpickle
    import numpy as np

    from crew_core.wire import protocol, put_objects
    from crew_core.wire.refs import ObjectCache, upload
    from crew_core.wire.serialize import dumps
    from crew_core.wire.signing import RunKeys, Sealed, new_secret
    from crew_local import LocalStore

    array = np.random.default_rng(0).random(int(ns.megabytes * 1e6) // 8)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    print(f"a {array.nbytes / 1e6:,.0f} MB array; medians of {ns.repeat}, ms (wall, CPU of this process)")
    store = LocalStore()
    try:
        keys = RunKeys(new_secret())
        controller = Sealed(store, keys)
        packed = put_objects.pack(array)
        view = packed.buffers[0]
        header = put_objects.parse(packed.header, "header")
        upload(controller, "c", packed)  # what the worker's steps read
        worker = Sealed(store, keys.worker_keys("w", 1))
        mapped = store.get_buffer(protocol.buffer_key("c", packed.digest, 0))

        def pickled() -> None:
            dumps(array, buffer_callback=lambda buffer: False, taken=[])

        def copied_into_store() -> None:
            store.put_buffer("copies/one", view)

        def mapped_once() -> None:
            store.get_buffer(protocol.buffer_key("c", packed.digest, 0)).release()

        def checked() -> None:
            put_objects.check_buffer(mapped, header.sizes[0], header.hashes[0], "buffer")

        def forget_the_copy() -> None:  # untimed: /dev/shm holds one copy at a time
            store.delete(["copies/one"])

        steps: list[tuple[str, Callable[[], Any]]] = [
            ("controller: pickle, data out of band", pickled),
            ("controller: hash the buffer (BLAKE3)", lambda: put_objects.buffer_hash(view)),
            ("controller: copy the buffer into the store", copied_into_store),
            ("controller: sign and write the header", lambda: controller.put("header/x", packed.header)),
            ("worker: read and check the header", lambda: worker.get(protocol.data_key("c", packed.digest))),
            ("worker: map the buffer", mapped_once),
            ("worker: hash the mapped buffer (BLAKE3)", checked),
            ("worker: unpickle over the mapping", lambda: cloudpickle.loads(header.pickled, buffers=[mapped])),
            ("worker: all of its first read", lambda: ObjectCache(worker).get("c", packed.digest)),
            ("reference: one copy in memory", lambda: bytes(view)),
            ("reference: SHA-256 of the buffer", lambda: hashlib.sha256(view).digest()),
        ]
        width = max(len(name) for name, _ in steps) + 2
        for name, step in steps:
            wall, cpu = timed(step, ns.repeat, forget_the_copy if step is copied_into_store else None)
            print(f"  {name:{width}} {wall:8.1f} {cpu:8.1f}", flush=True)
        mapped.release()
    finally:
        store.close()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
