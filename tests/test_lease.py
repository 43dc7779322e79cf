"""A worker and its crew's lease when someone who can write the store deletes or forges it (issue #20).

Deleting the lease once a second turned every running job into a "crash" whose cause said "exit
code 0": the worker took a vanished lease for a closed crew and left at once. A vanished or
forged lease now counts as one that stands still; the worker says so when it leaves. That a job
outlives a lease deleted over and over, on every store, and that ``close()`` and ``crew stop``
still end workers at once, is in ``CrewContract``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crew_core import Crew, WorkerCrashedError
from crew_core.agent.runtime import WorkerLoop
from crew_core.testing import jobs
from crew_core.wire import protocol
from crew_core.wire.protocol import Lease, WorkerSettings
from crew_core.wire.signing import Sealed
from crew_local import LocalStore

SETTINGS = WorkerSettings(store={}, crew="c", name="w", incarnation=1, lease_timeout=10.0)
KEY = protocol.lease_key("c")


@pytest.fixture
def sealed(tmp_path: Path) -> Iterator[Sealed]:
    store = LocalStore(tmp_path / "store")
    yield Sealed(store, bytes(range(32)))
    store.close()


@pytest.fixture
def worker(sealed: Sealed) -> Iterator[WorkerLoop]:
    worker = WorkerLoop(sealed, SETTINGS)
    yield worker
    if worker.guard is not None:
        worker.guard.close()


def _renew(sealed: Sealed, renewal: int, epoch: int = 0) -> bytes:
    """Write the lease as the controller does; return the object as stored (signed)."""
    sealed.put(KEY, protocol.encode_json(Lease(renewal, SETTINGS.lease_timeout, epoch)))
    return sealed.store.get(KEY)


def _left(worker: WorkerLoop) -> str | None:
    return worker._orphaned_why if worker._orphaned.is_set() else None


def test_a_vanished_lease_counts_as_one_that_stands_still(sealed: Sealed, worker: WorkerLoop) -> None:
    _renew(sealed, 1)
    worker._check_lease(100.0)
    sealed.store.delete([KEY])
    worker._check_lease(103.0)
    worker._check_lease(109.0)
    assert _left(worker) is None  # gone 6 s, not seen renewed for 9 s: it works on
    _renew(sealed, 2)  # the controller, alive, writes it again
    worker._check_lease(109.5)
    sealed.store.delete([KEY])
    worker._check_lease(115.0)
    assert _left(worker) is None
    worker._check_lease(120.0)
    assert _left(worker) == (
        "the crew's lease vanished from the store 5 s ago and was not written again (its controller has not"
        " renewed the crew's lease for 10 s)"
    )


def test_a_forged_lease_counts_as_one_that_stands_still(sealed: Sealed, worker: WorkerLoop) -> None:
    _renew(sealed, 1)
    worker._check_lease(0.0)
    sealed.store.put(KEY, b"\0" * 32 + protocol.encode_json(Lease(99, 1e9)))  # no valid signature
    worker._check_lease(4.0)
    assert _left(worker) is None
    worker._check_lease(10.5)
    why = _left(worker)
    assert why is not None and why.startswith("the crew's lease in the store has not been signed by the crew for 6 s")


def test_an_older_copy_of_the_lease_put_back_renews_nothing(sealed: Sealed, worker: WorkerLoop) -> None:
    """Copies of the lease saved as it was renewed, put back in turn, would keep an orphan alive."""
    copies = [_renew(sealed, n) for n in (1, 2, 3)]
    worker._check_lease(0.0)
    for at, copy in zip((4.0, 8.0, 10.5), copies, strict=True):
        sealed.store.put(KEY, copy)
        worker._check_lease(at)
    assert _left(worker) == "its controller has not renewed the crew's lease for 10 s"
    fresh = WorkerLoop(sealed, dataclasses.replace(SETTINGS, name="w2"))
    fresh._check_lease(0.0)
    _renew(sealed, 1, epoch=1)  # a resumed controller's: a later epoch counts, whatever its renewal
    fresh._check_lease(9.0)
    fresh._check_lease(12.0)
    assert _left(fresh) is None


def test_the_exit_note_and_the_crash_cause_say_the_lease_vanished(tmp_path: Path) -> None:
    """The lease deleted every few milliseconds, longer than ``lease_timeout``: the worker leaves, and
    the job's crash says why (it said "exit code 0")."""
    with Crew(store=str(tmp_path / "store"), worker_classes=["subprocess"], lease_timeout=2, max_tries=1) as crew:
        crew.recruit(workers=1)
        raw, key, done = crew.store, protocol.lease_key(crew.id), threading.Event()

        def delete_the_lease() -> None:
            while not done.wait(0.005):
                raw.delete([key])

        deleter = threading.Thread(target=delete_the_lease, name="lease-deleter")
        deleter.start()
        try:
            job = crew.send(jobs.sleep_then, args=(600, "never"))
            result = crew.receive(timeout=120)
        finally:
            done.set()
            deleter.join()
        assert result is not None and (result.id, result.status) == (job, "crash"), result
        assert isinstance(result.error, WorkerCrashedError)
        assert "it left saying 'orphaned': the crew's lease vanished from the store" in str(result.error)
        assert "and was not written again" in str(result.error)
