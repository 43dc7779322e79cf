"""``crew ps`` and ``crew stop``: finding a crew whose controller died, and ending its workers on their
backend (found by crew id) and through the store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from crew_core import Crew
from crew_core.cli import main
from crew_core.durable import leftovers
from crew_core.durable.leftovers import find_crews
from crew_core.testing import jobs, process_gone, wait_for
from crew_local import LocalStore


def test_ps_then_stop_ends_the_workers_of_a_dead_controller_on_their_backend(tmp_path, capsys):
    store, started = str(tmp_path / "store"), tmp_path / "started"
    script = textwrap.dedent(
        f"""
        import os, time
        from crew_core import Crew
        from crew_core.testing import jobs
        crew = Crew(store={store!r}, worker_classes=["subprocess"], lease_timeout=600)
        [worker] = crew.recruit(workers=1, detached=True)  # outlives this process, until the lease goes
        crew.send(jobs.touch_then_sleep, args=({str(started)!r}, 600))
        while not os.path.exists({str(started)!r}):
            time.sleep(0.01)
        print(crew.id, worker.backend.pid, flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    with open(tmp_path / "out", "w") as out:  # not a pipe: the detached worker would hold it open
        subprocess.run([sys.executable, "-c", script], stdout=out, timeout=120, stdin=subprocess.DEVNULL)
    crew_id, pid = (tmp_path / "out").read_text().split()
    assert not process_gone(int(pid))  # the controller is dead; its worker runs on
    local = LocalStore(store)
    wait_for(lambda: any(w.pid for c in find_crews(local) for w in c.workers), what="a heartbeat nobody reads")
    assert main(["ps", "--store", store, "--json"]) == 0
    [seen] = json.loads(capsys.readouterr().out)
    assert seen["crew"] == crew_id and not seen["named"] and seen["lease_timeout"] == 600
    [worker] = seen["workers"]
    assert (worker["name"], worker["exit"], worker["pid"]) == ("subprocess-1", None, int(pid))
    assert "backend_jobs" not in seen  # asking backends is asked for
    assert main(["ps", "--store", store, "--json", "--backends"]) == 0
    [seen] = json.loads(capsys.readouterr().out)
    [job] = seen["backend_jobs"]
    assert (job["worker_class"], job["id"], job["worker"], job["incarnation"]) == ("subprocess", pid, "subprocess-1", 1)
    assert seen["backend_problems"] == []
    assert main(["ps", "--store", store, "--backends"]) == 0
    out = capsys.readouterr().out
    assert f"{crew_id} (unnamed)" in out and f"subprocess {pid}: RUNNING (subprocess-1 launch 1)" in out
    # Someone who can write another store plants this crew's id and place there: stopping that
    # crew ends nothing of this one (its workers carry their own store's label).
    twin = LocalStore(tmp_path / "other")
    twin.put(f"{crew_id}/lease", b"\0" * 32 + b"{}")
    twin.put(f"{crew_id}/places/subprocess.x", b"\0" * 32 + json.dumps(job | {"place": job["place"]}).encode())
    assert main(["stop", crew_id, "--store", str(tmp_path / "other")]) == 0
    assert "job(s) on their backends" not in capsys.readouterr().out and not process_gone(int(pid))
    assert main(["stop", crew_id, "--store", store]) == 0
    assert f"ended 1 job(s) on their backends: subprocess {pid}" in capsys.readouterr().out
    # at once, by the backend: through the store alone it would take a quarter of the 600 s lease
    wait_for(lambda: process_gone(int(pid)), timeout=30, what="crew stop to end the worker")
    assert os.listdir(store) == []


def test_stop_refuses_a_crew_whose_controller_runs_here_and_unknown_crews(tmp_path, capsys):
    store = str(tmp_path / "store")
    with Crew(store=store, worker_classes=["subprocess"]) as crew:
        assert main(["stop", crew.id, "--store", store]) == 1
        assert "has a live controller here" in capsys.readouterr().err
        assert main(["stop", "nosuchcrew", "--store", store]) == 1
        error = capsys.readouterr().err
        assert "no crew 'nosuchcrew'" in error and crew.id in error  # it names the crews there
        crew.recruit(workers=1)
        assert crew.send(pow, args=(2, 3)) and crew.receive(timeout=60).value == 8  # untouched


def test_ps_and_stop_shrug_off_records_of_the_wrong_types(tmp_path, capsys):
    """Records are only shown: ones anybody could have planted must not break ps or stop."""
    store = LocalStore(tmp_path / "store")
    tag = b"\0" * 32  # no valid signature: ps does not check (it only shows)
    store.put("junk/lease", tag + json.dumps({"pid": [1], "written": "soon", "timeout": "x", "host": 5}).encode())
    store.put("junk/inbox/beat.w-1.1.000000000001", tag + json.dumps({"pid": "twelve", "host": None}).encode())
    store.put("junk/inbox/exit.w-1.1", tag + b"not json")
    store.put("junk/places/a", tag + b"[1, 2]")
    store.put("junk/places/deep", tag + b"[" * 100_000 + b"]" * 100_000)  # too deep for the parser
    store.put("junk/inbox/beat.w-2.1.000000000001", tag + json.dumps({"pid": 7, "host": "x\nfake 1 (named)"}).encode())
    store.put("junk/places/b", tag + json.dumps({"worker_class": 7, "place": {}}).encode())
    store.put("good/lease", tag + json.dumps({"renewal": 1, "timeout": 8.0}).encode())
    store.put("good/places/c", tag + json.dumps({"worker_class": "no-such-class", "place": {}}).encode())
    elsewhere = {"worker_class": "subprocess", "place": {"host": "elsewhere"}}
    store.put("good/places/d", tag + json.dumps(elsewhere).encode())
    assert main(["ps", "--store", str(tmp_path / "store")]) == 0
    assert "\nfake 1 (named)" not in capsys.readouterr().out  # a planted newline cannot fake a row
    assert main(["ps", "--store", str(tmp_path / "store"), "--json", "--backends"]) == 0
    capsys.readouterr()
    assert main(["stop", "junk", "--store", str(tmp_path / "store")]) == 0
    # what could not be looked for is said, and the crew's objects go all the same
    assert main(["stop", "good", "--store", str(tmp_path / "store")]) == 1
    error = capsys.readouterr().err
    assert "worker class 'no-such-class' is not installed here" in error
    assert "run crew stop there" in error and "'elsewhere'" in error
    assert store.list("") == []


def test_crew_stop_from_another_machine_refuses_a_crew_whose_lease_is_fresh(tmp_path, monkeypatch, capsys):
    """Issue #20: run on another machine, ``crew stop`` deleted a crew whose lease was renewed 0 s
    ago (the live crew then stalled and lost its journal). The same on every store: CrewContract."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(leftovers, "socket", type("Elsewhere", (), {"gethostname": staticmethod(lambda: "elsewhere")}))
    store = str(tmp_path / "store")
    with Crew(store=store, name="nightly", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        assert crew.send(jobs.double, args=(1,)) and crew.receive(timeout=60).value == 2
        assert main(["stop", "nightly", "--store", store]) == 1
        error = capsys.readouterr().err
        assert "crew stop: crew 'nightly' may have a live controller" in error
        assert re.search(r"its lease was renewed \d s ago, within its lease_timeout of 900 s", error)
        assert "--force" in error
        assert crew.send(jobs.double, args=(2,)) and crew.receive(timeout=60).value == 4  # untouched
        assert main(["stop", "nightly", "--store", store, "--force"]) == 0
        out = capsys.readouterr().out
        assert "removed crew 'nightly'" in out and "lease_timeout (900 s)" in out


def test_crew_ps_and_stop_never_create_a_store_and_say_why_they_cannot_look(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    missing = tmp_path / "mistyped"
    assert main(["ps", "--store", str(missing)]) == 2
    assert main(["stop", "nightly", "--store", str(missing)]) == 2
    assert not missing.exists()
    assert "there is no store at" in capsys.readouterr().err
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    assert main(["ps", "--store", str(shared)]) == 2
    assert "writable by other users" in capsys.readouterr().err  # said, not a traceback
    before = {store.location for store in LocalStore.temporary_stores()}  # other tests' crews in this process
    assert main(["ps", "--store", "local"]) == 0  # this user's temporary stores here: none made for it
    assert not [s for s in LocalStore.temporary_stores() if s.owner == os.getpid() and s.location not in before]
    capsys.readouterr()
    monkeypatch.delenv("CREW_STORE", raising=False)
    with pytest.raises(SystemExit):
        main(["ps"])
    assert "CREW_STORE" in capsys.readouterr().err
    store = tmp_path / "store"
    with Crew(store=str(store), name="nightly", worker_classes=["subprocess"]):
        monkeypatch.setenv("CREW_STORE", str(store))
        assert main(["ps", "--json"]) == 0
        assert [crew["crew"] for crew in json.loads(capsys.readouterr().out)] == ["nightly"]


def test_crew_ps_shows_a_controller_this_machine_knows_is_dead(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    store = tmp_path / "store"
    script = textwrap.dedent(f"""
        import os
        from crew_core import Crew
        from crew_core.testing import jobs
        crew = Crew(store={str(store)!r}, name="nightly", worker_classes=["subprocess"])
        crew.recruit(workers=1)
        crew.send(jobs.double, args=(1,))  # accepted: the crew outlives its controller
        os._exit(0)
    """)  # fmt: skip
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert main(["ps", "--store", str(store)]) == 0
    assert "its process has ended" in capsys.readouterr().out
    assert main(["stop", "nightly", "--store", str(store)]) == 0  # no --force needed: it is surely gone
