"""The benchmark script keeps working (a tiny run; its figures are not judged here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
