"""Receipts stay for the life of a named crew's run, merged so that there are never many (issue #20).

Put back after the user received them, saved journal and inbox objects are delivered again by a
next controller unless a receipt still names their jobs: on every store, with crashes in between,
in ``CrewContract``; here the merging that keeps their number small, and the record.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crew_core import Crew
from crew_core.durable import journal
from crew_core.durable.receipts import MERGE_AT, JobIds, Keeper
from crew_core.errors import CorruptObjectError
from crew_core.testing import jobs, wait_for
from crew_core.wire import protocol, records
from crew_core.wire.keys import EPOCH_SPAN
from crew_core.wire.protocol import Receipt
from crew_core.wire.signing import Sealed
from crew_local import LocalStore


@pytest.fixture
def sealed(tmp_path: Path) -> Iterator[Sealed]:
    store = LocalStore(tmp_path / "store")
    yield Sealed(store, b"k" * 32)
    store.close()


def _receipts(store: LocalStore, crew_id: str = "nightly") -> list[str]:
    return store.list(protocol.receipt_prefix(crew_id))


def _write(keeper: Keeper, job_ids: range, store: LocalStore) -> int:
    """Receive ``job_ids`` one at a time, a receipt each, deleting the garbage as the controller
    does; return the most receipt objects that stood at once."""
    most = 0
    for job_id in job_ids:
        keeper.received(job_id)
        garbage = keeper.write_receipt(threading.Lock())
        most = max(most, len(_receipts(store)))
        store.delete(garbage)
    return most


def test_job_ids_are_kept_as_runs() -> None:
    ids = JobIds([5, 1, 2, 3, 9], ranges=[(10, 12), (20, 20)])
    assert ids.ranges() == ((1, 3), (5, 5), (9, 12), (20, 20))
    inside = [n for n in range(22) if n in ids]
    assert inside == [1, 2, 3, 5, 9, 10, 11, 12, 20]
    assert list(ids) == [1, 2, 3, 5, 9, 10, 11, 12, 20] and len(ids) == 9 and "1" not in ids
    assert ids.union([4, 13], [(6, 8), (14, 19)]).ranges() == ((1, 20),) and ids.ranges()[0] == (1, 3)  # a new set
    assert not JobIds() and repr(ids) == "JobIds(1-3, 5, 9-12, 20)"


def test_a_receipt_without_ranges_is_encoded_as_before_and_a_merged_one_is_read_back() -> None:
    plain = protocol.encode_receipt(Receipt((3, 1, 2)))
    assert protocol.decode_receipt(plain, "k") == Receipt((3, 1, 2))
    assert records._load(plain, "k", ("receipt",))[1] == ((3, 1, 2),)  # the body of before: one field
    merged = Receipt((), ((1, 10), (12, 12)))
    assert protocol.decode_receipt(protocol.encode_receipt(merged), "k") == merged
    for ranges in (((5, 1),), ((1, "2"),), ((1, 2, 3),)):
        with pytest.raises(CorruptObjectError, match="malformed receipt"):
            protocol.decode_receipt(records._dump("receipt", ((), ranges)), "k")


def test_receipts_are_merged_never_dropped_and_recovery_reads_every_id(sealed: Sealed) -> None:
    keeper = Keeper(sealed, "nightly", epoch=0)
    assert _write(keeper, range(1, 201), sealed.store) <= MERGE_AT
    assert list(journal.recover(sealed, "nightly").received) == list(range(1, 201))
    assert _receipts(sealed.store)  # the receipts stay while the run lives


def test_a_next_controller_merges_the_receipts_of_those_before_it(sealed: Sealed) -> None:
    for epoch, ids in enumerate([range(1, 6), range(6, 11), range(11, 21)]):  # three controllers in turn
        assert _write(Keeper(sealed, "nightly", epoch=epoch), ids, sealed.store) <= MERGE_AT
    merged = [key for key in _receipts(sealed.store) if protocol.decode_receipt(sealed.get(key), key).ranges]
    assert merged and all(int(key.rpartition("/")[2]) > 2 * EPOCH_SPAN for key in merged)  # the last one's
    assert list(journal.recover(sealed, "nightly").received) == list(range(1, 21))


def test_a_failed_receipt_write_frees_nothing_and_keeps_the_ids_for_the_next(sealed: Sealed) -> None:
    keeper = Keeper(sealed, "nightly", epoch=0)
    _write(keeper, range(1, MERGE_AT), sealed.store)
    put = sealed.put

    def down(key: str, payload: bytes) -> None:
        raise OSError("store down")

    sealed.put = down  # type: ignore[method-assign]
    keeper.received(MERGE_AT)
    with pytest.raises(OSError):
        keeper.write_receipt(threading.Lock())  # the merging one
    assert keeper.unreceipted == [MERGE_AT] and len(_receipts(sealed.store)) == MERGE_AT - 1
    sealed.put = put  # type: ignore[method-assign]
    sealed.store.delete(keeper.write_receipt(threading.Lock()))
    assert len(_receipts(sealed.store)) == 1
    assert list(journal.recover(sealed, "nightly").received) == list(range(1, MERGE_AT + 1))


def test_a_long_run_received_one_at_a_time_keeps_a_handful_of_receipts(tmp_path: Path, monkeypatch) -> None:
    """2,000 results received one by one write 2,000 receipts: a handful stand at any time, and
    at the end they still name every job (before, they went with the journal objects)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    store = LocalStore(tmp_path / "store")
    with Crew(store=store, name="nightly", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=4)
        with crew.batch():
            ids = [crew.send(jobs.double, args=(n,)) for n in range(2000)]
        for _ in range(2000):
            assert crew.receive(timeout=120) is not None
        assert crew.receive(timeout=0) is None
        wait_for(lambda: not store.list(protocol.journal_prefix("nightly")), what="the journal objects to go")
        wait_for(lambda: len(_receipts(store)) <= MERGE_AT, what="the receipts merged to go")
        received = journal.recover(crew._manager.sealed, "nightly").received
        assert list(received) == ids and len(received.ranges()) == 1
    store.close()
