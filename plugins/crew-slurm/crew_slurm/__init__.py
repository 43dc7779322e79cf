"""crew-slurm: crew workers as Slurm jobs."""

from .worker import SlurmWorker

__all__ = ["SlurmWorker"]
