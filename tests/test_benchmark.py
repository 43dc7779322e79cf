"""The benchmark scripts keep working (tiny runs; their figures are not judged here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


def test_benchmark_runs_and_prints_every_figure():
    args = ["--jobs", "300", "--round-trips", "30", "--repeat", "1", "--no-dask"]
    out = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for label in ("crew (2 subprocess workers)", "ProcessPoolExecutor(2)", "ratio crew/ProcessPoolExecutor", "p95"):
        assert label in out.stdout
    assert "import crew_core:" in out.stdout


def test_stop_benchmark_runs():
    script = SCRIPT.with_name("stop.py")
    args = ["--workers", "2", "--lease", "2", "--repeat", "1"]
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "found on their backend" in out.stdout and "through the store alone" in out.stdout


def test_engines_runs_one_script_on_two_revisions(tmp_path):
    """engines.py runs throughput.py tiny on HEAD and on the working tree, each importing its own crew,
    prints the table's labels, and leaves no temporary tree or worktree behind (figures not judged)."""
    repo = SCRIPT.parents[1]
    if subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: there is no revision to compare with")
    args = ["--old", "HEAD", "--new", "worktree", "--scripts", "throughput", "--quick", "--repeat", "1"]
    out = subprocess.run([sys.executable, str(SCRIPT.with_name("engines.py")), *args], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "TMPDIR": str(tmp_path)})  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    labels = ("crew_core from", "worker job:", "all from the tree", "load average at start", "load ",
              "old median", "new median", "new/old", "jobs/s, 2 subprocess workers", "round trip p50 ms")
    for label in labels:
        assert label in out.stdout, label
    assert not list(tmp_path.glob("crew-engines-*"))
    worktrees = subprocess.run(["git", "-C", str(repo), "worktree", "list", "--porcelain"], capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
    assert str(tmp_path) not in worktrees


def test_driving_benchmark_runs_both_ways():
    script = SCRIPT.with_name("driving.py")
    args = ["--round-trips", "20", "--jobs", "200", "--repeat", "1"]
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "not driving" in out.stdout and "round trip p50" in out.stdout


def test_joblib_benchmark_runs():
    script = SCRIPT.with_name("joblib_tiny.py")
    out = subprocess.run([sys.executable, str(script), "--calls", "300", "--repeat", "1"], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "crew/loky time ratio" in out.stdout


def test_put_once_benchmark_counts_every_partys_reads():
    script = SCRIPT.with_name("put_once.py")
    args = ["--megabytes", "2", "--jobs", "4", "--repeat", "1", "--plain", "--no-peers"]
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for label in ("load average at start", "crew.put", "crew, passed as is", "by workers", "MB mapped"):
        assert label in out.stdout, label


def test_peers_benchmark_runs_tiny_and_prints_the_table():
    """peers.py's tiny run: crew next to ProcessPoolExecutor (and whichever peers are installed),
    every row and the ratios printed; figures are not judged."""
    script = SCRIPT.with_name("peers.py")
    args = ["--jobs", "200", "--round-trips", "20", "--short", "8", "--repeat", "1", "--peers", "crew,pool",
            "--shared-megabytes", "2"]  # fmt: skip
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    for label in ("load average at start", "200 no-op calls via map, jobs/s", "CPU of all processes", "chunksize=1",
                  "round trip p50, ms", "round trip p90, ms", "8 jobs of 10 ms, efficiency",
                  "50 jobs sharing 2 MB, s", "import, as its users do, ms", "ratios, crew / peer",
                  "load average at end"):  # fmt: skip
        assert label in out.stdout, label
    assert "failed" not in out.stdout, out.stdout


def test_round_trip_profile_runs():
    script = SCRIPT.with_name("round_trip_profile.py")
    out = subprocess.run([sys.executable, str(script), "--count", "40"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    labels = ("worker: list its tasks", "over the store doorbells", "over a plain pipe", "CPU: controller")
    for label in labels:
        assert label in out.stdout, label


def test_put_profile_times_every_step_of_a_shared_objects_path():
    script = SCRIPT.with_name("put_profile.py")
    out = subprocess.run([sys.executable, str(script), "--megabytes", "2", "--repeat", "2"], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    for label in ("controller: hash the buffer (BLAKE3)", "controller: copy the buffer into the store",
                  "worker: map the buffer", "worker: hash the mapped buffer", "worker: all of its first read",
                  "reference: one copy in memory", "load average at end"):  # fmt: skip
        assert label in out.stdout, label


def test_peers_benchmark_busy_mode_ends_its_load():
    """``--busy`` runs one ``yes`` per core meanwhile, and ends them: none outlives the run."""
    psutil = pytest.importorskip("psutil")
    script = SCRIPT.with_name("peers.py")
    args = ["--round-trips", "20", "--repeat", "1", "--peers", "crew,pool", "--rows", "round_trip", "--busy"]
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "with every core kept busy" in out.stdout and "round trip p50, ms" in out.stdout
    assert "jobs of 10 ms" not in out.stdout  # only the rows asked for
    left = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "yes" and _marked(p)]
    assert not left, left


def _marked(process: Any) -> bool:
    """A process of peers.py's ``--busy`` load (its environment says so)."""
    try:
        return bool(process.environ().get("CREW_PEERS_BUSY") == "1")
    except Exception:  # ended meanwhile, or not ours to look at
        return False
