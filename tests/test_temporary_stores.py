"""Unnamed crews on the temporary ``"local"`` store: a folder in RAM (``/dev/shm/crew-*``) that a
controller killed with SIGKILL leaves behind. The next crew opened on the machine sweeps it once
its controller and workers have ended; ``crew ps --store local`` lists them, ``crew stop`` removes one."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from crew_core import Crew
from crew_core.cli import main
from crew_core.plugin import Store, TemporaryStore, process_start
from crew_core.testing import process_gone, wait_for
from crew_local import LocalStore, temporary


def _killed_controller(tmp_path, *, detached: bool = False) -> tuple[str, str, int, LocalStore]:
    """Run an unnamed crew on the default store in a process that then kills itself (SIGKILL):
    (its store folder, its crew id, its worker's pid, and the folder opened here as its workers
    open it). This test process then counts as a user of the folder, so that no crew opened by a
    test running beside this one sweeps it until the store is closed."""
    script = textwrap.dedent(f"""
        import os, time
        from crew_core import Crew
        from crew_core.testing import jobs
        crew = Crew(worker_classes=["subprocess"], lease_timeout=600)
        [worker] = crew.recruit(workers=1, detached={detached!r})
        crew.send(jobs.double, args=(1,))
        assert crew.receive(timeout=60).value == 2
        print(crew.store.describe(), crew.id, worker.backend.pid, flush=True)
        while not os.path.exists({str(tmp_path / "held")!r}):
            time.sleep(0.01)
        os.kill(os.getpid(), 9)
    """)  # fmt: skip
    with open(tmp_path / "out", "w") as out:  # not a pipe: a detached worker would hold it open
        controller = subprocess.Popen([sys.executable, "-c", script], stdout=out, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: (tmp_path / "out").read_text().endswith("\n"), timeout=120, what="the crew to run")
            folder, crew_id, pid = (tmp_path / "out").read_text().split()
            held = LocalStore(folder, create=False)
            (tmp_path / "held").touch()
            controller.wait(timeout=60)
        finally:
            if controller.poll() is None:
                controller.kill()
                controller.wait()
    return folder, crew_id, int(pid), held


def _folder(owner: dict[str, object] | None) -> str:
    """A folder as a temporary store would be, with the ``.owner`` record given (None: none)."""
    folder = tempfile.mkdtemp(prefix=temporary.PREFIX, dir=temporary.parent())
    if owner is not None:
        with open(os.path.join(folder, temporary.OWNER), "w") as handle:
            json.dump(owner, handle)
    return folder


@pytest.fixture
def folders():
    """Folders a test made by hand: removed after it, whatever it left."""
    made: list[str] = []
    yield made
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_killed_controllers_folder_is_listed_then_swept_by_the_next_crew(tmp_path, capsys, folders):
    folder, crew_id, worker, held = _killed_controller(tmp_path)
    folders.append(folder)
    assert folder.startswith(temporary.parent() + "/crew-") and os.path.isdir(folder)
    wait_for(lambda: process_gone(worker), timeout=60, what="the worker to leave with its controller")
    try:
        assert main(["ps", "--store", "local", "--json"]) == 0
        [row] = [row for row in json.loads(capsys.readouterr().out) if row["store"] == folder]
        assert row["owner_ended"] and row["users"] == [os.getpid()]  # this test, as its worker was
        [crew] = row["crews"]
        assert crew["crew"] == crew_id and crew["controller_dead"]
        assert main(["ps", "--store", "local"]) == 0
        out = capsys.readouterr().out
        assert f"{folder}: controller process {row['owner']}: its process has ended; 1 worker" in out
        with Crew(store=str(tmp_path / "disk"), worker_classes=["executor"]):
            assert os.path.isdir(folder)  # not while a process uses it
    finally:
        held.close()
    with Crew(store=str(tmp_path / "disk"), worker_classes=["executor"]):  # the next crew, on any store
        assert not os.path.exists(folder)
    with Crew(worker_classes=["subprocess"]) as crew:
        mine = crew.store.describe()
        assert main(["ps", "--store", "local", "--json"]) == 0  # a live one is listed, not swept
        [row] = [row for row in json.loads(capsys.readouterr().out) if row["store"] == mine]
        assert row["owner"] == os.getpid() and not row["owner_ended"]
    assert not os.path.exists(mine)


def test_a_folder_whose_workers_still_run_stays_until_they_end_and_crew_stop_removes_it(tmp_path, capsys, folders):
    folder, crew_id, worker, held = _killed_controller(tmp_path, detached=True)  # it outlives its controller
    held.close()  # the worker is the folder's user now
    folders.append(folder)
    try:
        assert not process_gone(worker)
        with Crew(worker_classes=["executor"]):
            assert os.path.isdir(folder)  # not deleted under a live worker
        assert main(["ps", "--store", "local", "--json"]) == 0
        [row] = [row for row in json.loads(capsys.readouterr().out) if row["store"] == folder]
        assert row["owner_ended"] and row["users"] == [worker]
        assert main(["stop", "nosuchcrew", "--store", "local"]) == 1
        assert "no crew 'nosuchcrew'" in capsys.readouterr().err
        assert main(["stop", crew_id, "--store", "local"]) == 0  # ends the worker on its backend
        out = capsys.readouterr().out
        assert f"ended 1 job(s) on their backends: subprocess {worker}" in out
        wait_for(lambda: process_gone(worker), timeout=30, what="crew stop to end the worker")
        if os.path.exists(folder):  # it was still running when crew stop looked
            assert main(["stop", os.path.basename(folder), "--store", "local"]) == 0
        assert not os.path.exists(folder)
    finally:
        if not process_gone(worker):
            os.kill(worker, 9)


def test_crew_stop_refuses_the_store_of_a_live_controller(capsys):
    with Crew(worker_classes=["executor"]) as crew:
        assert main(["stop", crew.id, "--store", "local"]) == 1
        assert f"live controller here (process {os.getpid()})" in capsys.readouterr().err
        assert os.path.isdir(crew.store.describe())


def test_only_folders_of_this_users_ended_owners_are_swept(folders, caplog):
    me, start = os.getpid(), process_start(os.getpid())
    assert start is not None
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(ended.stdout)
    live = _folder({"pid": me, "start": start})
    reused = _folder({"pid": me, "start": start + 1})  # this pid, but another process's start: it ended
    gone = _folder({"pid": dead, "start": None})
    unknown = _folder(None)  # being made, or by an older crew-local: never swept
    junk = _folder({"pid": "1", "start": []})
    other = _folder({"pid": dead, "start": None})
    contained = _folder({"pid": dead, "start": None, "namespace": 1})  # another pid namespace's (a container)
    folders.append(contained)
    folders += [live, reused, gone, unknown, junk, other]
    if os.geteuid() == 0:
        os.chown(other, 65534, 65534)  # another user's
    user = _folder({"pid": dead, "start": None})  # its owner ended, but a process of it runs
    folders.append(user)
    os.mkdir(os.path.join(user, temporary.USERS))
    open(os.path.join(user, temporary.USERS, f"{me}-{start}"), "w").close()

    with caplog.at_level(logging.INFO, logger="crew"):
        removed = temporary.sweep()
    assert not os.path.exists(reused) and not os.path.exists(gone)  # by this sweep, or a crew opened beside
    if gone in removed:
        assert f"removed {gone}, the temporary store of a controller that ended (process {dead})" in caplog.text
    kept = (live, unknown, junk, user, contained, *([other] if os.geteuid() == 0 else []))
    assert all(os.path.isdir(folder) for folder in kept)


def test_a_worker_opening_a_temporary_store_notes_itself_and_its_note_goes_at_close(folders):
    store = LocalStore()
    try:
        worker = LocalStore(**store.config())  # as a worker rebuilds it
        namespace = os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")  # pids mean nothing outside it
        me = f"{os.getpid()}-{process_start(os.getpid())}-{namespace}-"
        [note] = [entry.path for entry in os.scandir(os.path.join(store.describe(), temporary.USERS))]
        assert os.path.basename(note).startswith(me)
        other = LocalStore(**store.config())  # another in this process: closing it leaves the first's note
        other.close()
        assert os.path.exists(note)
        assert store.list("") == []  # private files: no keys
        worker.close()
        assert not os.path.exists(note)
    finally:
        store.close()
    assert not os.path.exists(store.describe())


def test_three_sweepers_at_once_remove_each_folder_once(tmp_path, folders):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = [_folder({"pid": int(ended.stdout), "start": None}) for _ in range(60)]
    folders += dead
    for folder in dead:  # deleting takes a while: the sweepers overlap
        for n in range(30):
            open(os.path.join(folder, f"k{n}"), "w").close()
    go = tmp_path / "go"
    sweep = textwrap.dedent(f"""
        import os, sys, time
        from crew_local import temporary
        open(os.path.join({str(tmp_path)!r}, "ready." + sys.argv[1]), "w").close()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
        print(len(temporary.sweep()))
    """)  # fmt: skip
    sweepers = [subprocess.Popen([sys.executable, "-c", sweep, str(n)], stdout=subprocess.PIPE, text=True)
                for n in range(3)]  # fmt: skip
    wait_for(lambda: len(list(tmp_path.glob("ready.*"))) == 3, timeout=60, what="the sweepers to be ready")
    go.touch()  # they start together
    counts = [int(p.communicate(timeout=60)[0]) for p in sweepers]
    assert all(p.returncode == 0 for p in sweepers)
    assert not any(os.path.exists(folder) for folder in dead)
    assert sum(counts) <= 60  # none twice (a crew opened by a test beside this one may take some)
    leftovers = [name for name in os.listdir(temporary.parent()) if name.startswith(temporary.SWEEPING)]
    assert not [name for name in leftovers if name.split("-")[2] in {str(p.pid) for p in sweepers}]


def test_a_sweeper_that_died_midway_is_finished_by_the_next(folders):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    half = os.path.join(temporary.parent(), f"{temporary.SWEEPING}{int(ended.stdout)}-0-cafe")
    os.mkdir(half, 0o700)
    folders.append(half)
    temporary.sweep()
    assert not os.path.exists(half)


def test_sweeping_at_each_open_is_cheap(folders):
    """With 50 live temporary stores on the machine, a sweep costs well under a millisecond each."""
    me, start = os.getpid(), process_start(os.getpid())
    folders += [_folder({"pid": me, "start": start}) for _ in range(50)]
    began = time.perf_counter()
    for _ in range(20):
        temporary.sweep()
    each = (time.perf_counter() - began) / 20
    assert each < 0.25, f"a sweep took {each * 1000:.1f} ms"  # generous: a loaded CI machine


def test_a_store_class_sweeps_through_its_temporary_stores_by_default():
    """A third-party class that lists its temporary stores and removes one gets the sweep for free."""

    class Scratch(Store):
        removed: list[str] = []

        def put(self, key, data): ...
        def get(self, key): ...
        def list(self, prefix, start_after=None): ...
        def delete(self, keys): ...

        @classmethod
        def temporary_stores(cls):
            return [TemporaryStore("left", 1, True), TemporaryStore("live", 2, False),
                    TemporaryStore("used", 3, True, users=(9,))]  # fmt: skip

        @classmethod
        def remove_temporary(cls, location):
            cls.removed.append(location)
            return True

    assert Scratch.sweep_temporary() == ["left"] and Scratch.removed == ["left"]
    assert Store.sweep_temporary() == [] and Store.temporary_stores() == []
