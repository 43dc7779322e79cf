"""On a backend that cannot list after a key, a poll's cost follows the work in flight, not history.

``ClientFilteredLocalStore`` lists as such a backend must (the whole prefix, filtered here) and
deletes in batches of 100, as a remote store does. Before ``Store.lists_from_key``, the
controller kept every result below its watermark until the crew closed (a listing from the
watermark skips them for free on S3 and GCS), so here each poll fetched the crew's whole history.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crew_core import Crew
from crew_core.testing import jobs
from crew_core.wire import protocol
from crew_local.client_filtered import ClientFilteredLocalStore

JOBS = 600  # one task each: six times the store's delete batch


@pytest.fixture
def store(tmp_path: Path):
    ClientFilteredLocalStore.listings.clear()
    store = ClientFilteredLocalStore(tmp_path / "store")
    yield store
    store.close()


@pytest.mark.parametrize("name", [None, "nightly"], ids=["unnamed", "named"])
def test_the_inbox_listing_stays_short_however_many_results_came_before(
    store: ClientFilteredLocalStore, name: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # a named crew's key file
    bound = store.delete_batch + 20  # the trash, plus what is in flight, beats and exit notes
    with Crew(store=store, name=name, worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=2)
        for n in range(JOBS):  # one at a time: one task record and one answer each
            assert crew.result(crew.send(jobs.double, args=(n,)), timeout=120).value == 2 * n
        inbox = ClientFilteredLocalStore.listings_under(protocol.inbox_prefix(crew.id))
        assert len(inbox) >= JOBS / 2, "the controller listed its inbox through the store"
        fetched = [listing.fetched for listing in inbox]
        assert max(fetched) <= bound, f"a poll fetched {max(fetched)} keys after {JOBS} results"
        left = store.list(f"{crew.id}/")
        assert len(left) <= bound + 30, f"{len(left)} keys under the crew after {JOBS} jobs: {left[:5]}..."
