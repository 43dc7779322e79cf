"""Steady long jobs share a task only where a request costs something (``Store.long_jobs_per_task``).

On S3 a task and its answer cost four requests, so jobs go two to a task while the backlog is deep
(plugins/crew-aws/tests/test_s3_requests.py); on local files a request costs microseconds, so each
job keeps a task of its own and its result comes as it ends.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crew_core import Crew
from crew_core.testing import jobs
from crew_local.counting import CountingStore


@pytest.mark.parametrize(("per_task", "tasks"), [(None, (8, 8)), (2, (4, 5))], ids=["local", "two-per-task"])
def test_steady_long_jobs_share_a_task_only_where_the_store_says(tmp_path: Path, per_task, tasks) -> None:
    store = CountingStore(tmp_path / "store")
    if per_task is not None:
        store.long_jobs_per_task = per_task  # as a remote store's class says
    try:
        with Crew(store=store, worker_classes=["subprocess"]) as crew:
            crew.recruit(workers=1)
            for _ in range(3):  # three runs show the kind steady
                crew.send(jobs.sleep_then, args=(0.3,))
            assert [r.ok for r in crew.results(timeout=120)] == [True] * 3
            store.reset()
            for i in range(8):
                crew.send(jobs.sleep_then, args=(0.3, i))
            assert sorted(r.value for r in crew.results(timeout=120)) == list(range(8))
            accesses = store.accesses()
        written = [a.key for a in accesses if a.op == "put" and re.search(r"/workers/[^/]+/\d+/\d{12}$", a.key)]
    finally:
        store.close()
    assert tasks[0] <= len(written) <= tasks[1], written
