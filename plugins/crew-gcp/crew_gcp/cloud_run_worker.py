"""Workers as Cloud Run job executions: each worker is one execution of a Cloud Run job.

A launch's secrets reach the execution through Secret Manager (:mod:`crew_gcp.run_secrets`):
the RunJob override names a secret version, never the value.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from crew_core.plugin import LABEL_ENV, BackendJob, Launch, Worker, WorkerLaunchError, end_each, launch_in

from . import run_secrets
from .clients import launch_error, run_clients

__all__ = ["ENDPOINT_ENV", "CloudRunWorker", "run_clients"]

#: Where ``find`` and ``end`` reach Cloud Run when not at Google's own endpoint (gcloud's variable).
ENDPOINT_ENV = "CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN"


class CloudRunWorker(Worker):
    """One execution of a Cloud Run job per worker.

    Name an existing job with ``job="projects/P/locations/L/jobs/J"`` (or ``job="J"`` with
    ``project`` and ``region``): its container must run ``python`` (command or entry point), and
    crew passes the worker's arguments as the execution's container ``args``. Or give ``image``
    (plus ``cpu``, ``memory``, ``project``, ``region``): crew creates or updates a job named
    ``job`` (default ``crew-worker-<hash of the settings>``) with that image and resources, since
    RunJob overrides only allow args, env, task count and timeout. Other options: ``env``,
    ``execution_timeout`` (seconds), ``api_endpoint`` (a regional or local endpoint), and for the
    launch's secrets (kept in Secret Manager, in the job's project, until the execution has read
    them) ``secret_ttl`` (seconds before Secret Manager deletes one that crew could not) and
    ``secret_manager_endpoint``.
    """

    worker_class = "cloud-run"
    status_interval = 5.0  # one ListExecutions per Cloud Run job per poll
    default_timeout = 900.0  # an idle execution still bills its CPU and memory
    start_concurrency = 16  # parallel RunJob calls when many workers launch

    def __init__(
        self,
        name: str,
        *,
        tags: Iterable[str] | str | None = None,
        timeout: float | None = None,
        job: str | None = None,
        project: str | None = None,
        region: str | None = None,
        image: str | None = None,
        cpu: str | None = None,
        memory: str | None = None,
        env: dict[str, str] | None = None,
        execution_timeout: float | None = None,
        python: str = "python",
        api_endpoint: str | None = None,
        secret_ttl: float = run_secrets.DEFAULT_TTL,
        secret_manager_endpoint: str | None = None,
    ) -> None:
        super().__init__(name, tags=tags, timeout=timeout)
        if job is None and image is None:
            raise TypeError("cloud-run workers need job= (an existing Cloud Run job) or image= (crew creates one)")
        self.image, self.cpu, self.memory = image, cpu, memory
        self.env = dict(env or {})
        self.execution_timeout = execution_timeout
        self.python = python  # type: ignore[misc]
        self.api_endpoint = api_endpoint
        self.launch_secrets = run_secrets.LaunchSecrets(name, secret_ttl, secret_manager_endpoint)
        self.job = self._job_name(job, project, region)
        self.execution: str | None = None
        self._cause: str | None = None  # how the last execution ended, as Cloud Run said

    def _job_name(self, job: str | None, project: str | None, region: str | None) -> str:
        if job is not None and job.startswith("projects/"):
            parts = job.split("/")
            if len(parts) != 6 or parts[2] != "locations" or parts[4] != "jobs":
                raise TypeError(f"job must look like projects/P/locations/L/jobs/J, not {job!r}")
            return job
        if not project or not region:
            raise TypeError("give job='projects/P/locations/L/jobs/J', or project= and region= with job= or image=")
        if job is None:
            digest = hashlib.sha256(repr((self.image, self.cpu, self.memory, self.python)).encode()).hexdigest()
            job = f"crew-worker-{digest[:10]}"
        return f"projects/{project}/locations/{region}/jobs/{job}"

    @property
    def clients(self) -> tuple[Any, Any]:
        return run_clients(self.api_endpoint)

    # ------------------------------------------------------------------ the job
    def _template(self) -> Any:
        from google.cloud import run_v2

        container = run_v2.Container(
            image=self.image, command=[self.python], resources=run_v2.ResourceRequirements(limits=self._limits())
        )
        task = run_v2.TaskTemplate(containers=[container], max_retries=0)  # crew owns retries
        return run_v2.Job(template=run_v2.ExecutionTemplate(task_count=1, template=task))

    def ensure_job(self) -> None:
        """Check the job exists; with ``image=``, create or update it to match first."""
        from google.api_core.exceptions import NotFound

        what = f"launch worker {self.name!r}"
        try:
            jobs, _ = self.clients
            current = jobs.get_job(name=self.job)
        except NotFound as exc:
            if self.image is None:
                project, region, job = self.job.split("/")[1::2]
                raise WorkerLaunchError(
                    f"cannot {what}: Cloud Run job {job!r} does not exist in project {project!r}, region"
                    f" {region!r}; create it (its container must run python) or pass image= to let crew"
                ) from exc
            current = None
        except Exception as exc:
            raise launch_error(exc, what) from exc
        if self.image is None:
            retries = _retries(current.template.template)
            if retries:
                project, region, job = self.job.split("/")[1::2]
                raise WorkerLaunchError(
                    f"cannot {what}: Cloud Run job {job!r} starts a failed task again {retries} time(s) on its own,"
                    " behind crew's back (crew counts a job's tries and relaunches workers itself); set"
                    f" `gcloud run jobs update {job} --max-retries=0 --region={region} --project={project}`,"
                    " or pass image= to let crew manage the job"
                )
            return
        try:
            if current is None:
                parent, _, job_id = self.job.rpartition("/jobs/")
                jobs.create_job(parent=parent, job=self._template(), job_id=job_id).result(timeout=300)
            elif self._differs(current.template.template.containers[0]) or _retries(current.template.template):
                # Change only what crew manages: the job's service account, env, VPC access and
                # secrets stay as their owner set them.
                container = current.template.template.containers[0]
                container.image, container.command = self.image, [self.python]
                for key, value in self._limits().items():
                    container.resources.limits[key] = value
                current.template.template.max_retries = 0  # crew owns retries
                jobs.update_job(job=current).result(timeout=300)
        except Exception as exc:
            raise launch_error(exc, what) from exc

    def _limits(self) -> dict[str, str]:
        return {key: value for key, value in (("cpu", self.cpu), ("memory", self.memory)) if value}

    def _differs(self, container: Any) -> bool:
        """Whether the job's container differs in what this worker asks for (cpu in any unit)."""
        have = dict(container.resources.limits)
        limits = any(_normal(key, have.get(key)) != _normal(key, value) for key, value in self._limits().items())
        return container.image != self.image or list(container.command) != [self.python] or limits

    def run_request(self, launch: Launch, secrets: Iterable[run_secrets.SecretRef] = ()) -> Any:
        """The RunJob request: the worker's arguments, its env with ``secrets`` by reference (never
        ``launch.secrets`` themselves), one task, the timeout."""
        from google.cloud import run_v2

        refs = {ref.variable: ref for ref in secrets}
        variables = {k: v for k, v in {**self.env, **launch.environment}.items() if k not in refs}
        env = [run_v2.EnvVar(name=k, value=v) for k, v in sorted(variables.items())]
        override = run_v2.RunJobRequest.Overrides.ContainerOverride(
            args=launch.command(self.python)[1:], env=env + [refs[name].env_var() for name in sorted(refs)]
        )
        overrides = run_v2.RunJobRequest.Overrides(container_overrides=[override], task_count=1)
        if self.execution_timeout is not None:
            overrides.timeout = f"{int(self.execution_timeout)}s"
        return run_v2.RunJobRequest(name=self.job, overrides=overrides)

    # ------------------------------------------------------------------ the Worker verbs
    def start(self, launch: Launch) -> None:
        self.execution, self._cause = None, None
        self.launch_secrets.release()  # an earlier launch's, if its end was not seen
        refs = self.launch_secrets.create(launch, self.job)
        try:
            execution = self.clients[0].run_job(request=self.run_request(launch, refs)).metadata.name
        except Exception as exc:
            self.launch_secrets.release()  # no execution will read them
            raise launch_error(exc, f"launch worker {self.name!r}") from exc
        self.launch_secrets.started(execution)
        self.execution = execution

    @classmethod
    def start_many(cls, launches: list[tuple[Any, Launch]]) -> None:
        """Check (or create) each job once, then run executions 16 at a time; all or nothing."""
        checked = set()
        for worker, _ in launches:
            if (worker.api_endpoint, worker.job) not in checked:
                worker.ensure_job()
                checked.add((worker.api_endpoint, worker.job))
        super().start_many(launches)

    def is_running(self) -> bool:
        return type(self).running([self])[self.name]

    @classmethod
    def running(cls, workers: list[Any]) -> dict[str, bool]:
        """One ListExecutions per Cloud Run job, whatever the number of workers on it."""
        causes: dict[str, str] = {}
        read: set[str] = set()
        executions = {w.name: w.execution for w in workers}  # a launch may start meanwhile
        states = cls.states(workers, causes, read)
        answers = {}
        for w in workers:
            execution = executions[w.name]
            state = states.get(execution or "", "GONE")
            answers[w.name] = state in ("RUNNING", "UNKNOWN")
            if execution and not answers[w.name]:
                w._cause = causes.get(execution, f"its Cloud Run execution {execution} is {state}")
            if execution and (execution in read or state == "GONE"):  # its task has read its secrets
                w.launch_secrets.release(execution)
        return answers

    def exit_cause(self) -> str | None:
        return self._cause

    @classmethod
    def states(
        cls, workers: list[Any], causes: dict[str, str] | None = None, read: set[str] | None = None
    ) -> dict[str, str]:
        """``{execution: RUNNING | SUCCEEDED | FAILED | CANCELLED | GONE | UNKNOWN}``; ``causes``
        gets, for each ended execution, its state and the message of its conditions; ``read``
        gets the executions whose task's container has started (and so read its secrets) or
        that have ended."""
        groups: dict[tuple[str | None, str], list[str]] = {}
        for worker in workers:
            if worker.execution:
                groups.setdefault((worker.api_endpoint, worker.job), []).append(worker.execution)
        states: dict[str, str] = {}
        for (endpoint, job), names in groups.items():
            wanted, listed = set(names), {}
            try:
                for execution in run_clients(endpoint)[1].list_executions(parent=job):  # pages lazily
                    listed[execution.name] = execution
                    if wanted <= listed.keys():
                        break  # a long-lived job keeps old executions: stop once ours are all seen
            except Exception as exc:  # unreachable: "unknown" (running); heartbeats still find dead workers
                warnings.warn(f"cannot ask Cloud Run about {len(names)} worker(s), assuming they still run: {exc}",
                              stacklevel=2)  # fmt: skip
                states.update(dict.fromkeys(names, "UNKNOWN"))
                continue
            for name in names:
                execution = listed.get(name)
                states[name] = "GONE" if execution is None else _state(execution)
                if read is not None and execution is not None and _has_read_its_secrets(execution):
                    read.add(name)
                if causes is not None and execution is not None and states[name] != "RUNNING":
                    said = "; ".join(c.message for c in execution.conditions if c.message)
                    causes[name] = f"its Cloud Run execution {name} {states[name]}" + (f": {said}" if said else "")
        return states

    def state(self) -> str | None:
        return type(self).states([self]).get(self.execution) if self.execution else None

    # ------------------------------------------------------------------ finding workers by crew
    def place(self) -> dict[str, Any] | None:
        """The Cloud Run job (``projects/P/locations/L/jobs/J``); the endpoint comes from the
        environment of whoever looks (``CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN``), never the store."""
        return {"job": self.job}

    @classmethod
    def find(cls, label: str, place: Mapping[str, Any], via: Worker | None = None) -> list[BackendJob]:
        """The job's executions that have not completed and whose container's environment carries
        the crew's label (``CREW_LABEL``, an override the execution shows); its arguments say
        which worker and launch."""
        job = place.get("job")
        if not isinstance(job, str) or len(job.split("/")) != 6 or not job.startswith("projects/"):
            raise ValueError(f"a Cloud Run place names a job, projects/P/locations/L/jobs/J, not {dict(place)!r}")
        found = []
        for execution in run_clients(_endpoint(via))[1].list_executions(parent=job):
            if execution.completion_time:
                continue
            for container in execution.template.containers:
                env = {variable.name: variable.value for variable in container.env}
                launch = launch_in(list(container.args))
                if launch is not None and env.get(LABEL_ENV) == label:
                    found.append(BackendJob(cls.worker_class, label, execution.name, "RUNNING", launch.worker,
                                            launch.incarnation, dict(place)))  # fmt: skip
        return found

    @classmethod
    def end(cls, jobs: list[BackendJob], via: Worker | None = None) -> None:
        """CancelExecution each (one that has completed or gone is no error), then delete the
        secrets that the crew's launches left at each job and that nothing will read: those of
        the launches ended here, and of those that have ended before (by the crew's label)."""
        from google.api_core.exceptions import FailedPrecondition, NotFound

        def cancel(job: BackendJob) -> None:
            with contextlib.suppress(NotFound, FailedPrecondition):
                run_clients(_endpoint(via))[1].cancel_execution(name=job.id)

        problems = []
        try:
            end_each(jobs, cancel)
        except WorkerLaunchError as exc:
            problems.append(str(exc))
        by_crew: dict[tuple[str, str], set[tuple[str, int]]] = {}
        for job in jobs:
            by_crew.setdefault((job.label, str(job.place.get("job"))), set()).add((job.worker, job.incarnation))
        for (label, job_name), ended in by_crew.items():
            try:
                running = {(j.worker, j.incarnation) for j in cls.find(label, {"job": job_name}, via)} - ended
                run_secrets.delete_left(label, job_name, running, _secret_endpoint(via))
            except Exception as exc:
                problems.append(f"could not delete the launch secrets crew {label!r} left in Secret Manager for"
                                f" {job_name} ({exc}): delete the secrets labelled {run_secrets.LABEL_KEY}="
                                f"{run_secrets.label_value(label)}, or let them expire")  # fmt: skip
        if problems:
            raise WorkerLaunchError("; ".join(problems))

    @classmethod
    def forget(cls, label: str, place: Mapping[str, Any]) -> None:
        """Delete the launch secrets the crew left at the place's job for launches no longer running."""
        job_name = place.get("job")
        if not isinstance(job_name, str):
            raise ValueError(f"a Cloud Run place names its job (a string), not {dict(place)!r}")
        running = {(j.worker, j.incarnation) for j in cls.find(label, place)}
        run_secrets.delete_left(label, job_name, running, _secret_endpoint(None))

    def kill(self) -> None:
        from google.api_core.exceptions import NotFound

        try:
            if self.execution is not None:
                self.clients[1].cancel_execution(name=self.execution)
        except NotFound:
            pass
        except Exception as exc:
            raise launch_error(exc, f"cancel worker {self.name!r}") from exc
        finally:
            self.launch_secrets.release()  # a cancelled execution starts no task that would read them

    def close(self) -> None:
        """Delete whatever launch secrets are left (the worker is down for good)."""
        self.launch_secrets.release()


def _endpoint(via: Worker | None) -> str | None:
    """A worker's own endpoint, or the one the environment names (never one from the store)."""
    if isinstance(via, CloudRunWorker):
        return via.api_endpoint
    return os.environ.get(ENDPOINT_ENV) or None


def _secret_endpoint(via: Worker | None) -> str | None:
    """Secret Manager's endpoint: as :func:`_endpoint` does for Cloud Run's."""
    if isinstance(via, CloudRunWorker):
        return via.launch_secrets.api_endpoint
    return os.environ.get(run_secrets.ENDPOINT_ENV) or None


def _has_read_its_secrets(execution: Any) -> bool:
    """Cloud Run reads secret references as a task's container starts: a running task has read
    them, and an ended execution starts no more (crew's jobs never retry a task)."""
    return bool(execution.running_count or execution.completion_time)


def _state(execution: Any) -> str:
    if not execution.completion_time:
        return "RUNNING"  # created, starting or running: up
    if execution.cancelled_count:
        return "CANCELLED"
    if execution.succeeded_count:
        return "SUCCEEDED"
    return "FAILED"


def _normal(key: str, value: str | None) -> str | None:
    """Cloud Run reports cpu "1" as "1000m": compare limits in one unit."""
    if key == "cpu" and value:
        return str(int(float(value[:-1]))) + "m" if value.endswith("m") else str(int(float(value) * 1000)) + "m"
    return value


def _retries(task: Any) -> int:
    """How often Cloud Run starts a failed task of this template again (3 unless set)."""
    return int(task.max_retries) if "max_retries" in task else 3
