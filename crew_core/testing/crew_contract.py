"""The crew protocol over a given store, with real worker processes, as a pytest suite to subclass.

A store plugin runs it to show that crews work through its store: prefetched batches of a killed
worker run elsewhere exactly once, a long backlog on many workers comes back whole and once, a
batch queued behind a job that overruns is taken back for an idle worker, objects put once
reach every job, forged objects run nothing, a job outlives its crew's lease deleted over and
over, ``close()`` ends busy and idle workers at once, ``crew stop`` refuses a crew whose lease is
fresh and ends a named crew's run for good, a named crew whose controller is killed goes on
under a new one, adopting its workers and delivering the results the dead one made itself but
none the user received (their objects put back, after two crashes), and of many controllers that
open one named crew at the same instant (a new one, or one to resume) exactly one goes on.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from crew_core import Crew, CrewError, Result
from crew_core.durable import leftovers
from crew_core.durable.leftovers import stop_crew
from crew_core.plugin.registry import default_plugins, open_store, store_from_config, store_spec
from crew_core.plugin.store import Store
from crew_core.testing import jobs
from crew_core.testing.polling import process_gone, wait_for
from crew_core.testing.together import READY_SET_GO, run_together
from crew_core.wire import protocol
from crew_core.wire.serialize import FunctionCache, dump_args

#: What a controller racing others to open a named crew runs (see ``_race_to_open``).
_RACER = f"""
import json, os, sys
from crew_core import Crew, CrewError
from crew_core.plugin.registry import store_from_config
from crew_core.testing import jobs, wait_for
store, folder, racers, scale = json.loads(sys.argv[1])
store = store if isinstance(store, str) else store_from_config(store)
{READY_SET_GO}
try:
    crew = Crew(store=store, name="contested", worker_classes=["subprocess"])
except CrewError as exc:
    outcome = {{"won": False, "error": str(exc)}}
else:
    outcome = {{"won": True, "resumed": crew.resumed}}
os.close(os.open(os.path.join(folder, "tried", str(os.getpid())), os.O_CREAT | os.O_EXCL))
if outcome["won"]:  # every racer tries before the winner's close() could let one in again
    wait_for(lambda: len(os.listdir(os.path.join(folder, "tried"))) == racers, 120 * scale, what="every racer")
    with crew:
        crew.recruit(workers=1)
        if not crew.resumed:
            for n in range(10):
                crew.send(jobs.mark_then_sleep, args=(os.path.join(folder, "runs"), f"job{{n}}", 0))
        outcome["results"] = sorted(r.value for r in crew.results(timeout=120 * scale))
print(json.dumps(outcome))
"""


class CrewContract:
    """Subclass and provide a ``crew_store`` fixture: what ``Crew(store=...)`` gets (a URL or a
    :class:`Store`) reaching a fresh location. Optional: ``timeout_scale`` for slow backends.

    Workers are local subprocesses, so a test can kill one; they rebuild the store from its
    ``config()`` as any remote worker would.
    """

    @pytest.fixture
    def timeout_scale(self) -> float:
        return 1.0

    @pytest.fixture
    def make_crew(self, crew_store: Any) -> Iterator[Callable[..., Crew]]:
        crews: list[Crew] = []

        def make(**settings: Any) -> Crew:
            crew = Crew(store=crew_store, worker_classes=["subprocess"], **settings)
            crews.append(crew)
            return crew

        yield make
        for crew in crews:
            crew.close()

    def test_prefetched_jobs_of_a_killed_worker_run_elsewhere_exactly_once(
        self, make_crew: Callable[..., Crew], tmp_path: Path, timeout_scale: float
    ) -> None:
        crew = make_crew()
        first, _ = crew.recruit(workers=2)
        for _ in range(2):  # measure the kind's duration: prefetching needs it
            crew.send(jobs.mark_then_sleep, args=(str(tmp_path / "warm"), "warm", 0.3))
        assert len(list(crew.results(timeout=120 * timeout_scale))) == 2
        runs = tmp_path / "runs"
        runs.mkdir()
        ids = {crew.send(jobs.mark_then_sleep, args=(str(runs), f"job{n}", 0.6)): f"job{n}" for n in range(6)}
        manager = crew._manager

        def prefetched() -> bool:
            with manager.lock:
                return len(manager.ledger.tasks_of(first.name)) == 2

        wait_for(prefetched, timeout=60 * timeout_scale, what="a batch queued behind the running one")
        pid = first.backend.pid  # type: ignore[attr-defined]  # crew-local SubprocessWorker.pid, not on Worker
        wait_for(lambda: any(f.endswith(f".{pid}") for f in os.listdir(runs)), timeout=60 * timeout_scale,
                 what="the first worker to start a job")  # fmt: skip
        os.kill(pid, signal.SIGKILL)
        results = {}
        for result in crew.results(timeout=180 * timeout_scale):
            assert result.id not in results, "a result was delivered twice"
            results[result.id] = result
        assert set(results) == set(ids) and all(r.ok for r in results.values())
        killed = [name for name in os.listdir(runs) if name.endswith(f".{pid}")]
        assert len(killed) == 1, killed  # it ran one job; the one queued behind it never started there
        counts = jobs.runs_of(runs)
        interrupted = killed[0].split(".")[0]
        assert counts[interrupted] == 2, counts  # charged and run again
        assert all(n == 1 for name, n in counts.items() if name != interrupted), counts  # the rest exactly once
        by_name = {ids[job]: result for job, result in results.items()}
        assert by_name[interrupted].tries == 2
        assert all(r.tries == 1 for name, r in by_name.items() if name != interrupted)

    def test_a_long_backlog_on_many_workers_comes_back_whole_and_once(
        self, make_crew: Callable[..., Crew], timeout_scale: float
    ) -> None:
        crew = make_crew()
        crew.recruit(workers=24)
        ids = [crew.send(jobs.double, args=(n,)) for n in range(1000)]
        seen: dict[int, Any] = {}
        for result in crew.results(timeout=600 * timeout_scale):
            assert result.id not in seen, "a result was delivered twice"
            seen[result.id] = result.value
        assert sorted(seen) == ids
        assert [seen[job] for job in ids] == [2 * n for n in range(1000)]
        assert crew.receive() is None

    def test_a_batch_queued_behind_an_overrunning_job_goes_to_an_idle_worker(
        self, make_crew: Callable[..., Crew], tmp_path: Path, timeout_scale: float
    ) -> None:
        crew = make_crew(heartbeat_interval=0.2, heartbeat_timeout=600)
        crew.recruit(workers=2)
        crew.send(jobs.sleep_then, args=(0.2,))  # learned: sleep_then takes 0.2 s
        crew.send(jobs.mark_then_sleep, args=(str(tmp_path), "warm", 1.0))  # mark_then_sleep: 1 s
        assert len(list(crew.results(timeout=120 * timeout_scale))) == 2
        crew.send(jobs.sleep_then, args=(120, "long"))  # estimated at 0.2 s: a misjudged job
        medium = crew.send(jobs.mark_then_sleep, args=(str(tmp_path), "medium", 1.0))
        short = crew.send(jobs.sleep_then, args=(0.05, "short"))  # queued behind the job said to end first
        results: dict[int, Result] = {}
        while short not in results:  # the long job is still running: it cannot be what comes
            result = crew.receive(timeout=120 * timeout_scale)
            assert result is not None and result.value != "long", results
            results[result.id] = result
        assert results[short].value == "short"
        assert results[short].worker == results[medium].worker  # taken back, run by the worker that idled

    def test_an_object_put_once_reaches_every_job(
        self, make_crew: Callable[..., Crew], timeout_scale: float
    ) -> None:
        crew = make_crew()
        crew.recruit(workers=2)
        data = bytes(range(256)) * 4096  # 1 MiB
        ref = crew.put(data)
        assert crew.put(data) == ref  # content-addressed: nothing uploaded again
        # A buffer of 2 MiB goes out of band: stored apart (put_buffer), read with get_buffer, checked.
        apart = crew.put(pickle.PickleBuffer(bytearray(data * 2)))
        for n in range(10):
            crew.send(jobs.length_and_byte, args=(ref, n), kwargs={})
            crew.send(jobs.length_and_byte, args=([ref], n))  # inside another object too
            crew.send(jobs.length_and_byte, args=(apart, n))
        results = list(crew.results(timeout=120 * timeout_scale))
        assert len(results) == 30 and all(r.ok for r in results), [r.error for r in results if not r.ok]
        expected = [(len(data), n) for n in range(10)] * 2 + [(2 * len(data), n) for n in range(10)]
        assert sorted(r.value for r in results) == sorted(expected)


    # ------------------------------------------------------------------ who can write the store
    def test_forged_task_records_run_nothing(
        self, make_crew: Callable[..., Crew], tmp_path: Path, timeout_scale: float
    ) -> None:
        """Someone with write access to the store plants calls for a worker: none of them runs.

        Forged records where the next real tasks go do not hold those tasks up: the worker answers
        a refused record empty, and the crew skips a number answered before it wrote it (a task
        written over a refused key would never be read). The heartbeat timeout is long, so a task
        found unread only then would fail the test.
        """
        crew = make_crew(heartbeat_interval=0.5, heartbeat_timeout=600)
        [worker] = crew.recruit(workers=1)
        crew.send(jobs.double, args=(1,))
        result = crew.receive(timeout=120 * timeout_scale)
        assert result is not None and result.value == 2
        manager = crew._manager
        with manager.lock:
            record = manager.records[worker.name]
            prefix, next_seq = record.prefix, manager.ledger.issued + 1
        marker = tmp_path / "forged-call-ran"
        digest, function, _ = FunctionCache().dump(jobs.touch_then_sleep)
        call = protocol.Call(1, digest, dump_args(jobs.touch_then_sleep, (str(marker), 0), {}))
        for seq in (next_seq, next_seq + 1, 10**11):  # where the next real task will go, and far after
            batch = protocol.Batch(seq, (call,), {digest: function})
            crew.store.put(protocol.task_key(prefix, seq), protocol.encode_task(batch))  # no signature
        crew.store.put(protocol.task_key(prefix, 10**11 + 1), pickle.dumps(_Trap(str(marker))))  # a bare pickle
        for n in range(3):
            crew.send(jobs.double, args=(n,))
        results = list(crew.results(timeout=120 * timeout_scale))
        assert sorted(r.value for r in results) == [0, 2, 4] and all(r.ok for r in results)
        assert not marker.exists(), "a forged task record ran on a worker"

    def test_forged_results_are_never_delivered_or_unpickled(
        self, make_crew: Callable[..., Crew], tmp_path: Path, timeout_scale: float
    ) -> None:
        crew = make_crew()
        crew.recruit(workers=1)
        started = tmp_path / "started"
        job = crew.send(jobs.touch_then_sleep, args=(str(started), 1.0, "real"))
        wait_for(started.exists, timeout=120 * timeout_scale, what="the job to start")
        marker = tmp_path / "forged-result-unpickled"
        with crew._manager.lock:
            seqs = list(crew._manager.ledger.tasks)
        for seq in seqs:  # a forged answer for the running task, written before the worker's own
            outcome = pickle.dumps(("success", _Trap(str(marker)), None, "", [], 0.0, None))
            forged = protocol.ResultBatch(seq, "subprocess-1", 1, ((job, outcome),))
            crew.store.put(protocol.result_key(crew.id, seq), protocol.encode_result(forged))
        result = crew.receive(timeout=180 * timeout_scale)
        assert result is not None and (result.id, result.status, result.value) == (job, "success", "real")
        assert not marker.exists(), "the controller unpickled a forged result"
        assert crew.receive(timeout=0) is None

    def test_a_forged_put_object_is_refused_by_name(
        self, make_crew: Callable[..., Crew], tmp_path: Path, timeout_scale: float
    ) -> None:
        crew = make_crew()
        crew.recruit(workers=1)
        ref = crew.put(b"the real data")
        marker = tmp_path / "forged-object-unpickled"
        crew.store.put(protocol.data_key(crew.id, ref.digest), pickle.dumps(_Trap(str(marker))))
        crew.send(jobs.length_and_byte, args=(ref, 0))
        result = crew.receive(timeout=120 * timeout_scale)
        assert result is not None and result.status == "error"
        assert "not signed with this crew's secret" in str(result.error) and ref.digest in str(result.error)
        assert not marker.exists()


    # ------------------------------------------------------------------ the lease, close and crew stop
    def test_a_job_outlives_its_crews_lease_deleted_every_fifth_of_a_second(
        self, make_crew: Callable[..., Crew], timeout_scale: float
    ) -> None:
        """Issue #20: someone who can write the store deletes the lease over and over. The worker
        takes that for a lease that stands still, not for a closed crew: its job, longer than two
        lease periods and shorter than ``lease_timeout``, is not cut short (it was: a "crash" that
        said "exit code 0")."""
        crew = make_crew(lease_timeout=12, max_tries=1)  # the worker looks at the lease every 3 s
        crew.recruit(workers=1)
        raw, key, done = crew.store, protocol.lease_key(crew.id), threading.Event()

        def delete_the_lease() -> None:
            while not done.wait(0.2):
                raw.delete([key])

        deleter = threading.Thread(target=delete_the_lease, name="lease-deleter")
        deleter.start()
        try:
            job = crew.send(jobs.sleep_then, args=(7.0, "survived"))
            result = crew.receive(timeout=120 * timeout_scale)
        finally:
            done.set()
            deleter.join()
        assert result is not None and result.id == job, result
        assert (result.status, result.value, result.tries) == ("success", "survived", 1), result.error

    def test_close_ends_busy_and_idle_workers_at_once(
        self, crew_store: Any, tmp_path: Path, timeout_scale: float
    ) -> None:
        """The lease going proves nothing to a worker any more: ``close()`` ends its workers by
        itself (a stop request to an idle one, a kill for a busy one), within seconds."""
        crew = Crew(store=crew_store, worker_classes=["subprocess"], lease_timeout=600, stop_grace=1.0)
        try:
            workers = crew.recruit(workers=2)
            started = tmp_path / "started"
            crew.send(jobs.touch_then_sleep, args=(str(started), 600))
            self._wait(started.exists, timeout_scale, "the long job to start")
            self._double(crew, 1, timeout_scale)
            pids = [worker.backend.pid for worker in workers]  # type: ignore[attr-defined]  # crew-local's
            assert all(pids), pids  # one busy, one idle
        finally:
            crew.close()
        for pid in pids:
            wait_for(partial(process_gone, pid), timeout=15 * timeout_scale, what=f"worker {pid} to end at close()")

    def test_crew_stop_refuses_a_crew_whose_lease_is_fresh_unless_forced(
        self, crew_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timeout_scale: float
    ) -> None:
        """Issue #20: ``crew stop`` run on another machine deleted a crew whose lease had been
        renewed a moment ago: the live crew stalled and lost its journal. It is refused, saying
        how old the lease is; ``--force`` still stops it, ending its worker at once."""
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        monkeypatch.setattr(leftovers, "socket", SimpleNamespace(gethostname=lambda: "another-machine"))
        raw = self._raw_store(crew_store)
        try:
            with Crew(store=crew_store, name="live", worker_classes=["subprocess"], lease_timeout=600) as crew:
                [worker] = crew.recruit(workers=1)
                self._double(crew, 1, timeout_scale)
                with pytest.raises(CrewError, match=r"lease was renewed \d+ s ago.*lease_timeout of 600 s.*--force"):
                    stop_crew(raw, "live", worker_class=default_plugins().workers.get)
                self._double(crew, 2, timeout_scale)  # the crew goes on, untouched
                pid = worker.backend.pid  # type: ignore[attr-defined]  # crew-local's SubprocessWorker
                stop_crew(raw, "live", force=True, worker_class=default_plugins().workers.get)
                wait_for(partial(process_gone, pid), timeout=15 * timeout_scale, what="crew stop to end the worker")
            assert raw.list("live/") == []  # what its controller wrote since went at close()
        finally:
            raw.close()

    def test_a_stopped_run_put_back_from_a_copy_is_refused_here(
        self, crew_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timeout_scale: float
    ) -> None:
        """Issue #20: ``crew stop`` ends a named crew's run for good, as ``close()`` does. With one
        ``CREW_SECRET`` for every run (as for resuming on another machine), a copy of the stopped
        run put back resumed and delivered its old values; now this machine refuses it."""
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        monkeypatch.setenv("CREW_SECRET", "ab" * 32)
        raw = self._raw_store(crew_store)
        try:
            with pytest.raises(_Crash), Crew(store=crew_store, name="stopped", worker_classes=["subprocess"]) as crew:
                crew.recruit(workers=1)
                crew.send(jobs.double, args=(1,))
                self._wait(lambda: sum(row["jobs"] for row in crew.summary()) == 1, timeout_scale, "the answer")
                copy = {key: raw.get(key) for key in raw.list("stopped/") if "/inbox/beat." not in key}
                raise _Crash  # the controller is gone; its worker and objects stay
            stop_crew(raw, "stopped", force=True, worker_class=default_plugins().workers.get)  # its lease names us
            assert raw.list("stopped/") == []
            for key, data in copy.items():
                raw.put(key, data)
            with pytest.raises(CrewError, match="holds a run that was closed on this machine"):
                Crew(store=crew_store, name="stopped", worker_classes=["subprocess"])
            stop_crew(raw, "stopped", force=True)
        finally:
            raw.close()

    # ------------------------------------------------------------------ a controller that dies
    def test_a_named_crew_resumes_after_its_controller_is_killed(
        self, crew_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timeout_scale: float
    ) -> None:
        """kill -9 of the controller mid-run; a new one resumes by name: nothing lost, nothing run twice,
        the live workers adopted (not launched again); only the last results handed out (since the last
        receipt was written: on a local store the last one) may be delivered again."""
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # the crew's key file, shared by both
        runs, report = tmp_path / "runs", tmp_path / "first.json"
        script = textwrap.dedent(
            f"""
            import json, os
            from crew_core import Crew
            from crew_core.testing import jobs
            crew = Crew(store={crew_store!r}, name="resumed", worker_classes=["subprocess"])
            workers = crew.recruit(workers=2, detached=True)
            ids = [crew.send(jobs.mark_then_sleep, args=({str(runs)!r}, f"job{{n}}", 0.2)) for n in range(30)]
            got = [crew.receive(timeout=120).id for _ in range(5)]
            pids = [w.backend.pid for w in workers]
            with open({str(report)!r}, "w") as out:
                json.dump({{"ids": ids, "got": got, "pids": pids}}, out)
            os.kill(os.getpid(), 9)
            """
        )
        with open(tmp_path / "first.log", "wb") as log:  # not a pipe: the detached workers keep it open
            subprocess.run([sys.executable, "-c", script], timeout=300 * timeout_scale, stdout=log, stderr=log)
        assert report.exists(), (tmp_path / "first.log").read_text()
        first = json.loads(report.read_text())
        with Crew(store=crew_store, name="resumed", worker_classes=["subprocess"]) as crew:
            assert crew.resumed and sorted(crew.workers) == ["subprocess-1", "subprocess-2"]
            results = list(crew.results(timeout=300 * timeout_scale))
            assert all(r.ok for r in results), [r.error for r in results if not r.ok]
            with crew._manager.lock:  # adopted, not launched again
                assert [record.incarnation for record in crew._manager.records.values()] == [1, 1]
        second = [r.id for r in results]
        delivered = first["got"] + second
        assert sorted(set(delivered)) == sorted(first["ids"]), "a job was lost"
        again = [job for job in first["got"] if job in second]  # handed out after the last receipt was written
        assert again == first["got"][len(first["got"]) - len(again) :], "an older received result came again"
        assert len(second) == len(set(second))
        assert set(jobs.runs_of(runs).values()) == {1}, f"jobs ran twice: {jobs.runs_of(runs)}"
        for pid in first["pids"]:  # closing the resumed crew ended the adopted workers
            wait_for(partial(process_gone, pid), timeout=60 * timeout_scale, what=f"adopted worker {pid} to end")

    def test_results_the_controller_made_outlive_it(
        self, crew_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timeout_scale: float
    ) -> None:
        """A crash after ``max_tries`` and two cancels, made by a controller killed before anyone
        received them: the next one delivers them and runs none of the jobs again; once received
        they leave the store."""
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        runs, report = tmp_path / "runs", tmp_path / "first.json"
        script = textwrap.dedent(
            f"""
            import json, os
            from crew_core import Crew
            from crew_core.testing import jobs, wait_for
            crew = Crew(store={crew_store!r}, name="made", worker_classes=["subprocess"], max_tries=2)
            crew.recruit(workers=1)
            doomed = crew.send(jobs.mark_then_die, args=({str(runs)!r}, "doomed"))
            wait_for(crew.receivable, timeout={120 * timeout_scale}, what="the crash result")  # out once stored
            running = crew.send(jobs.mark_then_sleep, args=({str(runs)!r}, "running", 600))
            waiting = crew.send(jobs.mark_then_sleep, args=({str(runs)!r}, "waiting", 0))
            wait_for(lambda: "running" in jobs.runs_of({str(runs)!r}), timeout={120 * timeout_scale})
            crew.cancel(tags=())  # returns once the results are stored
            with open({str(report)!r}, "w") as out:
                json.dump({{"crash": [doomed], "cancelled": [running, waiting]}}, out)
            os.kill(os.getpid(), 9)
            """
        )
        with open(tmp_path / "first.log", "wb") as log:
            subprocess.run([sys.executable, "-c", script], timeout=300 * timeout_scale, stdout=log, stderr=log)
        assert report.exists(), (tmp_path / "first.log").read_text()
        first = json.loads(report.read_text())
        with Crew(store=crew_store, name="made", worker_classes=["subprocess"], max_tries=2) as crew:
            assert crew.resumed
            results = {r.id: r for r in crew.results(timeout=120 * timeout_scale)}
            assert {job: r.status for job, r in results.items()} == {
                job: status for status, ids in first.items() for job in ids
            }
            assert results[first["crash"][0]].tries == 2
            verdicts = protocol.verdict_prefix("made")
            wait_for(lambda: not crew.store.list(verdicts), timeout=60 * timeout_scale,
                     what="the stored results to go once received")  # fmt: skip
            assert sum(row["launches"] for row in crew.summary()) == 0  # nothing ran again
        assert jobs.runs_of(runs) == {"doomed": 2, "running": 1}


    def test_results_received_stay_received_when_their_objects_are_put_back_after_crashes(
        self, crew_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timeout_scale: float
    ) -> None:
        """Issue #20: someone who can write the store saves the journal and inbox objects of ten
        jobs and puts them back once the user has received their results (receipts written, the
        objects deleted), and the controller is killed. Neither the next controller nor the one
        after it, which finds them put back again, delivers any of the ten again (all ten came
        again, before)."""
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        report = tmp_path / "first.pickle"
        script = textwrap.dedent(
            f"""
            import os, pickle
            from crew_core import Crew, KeyNotFoundError
            from crew_core.plugin.registry import store_from_config
            from crew_core.testing import jobs, wait_for
            from crew_core.wire import protocol
            store = {self._portable(crew_store)!r}
            store = store if isinstance(store, str) else store_from_config(store)
            crew = Crew(store=store, name="received", worker_classes=["subprocess"])
            workers = crew.recruit(workers=2)
            with crew.batch():
                ids = [crew.send(jobs.double, args=(n,)) for n in range(10)]
            wait_for(lambda: sum(row["jobs"] for row in crew.summary()) == 10, {120 * timeout_scale},
                     what="every answer to be in the inbox")
            raw, saved = crew.store, {{}}
            for prefix in (protocol.journal_prefix("received"), protocol.inbox_prefix("received")):
                for key in raw.list(prefix):
                    try:
                        saved[key] = raw.get(key)
                    except KeyNotFoundError:
                        pass  # a beat, deleted meanwhile
            got = [r.id for r in crew.results(timeout={120 * timeout_scale})]

            def settled():  # no journal object or answer left: each went once a receipt covered it
                keys = raw.list(protocol.journal_prefix("received")) + raw.list(protocol.inbox_prefix("received"))
                return not [key for key in keys if key.rpartition("/")[2][:1].isdigit()]

            wait_for(settled, {120 * timeout_scale}, what="the objects of the received jobs to go")
            crew.send(jobs.double, args=(10,))  # and one more: rounds of deletes have passed since
            got.append(crew.receive(timeout={120 * timeout_scale}).id)
            wait_for(settled, {120 * timeout_scale}, what="the objects of the last job to go")
            with open({str(report)!r}, "wb") as out:
                pickle.dump({{"ids": ids, "got": got, "saved": saved, "pids": [w.backend.pid for w in workers]}}, out)
            os.kill(os.getpid(), 9)
            """
        )
        with open(tmp_path / "first.log", "wb") as log:  # not a pipe: the workers could hold it open
            subprocess.run([sys.executable, "-c", script], timeout=300 * timeout_scale, stdout=log, stderr=log)
        assert report.exists(), (tmp_path / "first.log").read_text()
        first = pickle.loads(report.read_bytes())
        assert sorted(first["got"][:10]) == first["ids"]
        assert any(key.startswith(protocol.journal_prefix("received")) for key in first["saved"])
        raw = self._raw_store(crew_store)
        try:
            for _ in range(2):  # the controller after the crash, and the one after that
                for key, data in first["saved"].items():
                    raw.put(key, data)
                with pytest.raises(_Crash), Crew(store=crew_store, name="received") as crew:
                    assert crew.resumed
                    again = crew.receive(timeout=60 * timeout_scale)  # None at once: nothing is in flight
                    assert again is None, f"job {again.id} was received before the crash, and delivered again"
                    self._wait(lambda: not self._answers_and_journal(raw, "received"), timeout_scale,
                               "the objects put back to be deleted")  # fmt: skip
                    raise _Crash  # this controller leaves the crew to the next one, as if it died
            with Crew(store=crew_store, name="received", worker_classes=["subprocess"]) as crew:
                assert crew.resumed and crew.receive(timeout=0) is None
        finally:
            raw.close()
        for pid in first["pids"]:  # they end with their controller's process
            wait_for(partial(process_gone, pid), timeout=60 * timeout_scale, what=f"worker {pid} to end")

    # ------------------------------------------------------------------ controllers at the same instant
    #: How many controllers race to open one named crew.
    racing_controllers = 6

    def test_of_controllers_opening_a_new_named_crew_at_once_one_goes_on(
        self, crew_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timeout_scale: float
    ) -> None:
        """The same script started several times at once: one runs the jobs, once; the others are
        told that another process is opening the crew."""
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # the crew's key file, shared by all
        winner = self._race_to_open(crew_store, tmp_path, timeout_scale)
        assert winner["resumed"] is False
        assert jobs.runs_of(tmp_path / "runs") == {f"job{n}": 1 for n in range(10)}
        with Crew(store=crew_store, name="contested") as again:  # the winner closed it: nothing left
            assert not again.resumed

    def test_of_controllers_resuming_a_named_crew_at_once_one_goes_on(
        self, crew_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timeout_scale: float
    ) -> None:
        """A controller is killed with ten jobs unfinished; several start at once to resume it: one
        does and runs each job once; the others are told that another process is opening the crew."""
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        runs, gate = tmp_path / "runs", tmp_path / "gate"  # no job gets past the gate before the race
        script = textwrap.dedent(
            f"""
            import os
            from crew_core import Crew
            from crew_core.plugin.registry import store_from_config
            from crew_core.testing import jobs, wait_for
            store = {self._portable(crew_store)!r}
            store = store if isinstance(store, str) else store_from_config(store)
            # A short lease: the worker looks at it, and so notices its controller is gone, every second.
            crew = Crew(store=store, name="contested", worker_classes=["subprocess"], lease_timeout=4)
            [worker] = crew.recruit(workers=1)
            with crew.batch():
                for n in range(10):
                    crew.send(jobs.mark_once_open, args=({str(gate)!r}, {str(runs)!r}, f"job{{n}}"))
            print(wait_for(lambda: worker.backend.pid, 120, what="the worker to start"), flush=True)
            os.kill(os.getpid(), 9)
            """
        )
        with open(tmp_path / "first.log", "w+") as log:  # not a pipe: the worker could hold it open
            subprocess.run([sys.executable, "-c", script], stdout=log, stderr=log, timeout=120 * timeout_scale)
            log.seek(0)
            output = log.read()
        pid = int(output.split()[0]) if output[:1].isdigit() else 0
        assert pid, output
        wait_for(partial(process_gone, pid), timeout=60 * timeout_scale, what="the dead controller's worker to end")
        gate.touch()
        winner = self._race_to_open(crew_store, tmp_path, timeout_scale)
        assert winner["resumed"] is True and len(winner["results"]) == 10
        assert jobs.runs_of(runs) == {f"job{n}": 1 for n in range(10)}

    def _race_to_open(self, crew_store: Any, tmp_path: Path, timeout_scale: float) -> dict[str, Any]:
        """Start :attr:`racing_controllers` processes that open crew "contested" at once; the winner
        recruits a worker, sends ten jobs unless it resumed, and closes the crew once every racer
        has tried. Check that exactly one won and the others were refused; return the winner's report."""
        (tmp_path / "tried").mkdir()
        arguments = json.dumps([self._portable(crew_store), str(tmp_path), self.racing_controllers, timeout_scale])
        command = [sys.executable, "-c", _RACER, arguments]
        racers = run_together([command] * self.racing_controllers, 300 * timeout_scale)
        for racer in racers:
            assert racer.returncode == 0, racer.stderr[-3000:]
        outcomes: list[dict[str, Any]] = [json.loads(racer.stdout) for racer in racers]
        winners = [outcome for outcome in outcomes if outcome["won"]]
        assert len(winners) == 1, f"{len(winners)} controllers opened the crew: {outcomes}"
        for outcome in outcomes:
            if not outcome["won"]:
                refused = outcome["error"]
                assert "another process is opening crew 'contested' right now" in refused or (
                    "crew 'contested' is open in process" in refused  # it came late enough to see a lease
                ), refused
        return winners[0]

    @staticmethod
    def _raw_store(crew_store: Any) -> Store:
        """Another :class:`Store` object on the same location as ``crew_store``: what someone who
        can write there reads and writes, without the crew's signatures."""
        if isinstance(crew_store, str):
            store, _ = open_store(default_plugins(), crew_store, {})
            return store  # type: ignore[no-any-return]
        return store_from_config(store_spec(crew_store))  # type: ignore[no-any-return]

    @staticmethod
    def _answers_and_journal(store: Store, crew_id: str) -> list[str]:
        """The journal objects and answers (not beats or exit notes) of crew ``crew_id``."""
        keys = store.list(protocol.journal_prefix(crew_id)) + store.list(protocol.inbox_prefix(crew_id))
        return [key for key in keys if key.rpartition("/")[2][:1].isdigit()]

    @staticmethod
    def _double(crew: Crew, n: int, timeout_scale: float) -> None:
        """Send a job and receive its result: the crew works."""
        job = crew.send(jobs.double, args=(n,))
        result = crew.receive(timeout=120 * timeout_scale)
        assert result is not None and (result.id, result.value) == (job, 2 * n), result

    @staticmethod
    def _wait(condition: Callable[[], Any], timeout_scale: float, what: str, timeout: float = 60.0) -> Any:
        return wait_for(condition, timeout=timeout * timeout_scale, what=what)

    @staticmethod
    def _portable(crew_store: Any) -> Any:
        """``crew_store`` as another process can use it: a URL or path as it is, a Store as its spec."""
        return crew_store if isinstance(crew_store, str) else store_spec(crew_store)


class _Crash(Exception):
    """Raised in a named crew's ``with`` block: its controller leaves the crew to the next one."""


class _Trap:
    """Unpickling it creates a file: proof that forged bytes were (or were not) unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))
