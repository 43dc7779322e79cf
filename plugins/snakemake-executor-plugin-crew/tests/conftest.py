"""Fixtures of the plugin's tests: nothing a test started may outlive it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psutil
import pytest
from crew_slurm.fixtures import slurm, slurm_cluster  # noqa: F401  (pytest finds fixtures by name)
from snakemake_crew_testing import live


def pytest_configure(config: pytest.Config) -> None:
    # Snakemake's ILP scheduler calls PuLP the way PuLP 4 will deprecate; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulp")


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """Every process a test started (workers, jobs' commands) has ended when it ends."""
    me = psutil.Process(os.getpid())
    before = {child.pid for child in me.children(recursive=True)}
    yield
    deadline = time.monotonic() + 30
    while True:
        left = [child for child in live(me.children(recursive=True)) if child.pid not in before]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"processes left running: {[' '.join(p.cmdline()[:4]) for p in left]}"
