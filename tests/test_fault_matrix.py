"""The fault matrix: each fault with real processes, what must happen, and that nothing is lost or doubled.

Forged and tampered objects (on the local store, moto's S3 and fake-gcs-server) are in
``crew_core.testing.CrewContract``; a worker whose controller is gone, on every backend, in
``WorkerContract``. Faults of the disk need a file system this test can mount (root on Linux).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from crew_core import Crew, StoreError
from crew_core.testing import jobs, process_gone, wait_for


def _delivered_once(crew: Crew, ids: list[int], timeout: float = 120) -> dict[int, object]:
    """Every id comes back exactly once; returns the results by id."""
    results: dict[int, object] = {}
    for result in crew.results(timeout=timeout):
        assert result.id not in results, f"job {result.id} was delivered twice"
        results[result.id] = result
    assert sorted(results) == sorted(ids), f"lost: {sorted(set(ids) - set(results))}"
    return results


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: it fills up, and it can be made read-only and back."""
    folder = tmp_path / "disk"
    folder.mkdir(mode=0o700)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(folder)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _remount(folder: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True, capture_output=True)


def test_worker_sigkill_mid_job(make_crew, tmp_path):
    crew = make_crew()
    [worker] = crew.recruit(workers=1)
    started = tmp_path / "started"
    killed = crew.send(jobs.touch_then_sleep, args=(str(started), 1.0, "again"))
    others = [crew.send(jobs.double, args=(n,)) for n in range(5)]
    wait_for(started.exists, what="the job to start")
    os.kill(worker.backend.pid, signal.SIGKILL)
    results = _delivered_once(crew, [killed, *others])
    assert results[killed].value == "again" and results[killed].tries == 2  # run again, charged once
    assert all(results[n].tries == 1 for n in others)


def test_controller_sigkill_leaves_no_worker(tmp_path):
    script = textwrap.dedent(
        f"""
        import os
        from crew_core import Crew
        from crew_core.testing import jobs
        crew = Crew(store={str(tmp_path / "store")!r}, worker_classes=["subprocess"], lease_timeout=2)
        [worker] = crew.recruit(workers=1)
        crew.send(jobs.touch_then_sleep, args=({str(tmp_path / "started")!r}, 600))
        import time
        while not os.path.exists({str(tmp_path / "started")!r}):
            time.sleep(0.01)
        print(worker.backend.pid, flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    pid = int(out.stdout)

    wait_for(lambda: process_gone(pid), timeout=60, what="the worker of a killed controller to leave, mid-job")


def test_controller_sigkill_then_resume_by_name(tmp_path, monkeypatch):
    """Workers that end with their controller (the default locally): the new one launches fresh ones."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    store, report = str(tmp_path / "store"), tmp_path / "first.json"
    script = textwrap.dedent(
        f"""
        import json, os
        from crew_core import Crew
        from crew_core.testing import jobs
        crew = Crew(store={store!r}, name="nightly", worker_classes=["subprocess"])
        crew.recruit(workers=2)
        ids = [crew.send(jobs.sleep_then, args=(0.02, n)) for n in range(200)]
        got = [crew.receive(timeout=60).id for _ in range(50)]
        json.dump({{"ids": ids, "got": got}}, open({str(report)!r}, "w"))
        os.kill(os.getpid(), 9)
        """
    )
    subprocess.run([sys.executable, "-c", script], timeout=120, capture_output=True)
    first = json.loads(report.read_text())
    with Crew(store=store, name="nightly", worker_classes=["subprocess"]) as crew:
        assert crew.resumed
        second = {result.id: result for result in crew.results(timeout=120)}
    assert set(second) | set(first["got"]) == set(first["ids"])  # nothing lost
    assert set(second) & set(first["got"]) <= {first["got"][-1]}  # at most the last one handed out, again
    assert all(result.ok and result.value == result.id - 1 for result in second.values())
    assert os.listdir(store) == []  # close() ends a named crew: nothing left
    assert list((tmp_path / "state" / "crew" / "keys").iterdir()) == []  # nor its key


def test_store_deleted(make_crew, tmp_path):
    crew = make_crew(store=str(tmp_path / "store"))
    crew.recruit(workers=1)
    crew.send(jobs.sleep_then, args=(5,))
    while (tmp_path / "store").exists():  # the crew may write into it while it is being deleted
        shutil.rmtree(tmp_path / "store", ignore_errors=True)
    # An error, not a hang: "is gone", or the failed write that came first, as the folder went.
    with pytest.raises(StoreError, match=r"is gone|No such file or directory"):
        crew.receive(timeout=60)
    assert not (tmp_path / "store").exists()  # not recreated by anyone


def test_two_controllers_on_one_store(tmp_path):
    store = str(tmp_path / "store")
    with (
        Crew(store=store, worker_classes=["subprocess"]) as first,
        Crew(store=store, worker_classes=["subprocess"]) as second,
    ):
        first.recruit(workers=1)
        second.recruit(workers=1)
        a = [first.send(jobs.double, args=(n,)) for n in range(20)]
        b = [second.send(jobs.double, args=(100 + n,)) for n in range(20)]
        ra, rb = _delivered_once(first, a), _delivered_once(second, b)
        assert sorted(r.value for r in ra.values()) == [2 * n for n in range(20)]
        assert sorted(r.value for r in rb.values()) == [2 * (100 + n) for n in range(20)]


def test_store_read_only_for_a_while(small_disk):
    with Crew(store=str(small_disk / "store"), worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        crew.send(jobs.double, args=(1,))
        assert crew.receive(timeout=60).value == 2
        _remount(small_disk, "ro")
        try:
            job = crew.send(jobs.double, args=(21,))  # accepted: send never touches the store
            with pytest.raises(StoreError, match="Read-only file system"):
                crew.receive(timeout=60)
        finally:
            _remount(small_disk, "rw")
        result = crew.receive(timeout=120)  # the worker rode it out; the task is written now
        assert (result.id, result.value) == (job, 42)
        assert crew.receive(timeout=0) is None


def test_store_read_only_for_good(small_disk):
    with Crew(store=str(small_disk / "store"), worker_classes=["subprocess"], stop_grace=0.5) as crew:
        crew.recruit(workers=1)
        crew.send(jobs.double, args=(1,))
        assert crew.receive(timeout=60).value == 2
        _remount(small_disk, "ro")
        try:
            crew.send(jobs.double, args=(2,))
            for _ in range(2):  # it says so, every time the user asks, and the job stays pending
                with pytest.raises(StoreError, match="Read-only file system"):
                    crew.receive(timeout=60)
            assert "pending=1" in repr(crew)
        finally:
            _remount(small_disk, "rw")


def test_disk_full(small_disk):
    with Crew(store=str(small_disk / "store"), worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        crew.send(jobs.double, args=(1,))
        assert crew.receive(timeout=60).value == 2
        filler = small_disk / "filler"
        filler.write_bytes(b"\0" * (3 << 20))  # the disk is nearly full
        job = crew.send(jobs.length_and_byte, args=(b"x" * (2 << 20), 1))  # its task does not fit
        with pytest.raises(StoreError, match="No space left on device"):
            crew.receive(timeout=60)
        leftovers = [name for _, _, files in os.walk(small_disk / "store") for name in files if ".tmp" in name]
        assert leftovers == []  # the failed write left nothing that keeps the disk full
        assert "pending=1" in repr(crew)  # not lost, not half-written: it waits, whole
        filler.unlink()  # space comes back
        result = None
        while result is None:
            try:
                result = crew.receive(timeout=60)
            except StoreError:
                continue  # a failure reported while the disk was full
        assert (result.id, result.value) == (job, (2 << 20, 1))


def test_disk_full_at_send_of_a_named_crew(small_disk, monkeypatch):
    """A named crew writes each job before send returns: a full disk is an error there, nothing half-accepted."""
    monkeypatch.setenv("XDG_STATE_HOME", str(small_disk.parent / "state"))
    with Crew(store=str(small_disk / "store"), name="nightly", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        filler = small_disk / "filler"
        filler.write_bytes(b"\0" * (3 << 20))
        data = b"x" * (1536 << 10)  # fits once the filler is gone: in the journal and in a task
        with pytest.raises(StoreError, match="No space left on device"):
            crew.send(jobs.length_and_byte, args=(data, 1))
        assert "pending=0" in repr(crew) and crew.receive(timeout=0) is None  # not accepted at all
        filler.unlink()
        job = crew.send(jobs.length_and_byte, args=(data, 1))
        assert crew.receive(timeout=60).id == job
