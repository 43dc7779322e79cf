"""crew-slurm's entry point: registers the ``slurm`` worker class."""

from __future__ import annotations

from crew_core.plugin import hookimpl


@hookimpl
def crew_register_workers(registry):
    from .worker import SlurmWorker

    registry.add("slurm", SlurmWorker)
