"""A real single-node Slurm cluster for the whole test session, stopped at its end."""

from __future__ import annotations

import os

import pytest
from crew_slurm.testing import SlurmCluster, SlurmUnavailable


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Slurm tests, but Slurm could not start: {exc}")
        pytest.skip(f"no Slurm here: {exc} (Debian: apt-get install slurmctld slurmd slurm-client)")
    previous = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env)  # sbatch, squeue and scancel find this cluster
    yield cluster
    cluster.stop()
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous


@pytest.fixture
def slurm(slurm_cluster, tmp_path, monkeypatch):
    """The cluster, with no job left over from the previous test; launches' secret files go to
    the test's own folder (the node shares it), and none is left once the test ends."""
    slurm_cluster.cancel_all()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    yield slurm_cluster
    slurm_cluster.cancel_all()
    left = list((tmp_path / "state" / "crew" / "launch-secrets").glob("*"))
    assert not left, f"launch secret files left behind: {left}"
