"""Tiny runs of the benchmarks made honest for issue #23 (durable_send, nested, slurm, large_args,
map, send_latency): they run, take turns, count every party, print medians, ranges, load averages
and ratios, and leave nothing behind; their figures are not judged here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, args: list[str], tmp_path: Path) -> str:
    """The script's output; it must succeed and leave no temporary folder of its own."""
    shm = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    out = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "TMPDIR": str(tmp_path)})  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "failed" not in out.stdout and "skipped" not in out.stdout, out.stdout
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())
    if os.path.isdir("/dev/shm"):
        assert not {n for n in set(os.listdir("/dev/shm")) - shm if n.startswith("crew-bench-")}
    return out.stdout


def test_durable_send_samples_each_variant_in_turn(tmp_path):
    out = run("durable_send.py", ["--stores", "local", "--jobs", "40", "--threads", "1,2", "--repeat", "2"], tmp_path)
    labels = ("load average at start", "medians of 2 interleaved samples", "1 sending thread(s)",
              "2 sending thread(s)", "named, crew.batch() of 1,000", "x unnamed", "load average at end")
    for label in labels:
        assert label in out, label
    rounds = [line.split()[5] for line in out.splitlines() if line.startswith("  round ")]
    assert len(rounds) == 2 * 2 * 3  # thread counts x rounds x variants
    assert rounds[:3] != rounds[3:6], "the second round starts with another variant"


def test_nested_counts_every_party(tmp_path):
    out = run("nested.py", ["--jobs", "40", "--inner", "1", "--forwarders", "2", "--repeat", "1"], tmp_path)
    figures = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and (parts[3].endswith("x") or parts[3] == "-"):  # a row: key, flat, nested, ratio
            figures[parts[0]] = parts[1:3]
    for key in ("cpu_ms_per_job", "cpu_ms_per_job_forwarders", "cpu_ms_per_job_workers", "cpu_ms_per_job_all"):
        assert key in figures, out
    flat, nested = (float(v) for v in figures["cpu_ms_per_job_forwarders"])
    assert flat == 0 and nested > 0, "only the nested setup has forwarders, and they spend CPU"
    assert all(float(v) > 0 for v in figures["cpu_ms_per_job_workers"]), out


@pytest.mark.skipif(shutil.which("slurmctld") is None, reason="Slurm's daemons are not installed")
def test_slurm_samples_both_worker_classes():
    # A short folder: slurmstepd's sockets live under the cluster's folder, and a Unix socket's path
    # has at most 107 bytes (under pytest's long tmp_path a task launch fails).
    with tempfile.TemporaryDirectory(prefix="crew-t-", dir="/tmp") as short:
        out = run("slurm.py", ["--jobs", "20", "--repeat", "1"], Path(short))
    for label in ("load average at start", "slurm:cold", "subprocess:warm", "cold crew, send -> first result",
                  "2 warm workers, 20 no-op jobs, jobs/s", "slurm / subprocess", "load average at end"):  # fmt: skip
        assert label in out, label


def test_large_args_counts_every_processs_memory_and_cpu(tmp_path):
    out = run("large_args.py", ["--size", "2", "--jobs", "4", "--repeat", "2", "--engines", "crew,ppe"], tmp_path)
    for label in ("all processes: peak", "all processes' peak memory", "CPU", "load average at end"):
        assert label in out, label
    firsts = [line.split()[2] for line in out.splitlines() if line.startswith("  round ")][::2]
    assert firsts == ["crew:", "ppe:"], "each engine goes first in turn"


def test_map_and_send_latency_rotate_their_variants(tmp_path):
    out = run("map.py", ["--inputs", "100", "--repeat", "2"], tmp_path)
    firsts = [line.split()[2] for line in out.splitlines() if line.startswith("  round ")][::7]
    assert len(firsts) == 2 and firsts[0] != firsts[1], out
    assert "range" in out and "load average at end" in out
    out = run("send_latency.py", ["--jobs", "100", "--repeat", "2"], tmp_path)
    firsts = [line.split()[2] for line in out.splitlines() if line.startswith("  round ")][::2]
    assert firsts == ["crew", "pool"], out
    assert "ratio crew/pool" in out and "all processes (controller and workers): peak PSS" in out
