"""Thin wrappers around ``sbatch``, ``squeue`` and ``scancel`` that turn refusals into crew errors."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping

from crew_core.plugin import WorkerLaunchError

#: Job states in which the worker process exists or will exist soon.
ACTIVE_STATES = frozenset(
    {"PENDING", "CONFIGURING", "RUNNING", "SUSPENDED", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING",
     "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}
)  # fmt: skip


class SlurmCommandError(RuntimeError):
    """A Slurm client command failed for a reason other than the request itself."""


#: The controller's secrets, which its own environment may hold: never exported to a job.
_NOT_EXPORTED = frozenset({"CREW_SECRET", "CREW_INNER_SECRET", "CREW_SECRET_FILE"})


def _run(
    command: list[str], stdin: str | None = None, timeout: float = 60.0, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    if shutil.which(command[0]) is None:
        raise WorkerLaunchError(
            f"{command[0]} is not on PATH: run the crew on a Slurm login node (or `module load slurm`)"
        )
    environment = None
    if env is not None:  # what the command (and the job sbatch makes) inherits
        environment = {k: v for k, v in os.environ.items() if k not in _NOT_EXPORTED} | dict(env)
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout, env=environment)


def sbatch(script: str, options: Iterable[str], environment: Mapping[str, str] | None = None) -> str:
    """Submit ``script`` (read from stdin) and return the job id; refusals become WorkerLaunchError.

    ``environment`` is added to sbatch's own environment, which the job inherits (``--export``
    defaults to ALL) and Slurm keeps with the job's record: nothing secret goes there. The
    controller's own ``CREW_SECRET`` (a named crew's key) is left out.
    """
    out = _run(["sbatch", "--parsable", *options], stdin=script, env=environment or {})
    if out.returncode != 0:
        message = " ".join(line.strip() for line in out.stderr.splitlines() if line.strip()) or "no message"
        raise WorkerLaunchError(f"Slurm refused the worker job: {message}")
    return out.stdout.strip().split(";")[0]  # "<id>" or "<id>;<cluster>"


def squeue_states(job_ids: Iterable[str], reasons: dict[str, str] | None = None) -> dict[str, str]:
    """``{job id: state}`` of the given jobs (array tasks as ``<id>_<task>``) in one call.

    Jobs Slurm has forgotten are missing from the result. ``reasons`` gets Slurm's reason for
    each job's state (``NonZeroExitCode``, ``OutOfMemory``, ...), where it gives one.
    """
    ids = sorted({job_id.split("_")[0] for job_id in job_ids})
    if not ids:
        return {}
    out = _run(["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%r", f"--jobs={','.join(ids)}"])
    if out.returncode != 0:
        if "Invalid job id" in out.stderr:
            return {}  # every job listed has ended and been purged
        raise SlurmCommandError(f"squeue failed: {out.stderr.strip()}")
    states = {}
    for line in out.stdout.splitlines():
        job_id, _, rest = line.strip().partition("|")
        state, _, reason = rest.partition("|")
        if job_id:
            states[job_id] = state
            if reasons is not None and reason and reason != "None":
                reasons[job_id] = reason
    return states


def scancel(job_ids: Iterable[str]) -> None:
    """Cancel jobs; ones that already ended are ignored."""
    ids = list(job_ids)
    if not ids:
        return
    out = _run(["scancel", *ids])
    if out.returncode != 0 and "Invalid job id" not in out.stderr and "already completing" not in out.stderr:
        raise SlurmCommandError(f"scancel failed: {out.stderr.strip()}")


@functools.cache
def cluster_name() -> str:
    """The name of the Slurm cluster this machine's commands talk to (``ClusterName``)."""
    out = _run(["scontrol", "show", "config"])
    if out.returncode != 0:
        raise SlurmCommandError(f"scontrol show config failed: {out.stderr.strip()}")
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ClusterName":
            return value.strip()
    return ""


def my_jobs() -> list[tuple[str, str, str]]:
    """``(job id, state, comment)`` of this user's jobs that have not ended, array tasks one each."""
    out = _run(["squeue", "--me", "--noheader", "--array", "--format=%i|%T|%k"])
    if out.returncode != 0:
        raise SlurmCommandError(f"squeue failed: {out.stderr.strip()}")
    jobs = []
    for line in out.stdout.splitlines():
        job_id, _, rest = line.strip().partition("|")
        state, _, comment = rest.partition("|")
        if job_id and state in ACTIVE_STATES:
            jobs.append((job_id, state, comment))
    return jobs
