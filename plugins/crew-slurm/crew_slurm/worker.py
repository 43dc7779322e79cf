"""Workers as Slurm jobs: one batch job (or one array task) per worker."""

from __future__ import annotations

import os
import shlex
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from crew_core.plugin import (
    SECRET_FILE_ENV,
    BackendJob,
    Launch,
    Worker,
    WorkerLaunchError,
    remove_secret_file,
    write_secret_file,
)

from . import commands


class SlurmWorker(Worker):
    """One Slurm job running ``python -m crew_core worker``.

    Options mirror ``sbatch``: ``partition``, ``cpus`` (``--cpus-per-task``), ``memory``
    (``--mem``, e.g. ``"8G"``), ``time`` (``--time``), ``gres``, ``account``, ``qos``, plus
    ``sbatch_args`` for anything else, ``python`` (the interpreter on the compute nodes; by
    default the controller's, which a shared file system makes the same path), ``env`` (extra
    environment variables) and ``log_dir`` (where each job writes its output; default
    ``./crew-slurm-logs``). The store must be on a file system every node sees, or a cloud store.
    """

    worker_class = "slurm"
    status_interval = 1.0  # one squeue call per poll for every Slurm worker of the crew
    default_timeout = 900.0  # an idle job still holds its allocation from other users

    def __init__(
        self,
        name: str,
        *,
        tags: Iterable[str] | str | None = None,
        timeout: float | None = None,
        partition: str | None = None,
        cpus: int | None = None,
        memory: str | None = None,
        time: str | None = None,
        gres: str | None = None,
        account: str | None = None,
        qos: str | None = None,
        sbatch_args: Sequence[str] = (),
        python: str | None = None,
        env: dict[str, str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(name, tags=tags, timeout=timeout)
        if isinstance(sbatch_args, str):
            raise TypeError("sbatch_args is a list of arguments, e.g. ['--qos=normal']")
        self.partition, self.cpus, self.memory, self.time = partition, cpus, memory, time
        self.gres, self.account, self.qos = gres, account, qos
        self.sbatch_args = list(sbatch_args)
        self.python = python or sys.executable  # type: ignore[misc]
        self.env = dict(env or {})
        self.log_dir = Path(log_dir if log_dir is not None else "crew-slurm-logs").absolute()
        self.job_id: str | None = None
        self._cause: str | None = None  # how the last job ended, as squeue said (running() learns it)
        self._secret_file: Path | None = None  # the launch's secrets, until the worker reads them

    # ------------------------------------------------------------------ sbatch
    def sbatch_options(self) -> list[str]:
        """The ``sbatch`` options of this worker's job (without ``--array`` and ``--output``)."""
        options = []
        for flag, value in (
            ("--partition", self.partition),
            ("--cpus-per-task", self.cpus),
            ("--mem", self.memory),
            ("--time", self.time),
            ("--gres", self.gres),
            ("--account", self.account),
            ("--qos", self.qos),
        ):
            if value is not None:
                options.append(f"{flag}={value}")
        # Slurm must not requeue a preempted or failed worker on its own: crew owns retries.
        return [*options, "--no-requeue", *self.sbatch_args]

    def _command(self, launch: Launch) -> str:
        # The launch's key goes in a file of mode 600 that the worker reads and deletes at start:
        # a Slurm job's environment is kept with the job record, where others may read it.
        self._forget_secret()
        if launch.secrets:
            self._secret_file = write_secret_file(launch.secrets)
            prefix = f"{SECRET_FILE_ENV}={shlex.quote(str(self._secret_file))} "
        else:
            prefix = ""
        return prefix + shlex.join(["exec", *launch.command(self.python)])

    def _forget_secret(self) -> None:
        """Delete the launch's secret file if its worker never read it (it never started)."""
        if self._secret_file is not None:
            remove_secret_file(self._secret_file)
            self._secret_file = None

    def _exports(self) -> list[str]:
        # Functions pickled by reference need the controller's import path on the node.
        path = os.pathsep.join(p for p in [*sys.path, os.environ.get("PYTHONPATH", "")] if p)
        variables = {"PYTHONPATH": path, **self.env}
        return [f"export {key}={shlex.quote(value)}" for key, value in variables.items()]

    def start(self, launch: Launch) -> None:
        type(self).start_many([(self, launch)])

    @classmethod
    def start_many(cls, launches: list[tuple[Any, Launch]]) -> None:
        """Submit one job array per group of workers with the same options (one sbatch each)."""
        groups: dict[tuple[Any, ...], list[tuple[SlurmWorker, Launch]]] = {}
        for worker, launch in launches:
            environment = tuple(sorted(launch.environment.items()))
            key = (tuple(worker.sbatch_options()), worker.log_dir, worker.python, tuple(sorted(worker.env.items())),
                   environment)  # fmt: skip
            groups.setdefault(key, []).append((worker, launch))
        submitted: list[SlurmWorker] = []
        try:
            for group in groups.values():
                cls._submit(group)
                submitted.extend(worker for worker, _ in group)
        except BaseException as error:
            for worker, _ in launches:
                worker._forget_secret()
            try:
                commands.scancel(w.job_id for w in submitted if w.job_id)  # all or nothing
            except Exception as exc:
                error.add_note(f"also failed to cancel the jobs submitted before: {exc}")
            raise

    @classmethod
    def _submit(cls, group: list[tuple[SlurmWorker, Launch]]) -> None:
        first, launch = group[0]
        first.log_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "#!/bin/bash",
            "# Written by crew-slurm: starts crew workers. Jobs' data travels through the store, not here.",
            *first._exports(),
        ]
        options = first.sbatch_options()
        if len(group) == 1:
            lines.append(first._command(launch))
            options += [f"--job-name=crew-{first.name}", f"--output={first.log_dir}/%x-%j.out"]
        else:
            lines.append('case "$SLURM_ARRAY_TASK_ID" in')
            lines += [f"  {index}) {worker._command(launch)} ;;" for index, (worker, launch) in enumerate(group)]
            lines += ["esac", 'echo "crew-slurm: no worker for array task $SLURM_ARRAY_TASK_ID" >&2', "exit 2"]
            options += [
                f"--array=0-{len(group) - 1}",
                "--job-name=crew-workers",
                f"--output={first.log_dir}/%x-%A_%a.out",
            ]
        options.append(f"--comment={comment(launch.label, [(w.name, lc.incarnation) for w, lc in group])}")
        job_id = commands.sbatch("\n".join(lines) + "\n", options, launch.environment)
        for index, (worker, _) in enumerate(group):
            worker.job_id = job_id if len(group) == 1 else f"{job_id}_{index}"
            worker._cause = None

    # ------------------------------------------------------------------ status and stop
    def is_running(self) -> bool:
        return type(self).running([self])[self.name]

    @classmethod
    def running(cls, workers: list[Any]) -> dict[str, bool]:
        """One ``squeue`` call for all of them; a job Slurm no longer lists has ended."""
        reasons: dict[str, str] = {}
        try:
            states = commands.squeue_states((w.job_id for w in workers if w.job_id), reasons)
        except commands.SlurmCommandError as exc:
            # The controller daemon is briefly unreachable: assume nothing changed. Heartbeats
            # still catch a worker that really died.
            warnings.warn(f"cannot read Slurm job states, assuming unchanged: {exc}", stacklevel=2)
            return {w.name: w.job_id is not None for w in workers}
        answers = {}
        for w in workers:
            state = states.get(w.job_id) if w.job_id else None
            answers[w.name] = state in commands.ACTIVE_STATES
            if w.job_id and not answers[w.name]:
                w._forget_secret()
                reason = reasons.get(w.job_id)
                w._cause = (
                    f"its Slurm job {w.job_id} ended in state {state}" + (f" ({reason})" if reason else "")
                    if state
                    else f"its Slurm job {w.job_id} is no longer listed by squeue (ended and purged)"
                )
        return answers

    def exit_cause(self) -> str | None:
        return self._cause

    def state(self) -> str | None:
        """Slurm's state of this worker's job (PENDING, RUNNING, COMPLETED, ...), or None."""
        if self.job_id is None:
            return None
        return commands.squeue_states([self.job_id]).get(self.job_id)

    # ------------------------------------------------------------------ finding workers by crew
    def place(self) -> dict[str, Any] | None:
        """The cluster: ``find`` asks its ``squeue`` for this user's jobs."""
        return {"cluster": commands.cluster_name()}

    @classmethod
    def find(cls, label: str, place: Mapping[str, Any], via: Worker | None = None) -> list[BackendJob]:
        """This user's pending and running jobs whose comment carries the crew's label (one squeue call)."""
        here = commands.cluster_name()
        if place.get("cluster") != here:
            raise WorkerLaunchError(f"these workers run on Slurm cluster {place.get('cluster')!r}, not {here!r}:"
                                    " run crew stop on one of its login nodes")  # fmt: skip
        found = []
        for job_id, state, text in commands.my_jobs():
            workers = _crew_workers(text, label)
            if workers is None:
                continue
            task = job_id.partition("_")[2]
            index = int(task) if task.isdigit() else 0
            worker, incarnation = workers[index] if index < len(workers) else ("", 0)
            found.append(BackendJob(cls.worker_class, label, job_id, state, worker, incarnation, dict(place)))
        return found

    @classmethod
    def end(cls, jobs: list[BackendJob], via: Worker | None = None) -> None:
        """``scancel`` them all in one call (pending ones never start)."""
        commands.scancel(job.id for job in jobs)

    def kill(self) -> None:
        if self.job_id is not None:
            commands.scancel([self.job_id])
        self._forget_secret()

    def log_file(self) -> Path | None:
        """Where this worker's job writes its output (once it has started)."""
        if self.job_id is None:
            return None
        if "_" in self.job_id:
            array_id, task = self.job_id.split("_")
            return self.log_dir / f"crew-workers-{array_id}_{task}.out"
        return self.log_dir / f"crew-{self.name}-{self.job_id}.out"


def comment(label: str, workers: list[tuple[str, int]]) -> str:
    """The job's ``--comment``, ``crew=<label> workers=<name>:<incarnation>,...`` (one per array
    task): how ``find`` knows the crew's jobs."""
    return f"crew={label} workers=" + ",".join(f"{name}:{incarnation}" for name, incarnation in workers)


def _crew_workers(text: str, label: str) -> list[tuple[str, int]] | None:
    """The workers a job comment names if it is one of the crew labelled ``label``'s, else None."""
    fields = dict(part.partition("=")[::2] for part in text.split())
    if fields.get("crew") != label or "workers" not in fields:
        return None
    workers = []
    for item in fields["workers"].split(","):
        name, _, number = item.rpartition(":")
        workers.append((name, int(number) if number.isdigit() else 0))
    return workers
