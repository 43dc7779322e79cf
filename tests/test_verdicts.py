"""Results a named crew's controller makes itself (a crash, a refused launch, a cancel, a dismissal)
are stored before anyone has them: a controller killed before ``receive`` leaves them to the next
one, which delivers them and runs none of their jobs again. Real processes, ``kill -9``.

The same on every store (a crash and a cancel): ``CrewContract``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import pytest

from crew_core import Crew, StoreError, WorkerCrashedError, WorkerLaunchError, WorkerLostError
from crew_core.errors import JobCancelledError
from crew_core.testing import jobs, process_gone, wait_for
from crew_local import LocalStore, SubprocessWorker


@pytest.fixture(autouse=True)
def private_keys(tmp_path, monkeypatch):
    """The crew's key file, shared by the killed controller and the next one."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("CREW_SECRET", raising=False)


def _killed_controller(tmp_path: Path, body: str) -> dict[str, int]:
    """Run a controller of crew "nightly" that does ``body``, writes ``report`` (a dict of job ids)
    and is killed with SIGKILL before it receives anything; return the report."""
    script = textwrap.dedent(
        """
        import json, os, sys
        from crew_core import Crew, WorkerLaunchError
        from crew_core.testing import jobs, process_gone, wait_for
        from crew_local import SubprocessWorker
        STORE, RUNS = sys.argv[1], sys.argv[2]
        """
    ) + textwrap.dedent(body) + textwrap.dedent(
        """
        with open(sys.argv[3], "w") as out:
            json.dump(report, out)
        os.kill(os.getpid(), 9)
        """
    )  # fmt: skip
    report, log = tmp_path / "report.json", tmp_path / "first.log"
    with open(log, "wb") as out:  # not a pipe: a worker may keep it open
        command = [sys.executable, "-c", script, str(tmp_path / "store"), str(tmp_path / "runs"), str(report)]
        subprocess.run(command, timeout=120, stdout=out, stderr=out)
    assert report.exists(), log.read_text()
    return json.loads(report.read_text())  # type: ignore[no-any-return]


def _verdicts(store: Path) -> list[str]:
    folder = store / "nightly" / "verdicts"
    return os.listdir(folder) if folder.exists() else []


def _launches(crew: Crew) -> int:
    return sum(row["launches"] for row in crew.summary())


def test_a_crash_result_is_delivered_by_the_next_controller_and_the_job_never_runs_again(tmp_path):
    first = _killed_controller(tmp_path, """
        crew = Crew(store=STORE, name="nightly", worker_classes=["subprocess"], max_tries=2)
        crew.recruit(workers=1)
        report = {"doomed": crew.send(jobs.mark_then_die, args=(RUNS, "doomed"))}
        wait_for(crew.receivable, timeout=60, what="the crash result")  # out only once stored
        """)  # fmt: skip
    store, runs = tmp_path / "store", tmp_path / "runs"
    assert jobs.runs_of(runs) == {"doomed": 2} and len(_verdicts(store)) == 1
    with Crew(store=str(store), name="nightly", worker_classes=["subprocess"], max_tries=2) as crew:
        assert crew.resumed
        result = crew.receive(timeout=60)
        assert (result.id, result.status, result.tries) == (first["doomed"], "crash", 2)
        assert isinstance(result.error, WorkerCrashedError) and "max_tries=2" in str(result.error)
        assert result.worker == "subprocess-1"
        assert crew.receive(timeout=0) is None
        wait_for(lambda: not _verdicts(store), timeout=30, what="the verdict to go once a receipt covers it")
        assert _launches(crew) == 0  # nothing to run
    assert jobs.runs_of(runs) == {"doomed": 2}  # the job did not crash a third worker
    assert os.listdir(store) == []


def test_cancelled_jobs_come_back_cancelled_and_never_run_again(tmp_path):
    first = _killed_controller(tmp_path, """
        crew = Crew(store=STORE, name="nightly", worker_classes=["subprocess"])
        crew.recruit(workers=1)
        report = {"running": crew.send(jobs.mark_then_sleep, args=(RUNS, "running", 600)),
                  "waiting": crew.send(jobs.mark_then_sleep, args=(RUNS, "waiting", 0))}
        wait_for(lambda: "running" in jobs.runs_of(RUNS), timeout=60, what="the first job to start")
        assert sorted(crew.cancel(tags=())) == sorted(report.values())  # returns once they are stored
        """)  # fmt: skip
    store, runs = tmp_path / "store", tmp_path / "runs"
    assert len(_verdicts(store)) == 1  # both in one write
    with Crew(store=str(store), name="nightly", worker_classes=["subprocess"]) as crew:
        assert crew.resumed
        results = {r.id: r for r in crew.results(timeout=60)}
        assert sorted(results) == sorted(first.values())
        assert all(r.status == "cancelled" and isinstance(r.error, JobCancelledError) for r in results.values())
        assert _launches(crew) == 0
    assert jobs.runs_of(runs) == {"running": 1}  # the waiting one never started, the running one never again
    assert os.listdir(store) == []


class Refused(SubprocessWorker):
    """A backend that never has room; the killed controller's script defines its twin."""

    worker_class = "refused"
    starts = 0

    def start(self, launch):
        type(self).starts += 1
        raise WorkerLaunchError("no capacity (simulated)")


def test_a_job_whose_launches_were_refused_is_not_tried_again(tmp_path):
    first = _killed_controller(tmp_path, """
        class Refused(SubprocessWorker):
            worker_class = "refused"
            def start(self, launch):
                raise WorkerLaunchError("no capacity (simulated)")

        def refused_result():
            try:
                return crew.receivable()
            except WorkerLaunchError:  # each refusal is reported too
                return False

        crew = Crew(store=STORE, name="nightly", worker_classes=[Refused], max_tries=2)
        crew.recruit(workers=1)
        report = {"never": crew.send(jobs.mark_then_sleep, args=(RUNS, "never", 0))}
        wait_for(refused_result, timeout=60, what="the job to give up on its refused launches")
        """)  # fmt: skip
    with Crew(store=str(tmp_path / "store"), name="nightly", worker_classes=[Refused], max_tries=2) as crew:
        assert crew.resumed and not crew.workers["refused-1"].up()  # never started: nothing to adopt
        result = crew.receive(timeout=60)
        assert (result.id, result.status) == (first["never"], "error")
        assert isinstance(result.error, WorkerLaunchError) and "never ran" in str(result.error)
    assert Refused.starts == 0  # the next controller tried no launch
    assert jobs.runs_of(tmp_path / "runs") == {}
    assert os.listdir(tmp_path / "store") == []


def test_jobs_lost_with_a_dismissed_worker_stay_lost(tmp_path):
    first = _killed_controller(tmp_path, """
        crew = Crew(store=STORE, name="nightly", worker_classes=["subprocess"])
        crew.recruit(workers=1)
        crew.recruit(workers=1, tags="gpu")
        report = {"running": crew.send(jobs.mark_then_sleep, args=(RUNS, "running", 600), tags="gpu"),
                  "waiting": crew.send(jobs.mark_then_sleep, args=(RUNS, "waiting", 0), tags="gpu")}
        wait_for(lambda: "running" in jobs.runs_of(RUNS), timeout=60, what="the first job to start")
        crew.dismiss(tags="gpu")  # no other worker carries "gpu"
        wait_for(crew.receivable, timeout=60, what="the lost jobs' results")
        """)  # fmt: skip
    with Crew(store=str(tmp_path / "store"), name="nightly", worker_classes=["subprocess"]) as crew:
        assert crew.resumed
        results = {r.id: r for r in crew.results(timeout=60)}
        assert sorted(results) == sorted(first.values())
        assert all(isinstance(r.error, WorkerLostError) for r in results.values())
    assert jobs.runs_of(tmp_path / "runs") == {"running": 1}


def test_an_adopted_worker_is_told_again_to_stop_a_job_its_dead_controller_cancelled(tmp_path):
    """The cancel's result was stored but its Cancel record never reached the worker (the store
    refused task writes, then the controller was killed): the next controller writes it again."""
    first = _killed_controller(tmp_path, """
        from crew_core import StoreError
        from crew_local import LocalStore

        class TasksRefused(LocalStore):
            refuse = False
            def put(self, key, data):
                if self.refuse and "/workers/" in key:
                    raise StoreError("task records refused (simulated)")
                super().put(key, data)

        os.makedirs(RUNS)
        store = TasksRefused(STORE)
        crew = Crew(store=store, name="nightly", worker_classes=["subprocess"])
        [worker] = crew.recruit(workers=1, detached=True)  # outlives this controller, to be adopted
        started, stopped = os.path.join(RUNS, "started"), os.path.join(RUNS, "stopped")
        job = crew.send(jobs.sleep_noting_stop, args=(started, stopped, 600))
        wait_for(lambda: os.path.exists(started), timeout=60, what="the job to start")
        store.refuse = True
        assert crew.cancel(job) == [job]  # its result is stored, its Cancel record is not
        report = {"job": job, "pid": worker.backend.pid}
        """)  # fmt: skip
    stopped = tmp_path / "runs" / "stopped"
    assert not stopped.exists()  # the job runs on, its worker told nothing
    with Crew(store=str(tmp_path / "store"), name="nightly", worker_classes=["subprocess"]) as crew:
        assert crew.resumed and crew.workers["subprocess-1"].up()  # adopted
        result = crew.receive(timeout=60)
        assert (result.id, result.status) == (first["job"], "cancelled")
        wait_for(lambda: stopped.exists() and stopped.read_text() == "cancelled", timeout=60,
                 what="the adopted worker to stop the cancelled job")  # fmt: skip
    wait_for(partial(process_gone, first["pid"]), timeout=60, what="the adopted worker to leave")


def test_a_named_crews_cancel_writes_once_and_its_results_are_deleted_once_received(tmp_path):
    store = tmp_path / "store"
    with Crew(store=str(store), name="nightly", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        ids = [crew.send(jobs.sleep_then, args=(600,)) for _ in range(3)]
        assert sorted(crew.cancel(tags=())) == ids
        assert len(_verdicts(store)) == 1  # one object for the three, written before cancel returned
        assert sorted(r.id for r in crew.results(timeout=0)) == ids  # at once: they are stored
        wait_for(lambda: not _verdicts(store), timeout=30, what="the verdict to go once a receipt covers it")


def test_an_unnamed_crew_stores_nothing_for_the_results_it_makes(make_crew, tmp_path):
    crew = make_crew(store=str(tmp_path / "store"))
    crew.recruit(workers=1)
    job = crew.send(jobs.sleep_then, args=(600,))
    crew.cancel(job)
    result = crew.receive(timeout=0)
    assert (result.id, result.status) == (job, "cancelled")
    assert not [key for key in crew.store.list("") if "/verdicts/" in key]


class VerdictsRefused(LocalStore):
    """A store that refuses the controller's verdicts until ``down`` is False."""

    down = True
    refused = 0

    def put(self, key, data):
        if self.down and "/verdicts/" in key:
            self.refused += 1
            raise StoreError("verdicts refused (simulated outage)")
        super().put(key, data)


def test_a_result_the_store_refuses_waits_for_the_store_and_is_not_lost(tmp_path):
    store = VerdictsRefused(tmp_path / "store")
    with Crew(store=store, name="nightly", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        job = crew.send(jobs.sleep_then, args=(600,))
        assert crew.cancel(job) == [job]  # cancelled all the same: its result waits to be stored
        with pytest.raises(StoreError, match="simulated outage"):
            crew.receivable()  # not handed out unstored: the store's error instead
        store.down = False

        def cancelled():
            try:
                return crew.receive(timeout=0.1)
            except StoreError:  # a failure reported while the store refused
                return None

        result = wait_for(cancelled, timeout=60, what="the result once the store takes it")
        assert (result.id, result.status) == (job, "cancelled") and store.refused >= 1
