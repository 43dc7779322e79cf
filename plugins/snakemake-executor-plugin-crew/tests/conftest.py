"""Fixtures of the plugin's tests: nothing a test started may outlive it."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from crew_slurm.testing import SlurmCluster, SlurmUnavailable
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


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A real single-node Slurm for the session (as crew-slurm's tests start theirs), stopped at its end."""
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Slurm tests, but Slurm could not start: {exc}")
        pytest.skip(f"no Slurm here: {exc} (Debian: apt-get install slurmctld slurmd slurm-client)")
    yield cluster
    cluster.stop()


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlurmCluster]:
    """The cluster for one test: its SLURM_CONF in the environment, launch secrets under ``tmp_path``,
    and no Slurm job or secret file left once the test ends."""
    slurm_cluster.cancel_all()
    for key, value in slurm_cluster.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    yield slurm_cluster
    queue = subprocess.run(["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True).stdout.strip()
    slurm_cluster.cancel_all()
    assert not queue, f"Slurm jobs left behind: {queue}"
    left = list((tmp_path / "state" / "crew" / "launch-secrets").glob("*"))
    assert not left, f"launch secret files left behind: {left}"
