"""Helpers for tests that run real Snakemake workflows with ``--executor crew``."""

from __future__ import annotations

import re
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
    """Run Snakemake in ``folder`` to its end; its output (stdout and stderr) in ``.stdout``. Checks
    that its crew left nothing behind: no worker process, no store folder."""
    ran = subprocess.run(snakemake_command(*args), cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=timeout)  # fmt: skip
    assert_crews_gone(folder)
    return ran


def crew_stores(folder: Path) -> list[str]:
    """The stores of the crews Snakemake runs in ``folder`` opened (the executor logs each)."""
    return re.findall(r"crew executor: store (\S+?),", snakemake_log(folder))


def assert_crews_gone(folder: Path) -> None:
    """No process names the store of a crew opened in ``folder``, and each store folder is gone."""
    for store in crew_stores(folder):
        wait_until(lambda store=store: not processes_naming(store), 30, f"the workers of {store} to end")
        assert not Path(store).exists(), f"{store} was left behind"


def processes_naming(text: str) -> list[psutil.Process]:
    """Live processes whose command line holds ``text``."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(process.info["cmdline"] or ()):
            found.append(process)
    return found


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
