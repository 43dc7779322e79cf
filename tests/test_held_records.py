"""A named crew keeps an answered task's record while its answer is kept, even once its worker died.

A next controller trusts an answer only for the jobs its task record gave the worker. The record
of a task whose result the user had not received yet went with the rest of the worker's records
when the worker died (``delete_prefix``), so after a controller's crash the answer was ignored and
the job ran again. Found by the simulator (seed 270 of named crews whose worker w2 ends with its
controller, once the dispatcher's prefetch changed the schedule).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crew_core import Crew
from crew_core.testing import jobs, process_gone


def test_a_result_answered_by_a_worker_that_then_died_is_not_run_again_after_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # the crew's key file, shared by both
    store, runs, report = tmp_path / "store", tmp_path / "runs", tmp_path / "first.json"
    script = textwrap.dedent(
        f"""
        import json, os
        from crew_core import Crew
        from crew_core.wire import protocol
        from crew_core.testing import jobs, wait_for
        crew = Crew(store={str(store)!r}, name="kept", worker_classes=["subprocess"])
        (worker,) = crew.recruit(workers=1)
        done = crew.send(jobs.mark_then_sleep, args=({str(runs)!r}, "done", 0))
        wait_for(crew.receivable, timeout=120, what="the answer read (not received)")
        prefix = protocol.worker_prefix("kept", worker.name, 1)
        first = crew.store.list(prefix)
        os.kill(worker.backend.pid, 9)
        wait_for(lambda: set(crew.store.list(prefix)) - set(first), timeout=120,
                 what="the dead worker's clean-up (a stop record after its records went)")
        with open({str(report)!r}, "w") as out:
            json.dump({{"done": done, "pid": worker.backend.pid}}, out)
        os.kill(os.getpid(), 9)
        """
    )
    with open(tmp_path / "first.log", "wb") as log:
        subprocess.run([sys.executable, "-c", script], timeout=300, stdout=log, stderr=log)
    assert report.exists(), (tmp_path / "first.log").read_text()
    first = json.loads(report.read_text())
    assert process_gone(first["pid"])
    with Crew(store=str(store), name="kept", worker_classes=["subprocess"]) as crew:
        assert crew.resumed
        results = list(crew.results(timeout=120))
    assert [(r.id, r.ok) for r in results] == [(first["done"], True)]
    assert jobs.runs_of(runs) == {"done": 1}, "the job ran again"
