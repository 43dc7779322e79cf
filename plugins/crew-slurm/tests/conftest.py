"""A real single-node Slurm cluster for the whole test session, stopped at its end."""

from crew_slurm.fixtures import slurm, slurm_cluster  # noqa: F401  (pytest finds fixtures by name)
