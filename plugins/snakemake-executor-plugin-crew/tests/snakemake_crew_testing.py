"""Helpers for tests that run real Snakemake workflows with ``--executor crew``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def write_workflow(folder: Path, snakefile: str) -> Path:
    """A workflow folder holding ``snakefile`` (dedented)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Snakefile").write_text(textwrap.dedent(snakefile))
    return folder


def snakemake_command(*args: str) -> list[str]:
    """``python -m snakemake --executor crew`` with ``args``."""
    return [*SNAKEMAKE, "--executor", "crew", "--nocolor", *args]


def run_snakemake(folder: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run Snakemake in ``folder`` to its end; its output (stdout and stderr) in ``.stdout``."""
    return subprocess.run(snakemake_command(*args), cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)  # fmt: skip


def snakemake_log(folder: Path) -> str:
    """The text of Snakemake's own log file(s) in ``folder/.snakemake/log``."""
    return "\n".join(path.read_text() for path in sorted((folder / ".snakemake" / "log").glob("*.snakemake.log")))


def wait_until(condition: Callable[[], object], timeout: float, what: str, every: float = 0.05) -> None:
    """Poll ``condition`` until it is true, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def live(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``processes`` still running (zombies are gone for our purpose)."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive
