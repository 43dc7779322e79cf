"""Named, durable crews on the local store: names, keys, one controller at a time, what stays behind.

Resuming after a controller is killed is in ``test_fault_matrix.py`` (workers that end with it)
and in ``CrewContract`` (workers adopted, on every store).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from crew_core import Crew, CrewError, StoreError, WorkerLaunchError
from crew_core.testing import jobs, process_gone, wait_for
from crew_local import LocalStore, SubprocessWorker


def _die(crew: Crew) -> None:
    """As if the controller died: its workers and loop end, its objects stay in the store."""
    crew._manager.close()
    crew._closed = True


@pytest.fixture(autouse=True)
def private_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("CREW_SECRET", raising=False)
    return tmp_path / "state" / "crew" / "keys"


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        (42, TypeError, "name must be a string"),
        ("", ValueError, "1-63 lower-case"),
        ("Nightly", ValueError, "1-63 lower-case"),
        ("a/b", ValueError, "1-63 lower-case"),
        ("x" * 64, ValueError, "1-63 lower-case"),
        ("0123456789ab", ValueError, "looks like the id of an unnamed crew"),
    ],
)
def test_bad_names_are_refused_before_the_store_is_touched(tmp_path, name, error, match):
    with pytest.raises(error, match=match):
        Crew(store=str(tmp_path / "store"), name=name)
    assert not (tmp_path / "store").exists()


def test_a_named_crew_runs_and_close_removes_its_objects_and_key(tmp_path, private_keys):
    store = tmp_path / "store"
    with Crew(store=str(store), name="nightly", worker_classes=["subprocess"]) as crew:
        assert not crew.resumed and crew.id == "nightly"
        crew.recruit(workers=2)
        ids = [crew.send(jobs.double, args=(n,)) for n in range(20)]
        assert sorted(r.value for r in crew.results(timeout=60)) == [2 * n for n in range(20)]
        assert ids == list(range(1, 21))
        assert len(list(private_keys.iterdir())) == 1
        assert os.stat(next(private_keys.iterdir())).st_mode & 0o777 == 0o600
    assert os.listdir(store) == [] and list(private_keys.iterdir()) == []
    with Crew(store=str(store), name="nightly") as again:  # closed: a new crew, not a resumed one
        assert not again.resumed


def test_one_controller_at_a_time(tmp_path):
    store = str(tmp_path / "store")
    with Crew(store=store, name="nightly"):
        with pytest.raises(CrewError, match="is open in process"):
            Crew(store=store, name="nightly")
        with Crew(store=store, name="weekly"):  # another name: another crew
            pass


def test_resuming_with_another_key_says_so(tmp_path, monkeypatch):
    store = str(tmp_path / "store")
    crew = Crew(store=store, name="nightly")
    _die(crew)
    monkeypatch.setenv("CREW_SECRET", "ab" * 32)
    with pytest.raises(CrewError, match="not made with this key"):
        Crew(store=store, name="nightly")


def test_a_result_received_is_not_delivered_by_the_next_controller(tmp_path):
    store = str(tmp_path / "store")
    crew = Crew(store=store, name="nightly", worker_classes=["subprocess"])
    crew.recruit(workers=1)
    first, second, third = (crew.send(jobs.double, args=(n,)) for n in range(3))
    received = [crew.receive(timeout=60).id for _ in range(2)]
    wait_for(crew.receivable, what="the third result to come in")  # and stay unreceived
    _die(crew)
    with Crew(store=store, name="nightly", worker_classes=["subprocess"]) as resumed:
        assert resumed.resumed
        left = sorted(r.id for r in resumed.results(timeout=60))
        assert left == sorted({first, second, third} - set(received))
        assert resumed.send(jobs.double, args=(5,)) == 4  # ids go on
        assert resumed.receive(timeout=60).value == 10


def test_a_batch_of_sends_is_written_once_and_accepted_whole_or_not_at_all(tmp_path):
    store = tmp_path / "store"
    with Crew(store=str(store), name="nightly", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        with pytest.raises(RuntimeError, match="changed my mind"), crew.batch():
            crew.send(jobs.double, args=(1,))
            raise RuntimeError("changed my mind")
        assert "pending=0" in repr(crew) and crew.receive(timeout=0) is None  # none was accepted
        with crew.batch():
            ids = [crew.send(jobs.double, args=(n,)) for n in range(100)]
            assert not (store / "nightly" / "journal").exists()  # not yet: at the end of the block
        assert len(os.listdir(store / "nightly" / "journal")) == 1
        results = {r.id: r.value for r in crew.results(timeout=60)}
        assert results == {job: 2 * n for n, job in enumerate(ids)}


def _run(script: str, timeout: float = 120) -> None:
    subprocess.run([sys.executable, "-c", textwrap.dedent(script)], timeout=timeout, capture_output=True)


def test_an_exception_in_the_controller_leaves_the_crew_for_the_next_one(tmp_path):
    store = str(tmp_path / "store")
    _run(f"""
        from crew_core import Crew
        from crew_core.testing import jobs
        crew = Crew(store={store!r}, name="nightly", worker_classes=["subprocess"])
        crew.recruit(workers=1)
        with crew.batch():
            for n in range(5):
                crew.send(jobs.double, args=(n,))
        raise RuntimeError("the script failed")  # no close(): atexit must not end the named crew
        """)
    _run(f"""
        from crew_core import Crew
        from crew_core.testing import jobs
        with Crew(store={store!r}, name="nightly", worker_classes=["subprocess"]) as crew:
            assert crew.resumed
            raise RuntimeError("failed again, inside the with block")
        """)
    with Crew(store=store, name="nightly", worker_classes=["subprocess"]) as crew:
        assert crew.resumed
        assert sorted(r.value for r in crew.results(timeout=60)) == [0, 2, 4, 6, 8]


def test_a_crew_that_never_accepted_a_job_starts_afresh(tmp_path):
    store = str(tmp_path / "store")
    crew = Crew(store=store, name="nightly", worker_classes=["subprocess"])
    crew.recruit(workers=2)  # recruited, then the controller died before sending
    _die(crew)
    with Crew(store=store, name="nightly", worker_classes=["subprocess"]) as again:
        assert not again.resumed and again.workers == {}  # the script sends (and recruits) again


def test_ended_and_dismissed_workers_are_not_adopted(tmp_path):
    store = str(tmp_path / "store")
    crew = Crew(store=store, name="nightly", worker_classes=["subprocess"])
    [kept] = crew.recruit(workers=1)
    crew.recruit(workers=1, tags="gpu")
    crew.send(jobs.double, args=(1,))
    assert crew.receive(timeout=60).value == 2
    crew.dismiss(tags="gpu")
    crew.stop()
    wait_for(lambda: not kept.up(), what="the idle worker to stop")
    wait_for(lambda: not crew._manager._roster_updates, what="the roster to be written")
    crew._manager.abandon()  # as if the controller died now
    crew._closed = True
    with Crew(store=store, name="nightly", worker_classes=["subprocess"]) as again:
        assert again.resumed and sorted(again.workers) == ["subprocess-1"]  # the dismissed one is gone
        assert not again.workers["subprocess-1"].up()  # it had ended: nothing to adopt
        started = time.monotonic()
        again.send(jobs.double, args=(2,))
        assert again.receive(timeout=60).value == 4
        assert time.monotonic() - started < 30  # not held up waiting for a dead adopted worker


class Refused(SubprocessWorker):
    """A backend that never has room."""

    worker_class = "refused"

    def start(self, launch):
        raise WorkerLaunchError("no capacity (simulated)")


def test_a_worker_whose_launch_was_refused_is_not_adopted(tmp_path):
    store = str(tmp_path / "store")
    crew = Crew(store=store, name="nightly", worker_classes=[Refused])
    crew.recruit(workers=1)  # enrolled in the roster before its launch
    crew.send(jobs.double, args=(1,))
    with pytest.raises(WorkerLaunchError, match="no capacity"):
        wait_for(lambda: crew.receive(timeout=0.05), what="the refused launch to surface")
    wait_for(lambda: not crew._manager._roster_updates, what="the roster to be written")
    _die(crew)
    with Crew(store=store, name="nightly", worker_classes=[Refused]) as again:
        assert again.resumed and not again.workers["refused-1"].up()  # never started: nothing to adopt


def test_last_runs_objects_are_refused_in_this_run(tmp_path, monkeypatch):
    """Someone who copied an answer of an earlier run of the same name plants it in this one."""
    monkeypatch.setenv("CREW_SECRET", "ab" * 32)  # the same key, run after run
    store = tmp_path / "store"
    with Crew(store=str(store), name="nightly", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        crew.send(jobs.double, args=(24,))
        wait_for(crew.receivable, what="the first run's answer")
        [answer] = [p for p in (store / "nightly" / "inbox").iterdir() if p.name.isdigit()]
        stolen = (answer.name, answer.read_bytes())
    with Crew(store=str(store), name="nightly", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        started = tmp_path / "started"
        job = crew.send(jobs.touch_then_sleep, args=(str(started), 1.0, "tonight's"))
        wait_for(started.exists, what="tonight's job to start")
        (store / "nightly" / "inbox" / stolen[0]).write_bytes(stolen[1])  # same key: same sequence number
        result = crew.receive(timeout=60)
        assert (result.id, result.value) == (job, "tonight's")


def test_close_ends_a_busy_adopted_worker_on_its_backend(tmp_path, caplog):
    """An adopted worker mid-job does not answer a Stop: close() finds it on its backend by the
    crew's id and ends it, instead of leaving it running until it next looks at the lease."""
    store, started, out = str(tmp_path / "store"), tmp_path / "started", tmp_path / "out"
    script = textwrap.dedent(f"""
        import os, time
        from crew_core import Crew
        from crew_core.testing import jobs
        crew = Crew(store={store!r}, name="nightly", worker_classes=["subprocess"], lease_timeout=600)
        [worker] = crew.recruit(workers=1, detached=True)
        crew.send(jobs.touch_then_sleep, args=({str(started)!r}, 600))
        while not os.path.exists({str(started)!r}):
            time.sleep(0.01)
        print(worker.backend.pid, flush=True)
        os.kill(os.getpid(), 9)
        """)
    with open(out, "w") as log:  # not a pipe: the detached worker would hold it open
        subprocess.run([sys.executable, "-c", script], stdout=log, timeout=120, stdin=subprocess.DEVNULL)
    pid = int(out.read_text())
    crew = Crew(store=store, name="nightly", worker_classes=["subprocess"], lease_timeout=600, stop_grace=0.5)
    assert crew.resumed and crew.workers["subprocess-1"].busy()
    with caplog.at_level("INFO", logger="crew"):
        crew.close()
    assert "ended adopted worker 'subprocess-1' on its backend" in caplog.text
    wait_for(lambda: process_gone(pid), timeout=30, what="the adopted worker to be ended")


def test_a_worker_that_ends_with_its_dead_controller_takes_no_new_job(tmp_path):
    """Issue #24: after a kill -9 the next controller adopted a default (non-detached) worker and gave
    it a job; the worker then saw that its parent process had ended and left mid-job, and that job
    ran twice. Such a launch keeps what it holds but is given nothing new: each job runs once."""
    store, runs, out = str(tmp_path / "store"), tmp_path / "runs", tmp_path / "out"
    # The worker looks at its parent every heartbeat (5 s; the long lease never wakes it sooner):
    # killed just after its first job, the controller is resumed and sends the next jobs well
    # before the worker notices, and those jobs run past that moment.
    script = textwrap.dedent(f"""
        import os
        from crew_core import Crew
        from crew_core.testing import jobs
        crew = Crew(store={store!r}, name="nightly", worker_classes=["subprocess"], heartbeat_interval=5,
                    lease_timeout=600)
        [worker] = crew.recruit(workers=1)
        first = crew.send(jobs.double, args=(1,))
        assert crew.receive(timeout=60).value == 2
        print(worker.backend.pid, first, flush=True)
        os.kill(os.getpid(), 9)
        """)
    with open(out, "w") as log:  # not a pipe: the worker, which writes where its controller does, holds it
        subprocess.run([sys.executable, "-c", script], stdout=log, timeout=120, stdin=subprocess.DEVNULL)
    pid, first = map(int, out.read_text().split())
    with Crew(store=store, name="nightly", worker_classes=["subprocess"]) as crew:
        assert crew.resumed
        ids = [crew.send(jobs.mark_then_sleep, args=(str(runs), f"job{n}", 2.0)) for n in range(4)]
        results = {result.id: result for result in crew.results(timeout=120)}
    results.pop(first, None)  # handed out as the controller died, before its receipt: it may come again
    assert sorted(results) == sorted(ids) and all(result.ok for result in results.values())
    assert jobs.runs_of(runs) == {f"job{n}": 1 for n in range(4)}, f"jobs ran twice: {jobs.runs_of(runs)}"
    wait_for(lambda: process_gone(pid), timeout=30, what="the worker of the killed controller to leave")


def test_a_crew_left_by_another_protocol_version_is_refused_not_emptied(tmp_path):
    """Found by review: an older crew-core's journal was read as corrupt, and the crew resumed empty."""
    import pickle

    from crew_core.wire import protocol
    from crew_core.wire.signing import Sealed

    store = str(tmp_path / "store")
    crew = Crew(store=store, name="nightly", worker_classes=["subprocess"])
    crew.recruit(workers=1)
    crew.send(jobs.double, args=(1,))
    sealed = Sealed(crew.store, crew._manager.secret)
    [key] = crew.store.list(protocol.journal_prefix("nightly"))
    _die(crew)
    magic, _, kind, body = pickle.loads(sealed.get(key))
    older = pickle.dumps((magic, protocol.PROTOCOL - 1, kind, body), protocol=5)  # as the last version wrote it
    sealed.put(key, older)
    with pytest.raises(CrewError, match=r"another crew-core version .*crew stop nightly"):
        Crew(store=store, name="nightly", worker_classes=["subprocess"])
    assert crew.store.list(protocol.journal_prefix("nightly")) == [key]  # nothing of it was removed


class _NoMarkerStore(LocalStore):
    """A local store that cannot write the crew's "accepted" marker while ``failing`` is set."""

    failing = True

    def put(self, key, data):
        if self.failing and key.endswith("/accepted"):
            raise StoreError("disk full (simulated)")
        super().put(key, data)


def test_a_send_that_failed_to_mark_the_crew_accepted_is_not_run_by_a_later_controller(tmp_path):
    """send() raised: the user was told the job was not taken, so no controller may run it."""
    store = _NoMarkerStore(tmp_path / "store")
    crew = Crew(store=store, name="nightly", worker_classes=["subprocess"])
    crew.recruit(workers=1)
    with pytest.raises(StoreError, match="disk full"):
        crew.send(jobs.double, args=(1,))
    _die(crew)
    store.failing = False
    with Crew(store=store, name="nightly", worker_classes=["subprocess"]) as again:
        again.recruit(workers=1)
        job = again.send(jobs.double, args=(2,))
        assert [(r.id, r.value) for r in again.results(timeout=60)] == [(job, 4)]
    store.close()


def test_a_roster_update_for_an_ended_launch_never_lands_after_the_next_launch_enrolled(tmp_path):
    """The loop writes 'not live' for a launch that ended; a backend thread enrolls the next launch
    meanwhile. Written in the other order, the roster would say the live launch is not: a next
    controller would not adopt it, and its jobs would run twice."""
    from crew_core.wire import protocol
    from crew_core.wire.signing import Sealed

    with Crew(store=str(tmp_path / "store"), name="nightly", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        crew.send(jobs.double, args=(1,))
        assert crew.receive(timeout=60).value == 2  # its worker is up: launch 1, in the roster
        m = crew._manager
        record = next(iter(m.records.values()))
        assert record.incarnation == 1 and m.book.rosters[record.name].live
        with m.lock:
            m.book.roster_changed(record.name, live=False)  # the first launch ended; not written yet
            record.incarnation = 2
        m.book.enroll(record)  # the next launch, from a backend thread
        m.book.write_out()
        key = protocol.roster_key(m.crew_id, record.name)
        entry = protocol.decode_roster(Sealed(m.store, m.secret).get(key), key)
        assert (entry.incarnation, entry.live) == (2, True)
        record.incarnation = 1  # so that close() ends the launch that runs


def test_a_named_crew_on_the_temporary_local_store_is_refused():
    """Its folder goes when the controller closes it, and a resumed controller would make another:
    the crew could never be resumed (issue #22)."""
    with pytest.raises(ValueError, match="needs a store that outlives its controller"):
        Crew(store="local", name="nightly")


def test_crew_secret_set_for_an_unnamed_crew_is_a_warning_at_the_call(tmp_path, monkeypatch):
    """CREW_SECRET is a named crew's key; an unnamed crew's key is random, so it would go unused."""
    monkeypatch.setenv("CREW_SECRET", "ab" * 32)
    with pytest.warns(UserWarning, match="CREW_SECRET is set but this crew has no name") as record:
        Crew(store=str(tmp_path / "unnamed"), worker_classes=["executor"]).close()
    assert [w.filename for w in record] == [__file__]  # points at the user's Crew() line
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a named crew uses it: no warning
        Crew(store=str(tmp_path / "named"), name="nightly", worker_classes=["executor"]).close()
