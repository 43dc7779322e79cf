"""Large job arguments: kept in the controller's memory up to ``args_memory``, in the store beyond it
(issue #22: 50 jobs each given a 100 MB array held 5.2 GB in the controller until they ended)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crew_core import Crew, SerializationError
from crew_core.testing import jobs, wait_for

#: A controller that sends 20 jobs, each given its own 50 MB of bytes, and prints its peak resident
#: memory (its own: the workers are other processes) before and after, in MB.
MEMORY = """
    import os, resource
    from crew_core import Crew
    from crew_core.testing import jobs

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    with Crew(store="local", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=2)
        crew.map(jobs.double, [1, 2])  # every worker up, every import paid
        data = bytearray(os.urandom(50 * 2**20))
        before = peak()
        for n in range(20):
            data[0] = n  # each job's own arguments: none is written once for all
            crew.send(jobs.length_and_byte, (bytes(data), n))
        ok = sorted(r.get() for r in crew.results(timeout=600)) == [(len(data), n) for n in range(20)]
        print(before, peak(), ok)
"""


def test_the_controllers_memory_stays_bounded_whatever_the_arguments_sizes():
    """Before: the 20 pickled arguments (1,000 MB) stayed in the controller until their jobs ended."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(MEMORY)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    before, peak, ok = out.stdout.split()
    assert ok == "True"
    grown = float(peak) - float(before)
    # 256 MB of budget, but an argument over an eighth of it goes to the store at once: what is
    # left is the one being sent (its bytes, their pickle, their signed copy), 150 MB
    assert grown < 400, f"the controller grew by {grown:.0f} MB while sending 1,000 MB of arguments"


def test_equal_large_arguments_are_stored_once_and_deleted_when_their_jobs_end(tmp_path):
    gate = tmp_path / "gate"
    data = os.urandom(2**20)
    with Crew(store=str(tmp_path / "store"), worker_classes=["subprocess"], args_memory=0) as crew:
        crew.recruit(workers=2)
        prefix = f"{crew.id}/args/"
        ids = [crew.send(jobs.length_once_open, (str(gate), data)) for _ in range(4)]
        assert len(crew.store.list(prefix)) == 1  # one object for the four jobs
        gate.touch()
        results = {r.id: r.get() for r in crew.results(timeout=120)}
        assert results == {job: (len(data), 0) for job in ids}
        wait_for(lambda: not crew.store.list(prefix), timeout=30, what="the arguments' object to be deleted")


def test_small_arguments_stay_in_memory_and_travel_in_their_task(tmp_path):
    with Crew(store=str(tmp_path / "store"), worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        ids = [crew.send(jobs.length_and_byte, (b"x" * 1000, n)) for n in range(20)]
        assert not crew.store.list(f"{crew.id}/args/")
        assert {r.id: r.get() for r in crew.results(timeout=60)} == {job: (1000, n) for n, job in enumerate(ids)}
        assert crew._manager.args.held == 0  # every job ended: nothing held for them


def test_arguments_gone_from_the_store_are_the_jobs_error(tmp_path):
    gate = tmp_path / "gate"
    with Crew(store=str(tmp_path / "store"), worker_classes=["subprocess"], args_memory=0) as crew:
        crew.recruit(workers=1)
        job = crew.send(jobs.length_once_open, (str(gate), b"data"))
        crew.store.delete(crew.store.list(f"{crew.id}/args/"))
        gate.touch()
        result = crew.receive(timeout=60)
        assert result is not None and result.id == job
        with pytest.raises(SerializationError, match="arguments are gone from the store"):
            result.get()


def test_a_named_crew_resumes_jobs_whose_arguments_are_in_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("CREW_SECRET", raising=False)
    store, gate = str(tmp_path / "store"), tmp_path / "gate"
    data = os.urandom(2**20)
    crew = Crew(store=store, name="big", worker_classes=["subprocess"], args_memory=0)
    crew.recruit(workers=1)
    ids = [crew.send(jobs.length_once_open, (str(gate), data, n)) for n in range(3)]
    crew._manager.close()  # as if the controller died: its workers end, its objects stay
    crew._closed = True
    with Crew(store=store, name="big", worker_classes=["subprocess"], args_memory=0) as again:
        assert again.resumed
        gate.touch()
        results = {r.id: r.get() for r in again.results(timeout=120)}
        assert results == {job: (len(data), n) for n, job in enumerate(ids)}
        wait_for(lambda: not again.store.list("big/args/"), timeout=30, what="the arguments' object to be deleted")


def test_args_memory_is_checked():
    with pytest.raises(ValueError, match="args_memory must be >= 0"):
        Crew(store="local", args_memory=-1)
    with pytest.raises(TypeError, match="args_memory must be a number"):
        Crew(store="local", args_memory="256MB")


def test_the_benchmark_runs_tiny():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "large_args.py"
    args = ["--size", "2", "--jobs", "3", "--repeat", "1", "--engines", "crew,ppe"]
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    labels = ("load average at start", "crew.send", "ProcessPoolExecutor", "peak", "ratio crew/ProcessPoolExecutor")
    for label in labels:
        assert label in out.stdout, label


def test_a_forwarder_reads_large_arguments_and_passes_them_to_its_inner_crew(make_crew, tmp_path):
    crew = make_crew(store=tmp_path / "outer", args_memory=0)
    inner = {"store": str(tmp_path / "inner"), "recruit": [{"workers": 1, "worker_class": "subprocess"}]}
    crew.recruit(worker_class="nested", inner=inner)
    data = os.urandom(2**20)
    ids = [crew.send(jobs.length_and_byte, (data, n)) for n in range(3)]
    results = {r.id: r for r in crew.results(timeout=120)}
    assert {job: results[job].get() for job in ids} == {job: (len(data), n) for n, job in enumerate(ids)}
    assert all(r.worker.startswith("nested-1/subprocess-") for r in results.values())
