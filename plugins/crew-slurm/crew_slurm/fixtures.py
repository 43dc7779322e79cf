"""pytest fixtures for tests that need a real Slurm: import them into a ``conftest.py``.

    from crew_slurm.fixtures import slurm, slurm_cluster  # noqa: F401  (pytest finds them by name)

``slurm_cluster`` starts one single-node cluster (:class:`~crew_slurm.testing.SlurmCluster`) for the
session and stops it at its end; without Slurm's daemons the tests that use it are skipped, and
fail under ``CI``. ``slurm`` gives a test that cluster with no job of an earlier test, launch
secret files under the test's own folder, and fails the test if it left a Slurm job or a secret file.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from crew_slurm.testing import SlurmCluster, SlurmUnavailable


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A real single-node Slurm for the session; ``sbatch``, ``squeue`` and ``scancel`` find it."""
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Slurm tests, but Slurm could not start: {exc}")
        pytest.skip(f"no Slurm here: {exc} (Debian: apt-get install slurmctld slurmd slurm-client)")
    with pytest.MonkeyPatch.context() as environment:  # restored after the cluster stops
        for key, value in cluster.env.items():
            environment.setenv(key, value)
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlurmCluster]:
    """The session's cluster for one test, which must leave no Slurm job and no launch secret file."""
    slurm_cluster.cancel_all()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # where launches' secret files go
    yield slurm_cluster
    queue = subprocess.run(["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True).stdout.strip()
    slurm_cluster.cancel_all()
    assert not queue, f"Slurm jobs left behind: {queue}"
    left = list((tmp_path / "state" / "crew" / "launch-secrets").glob("*"))
    assert not left, f"launch secret files left behind: {left}"
