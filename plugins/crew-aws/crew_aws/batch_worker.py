"""Workers as AWS Batch jobs: each worker is one Batch job running the core's worker command.

A launch's signing key never travels in the job's overrides: it goes through Secrets Manager (or
SSM) and a job definition revision that names it (:mod:`crew_aws.batch_secrets`).
"""

from __future__ import annotations

import json
import os
import re
import threading
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from crew_core.plugin import BackendJob, Launch, Worker, WorkerLaunchError, end_each

from . import batch_secrets
from .errors import launch_error

#: Batch refuses container overrides over about 8 KiB: payloads never go there, only the command.
OVERRIDES_LIMIT = 8192
#: Jobs a DescribeJobs call takes.
DESCRIBE_BATCH = 100
UP_STATES = frozenset({"SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"})

_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


def batch_client(region: str | None, endpoint_url: str | None, profile: str | None) -> Any:
    """One boto3 Batch client per (region, endpoint, profile) in this process (clients are thread-safe)."""
    key = (region, endpoint_url, profile)
    with _clients_lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            session = boto3.session.Session(profile_name=profile, region_name=region)
            config = Config(retries={"max_attempts": 8, "mode": "adaptive"}, max_pool_connections=16)
            _clients[key] = session.client("batch", endpoint_url=endpoint_url, config=config)
        return _clients[key]


def _tag_key(tag: str) -> str:
    """A Batch tag key for a crew tag: Batch allows letters, digits, spaces and + - = . _ : / @."""
    return ("crew:tag:" + re.sub(r"[^\w .:/=+\-@]", "_", tag))[:128]


class BatchWorker(Worker):
    """One AWS Batch job per worker.

    Required: ``job_queue`` and ``job_definition`` (``name``, ``name:revision`` or an ARN) whose
    image has Python, crew-core, crew-aws and your packages. Optional per-recruit overrides:
    ``vcpus``, ``memory`` (MiB), ``gpus``, ``environment`` (dict), ``job_timeout`` (seconds,
    Batch's attemptDurationSeconds), ``retry_attempts`` (default 1: crew owns retries),
    ``python`` (the interpreter in the image, default ``python``), ``region``,
    ``endpoint_url``, ``profile``. Crew tags become Batch tags ``crew:tag:<tag>``.

    Each launch's key is kept in ``secrets_store`` (``"secretsmanager"``, the default, or
    ``"ssm"``) and named in a revision of the job definition ``crew-<crew id>`` derived from
    ``job_definition``; ECS reads it at the container's start with the definition's execution
    role (or ``execution_role``, an IAM role ARN). Both are removed once the job runs or ends.
    """

    worker_class = "aws-batch"
    status_interval = 5.0  # DescribeJobs for up to 100 workers per call
    default_timeout = 900.0  # an idle Batch job still bills its instance
    start_concurrency = 16  # parallel SubmitJob calls when many workers launch

    def __init__(
        self,
        name: str,
        *,
        tags: Iterable[str] | str | None = None,
        timeout: float | None = None,
        job_queue: str,
        job_definition: str,
        vcpus: float | None = None,
        memory: int | None = None,
        gpus: int | None = None,
        environment: dict[str, str] | None = None,
        job_timeout: int | None = None,
        retry_attempts: int = 1,
        python: str = "python",
        region: str | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        secrets_store: str = "secretsmanager",
        execution_role: str | None = None,
    ) -> None:
        super().__init__(name, tags=tags, timeout=timeout)
        self.keys = batch_secrets.LaunchKeys(name, secrets_store, execution_role)  # each launch's, while needed
        self.job_queue, self.job_definition = job_queue, job_definition
        self.vcpus, self.memory, self.gpus = vcpus, memory, gpus
        self.environment = dict(environment or {})
        self.job_timeout, self.retry_attempts = job_timeout, retry_attempts
        self.python = python  # type: ignore[misc]
        self.region, self.endpoint_url, self.profile = region, endpoint_url, profile
        self.job_id: str | None = None
        self._cause: str | None = None  # how the last job ended, as Batch said (running() learns it)
        self._source: dict[str, Any] | None = None  # the job definition launches derive from (_check_targets)

    @property
    def client(self) -> Any:
        return batch_client(self.region, self.endpoint_url, self.profile)

    # ------------------------------------------------------------------ submitting
    def submit_request(self, launch: Launch) -> dict[str, Any]:
        """The SubmitJob request of this worker: the command and resources, never a job's data,
        never the launch's secrets (``start`` swaps in the job definition revision that names them)."""
        requirements = [
            {"type": kind, "value": f"{value:g}" if isinstance(value, float) else str(value)}
            for kind, value in (("VCPU", self.vcpus), ("MEMORY", self.memory), ("GPU", self.gpus))
            if value is not None
        ]
        overrides: dict[str, Any] = {"command": launch.command(self.python)}
        environment = {**self.environment, **launch.environment}
        if environment:
            overrides["environment"] = [{"name": k, "value": v} for k, v in sorted(environment.items())]
        if requirements:
            overrides["resourceRequirements"] = requirements
        size = len(json.dumps(overrides))
        if size > OVERRIDES_LIMIT:
            raise WorkerLaunchError(
                f"worker {self.name!r}: container overrides are {size} bytes, over Batch's {OVERRIDES_LIMIT};"
                " move environment variables into the job definition"
            )
        request: dict[str, Any] = {
            "jobName": job_name(launch.crew, self.name),
            "jobQueue": self.job_queue,
            "jobDefinition": self.job_definition,
            "containerOverrides": overrides,
            "retryStrategy": {"attempts": self.retry_attempts},
            "tags": {
                "crew:crew": launch.crew,
                "crew:label": launch.label,  # the crew's id and store: what find() matches
                "crew:worker": self.name,
                "crew:incarnation": str(launch.incarnation),
                **{_tag_key(t): "true" for t in sorted(self.tags)},
            },
        }
        if self.job_timeout is not None:
            if self.job_timeout < 60:
                raise WorkerLaunchError(f"worker {self.name!r}: job_timeout must be at least 60 s (Batch's minimum)")
            request["timeout"] = {"attemptDurationSeconds": int(self.job_timeout)}
        return request

    def _check_targets(self) -> dict[str, Any]:
        """Refuse a missing queue or job definition before submitting anything; return the
        definition (its active revision that a bare name means), which launches derive from."""
        what = f"launch worker {self.name!r}"
        try:
            queues = self.client.describe_job_queues(jobQueues=[self.job_queue]).get("jobQueues", [])
            if ":" in self.job_definition:  # name:revision or an ARN: jobDefinitions, alone
                found = self.client.describe_job_definitions(jobDefinitions=[self.job_definition])["jobDefinitions"]
            else:  # a bare name: its active revisions, all pages (the latest is the one Batch would run)
                pages = self.client.get_paginator("describe_job_definitions").paginate(
                    jobDefinitionName=self.job_definition, status="ACTIVE"
                )
                found = [d for page in pages for d in page["jobDefinitions"]]
        except Exception as exc:
            raise launch_error(exc, what) from exc
        where = f"in region {self.client.meta.region_name}"
        if not queues:
            raise WorkerLaunchError(f"cannot {what}: job queue {self.job_queue!r} does not exist {where}")
        if queues[0].get("state") != "ENABLED":
            raise WorkerLaunchError(f"cannot {what}: job queue {self.job_queue!r} is {queues[0].get('state')}")
        active = [d for d in found if d.get("status", "ACTIVE") == "ACTIVE"]
        if not active:
            raise WorkerLaunchError(
                f"cannot {what}: job definition {self.job_definition!r} does not exist (or is inactive) {where}"
            )
        source: dict[str, Any] = max(active, key=lambda d: int(d.get("revision", 0)))
        if not source.get("containerProperties"):
            raise WorkerLaunchError(f"cannot {what}: job definition {self.job_definition!r} is not a container job"
                                    " definition (containerProperties): crew-aws runs container jobs")  # fmt: skip
        if not (self.keys.execution_role or source["containerProperties"].get("executionRoleArn")):
            raise WorkerLaunchError(
                f"cannot {what}: job definition {self.job_definition!r} has no executionRoleArn, the role with"
                f" which Batch reads the launch's key from {self._store_name()} as the job starts: register"
                " it with one, or pass execution_role= (see crew-aws's README for the role's permissions)"
            )
        return source

    def _store_name(self) -> str:
        return "SSM Parameter Store" if self.keys.store == "ssm" else "Secrets Manager"

    def start(self, launch: Launch) -> None:
        self.keys.release()  # an earlier launch's, if still held: it has ended (only a down worker is launched)
        self.job_id, self._cause = None, None
        what = f"launch worker {self.name!r}"
        request = self.submit_request(launch)  # refuses bad settings before anything is made
        if launch.secrets:
            if self._source is None:
                self._source = self._check_targets()
            try:
                request["jobDefinition"] = self.keys.make(self.client, self.profile, self._source, launch)
            except Exception as exc:
                batch = getattr(exc, "operation_name", "").endswith("JobDefinition")
                raise launch_error(
                    exc, f"{what} (keeping its key)", "AWS Batch" if batch else self._store_name()
                ) from exc
        try:
            self.job_id = self.client.submit_job(**request)["jobId"]
        except Exception as exc:
            self.keys.release()
            raise launch_error(exc, what) from exc
        self.keys.submitted(self.job_id)

    @classmethod
    def start_many(cls, launches: list[tuple[Any, Launch]]) -> None:
        """Check each queue and job definition once, then submit 16 at a time; all or nothing."""
        sources: dict[tuple[Any, ...], dict[str, Any]] = {}
        for worker, _ in launches:
            target = (worker.region, worker.endpoint_url, worker.profile, worker.job_queue, worker.job_definition)
            if target not in sources:
                sources[target] = worker._check_targets()
            worker._source = sources[target]
        super().start_many(launches)

    # ------------------------------------------------------------------ status and stop
    def is_running(self) -> bool:
        return type(self).running([self])[self.name]

    @classmethod
    def running(cls, workers: list[Any]) -> dict[str, bool]:
        """DescribeJobs for 100 workers a call; a job Batch does not know has ended. A launch's
        secrets go once its job runs (ECS read them as it started) or has ended."""
        causes: dict[str, str] = {}
        states = cls.states(workers, causes)
        answers = {}
        for w in workers:
            up = w.job_id is not None and states.get(w.job_id, "UNKNOWN") in UP_STATES | {"UNKNOWN"}
            if not up and w.job_id is not None:
                w._cause = causes.get(w.job_id, f"its Batch job {w.job_id} is {states.get(w.job_id, 'gone')}")
            answers[w.name] = up
        used = [(w.keys, w.job_id) for w in workers if w.keys.held is not None
                and batch_secrets.no_longer_needed(states.get(w.job_id), w.retry_attempts)]  # fmt: skip
        batch_secrets.release_many(used)
        return answers

    def close(self) -> None:
        """The worker is down for good: nothing of its launches may stay on AWS."""
        self.keys.release()

    def exit_cause(self) -> str | None:
        return self._cause

    @classmethod
    def states(cls, workers: list[Any], causes: dict[str, str] | None = None) -> dict[str, str]:
        """``{job id: Batch status}``; ``UNKNOWN`` where Batch could not be asked. ``causes``
        gets, for each job that has ended, why (Batch's ``statusReason``, the container's exit code)."""
        groups: dict[tuple[Any, ...], list[str]] = {}
        for worker in workers:
            if worker.job_id is not None:
                groups.setdefault((worker.region, worker.endpoint_url, worker.profile), []).append(worker.job_id)
        states: dict[str, str] = {}
        for (region, endpoint_url, profile), ids in groups.items():
            for start in range(0, len(ids), DESCRIBE_BATCH):
                chunk = ids[start : start + DESCRIBE_BATCH]
                try:
                    jobs = batch_client(region, endpoint_url, profile).describe_jobs(jobs=chunk)["jobs"]
                except Exception as exc:  # Batch unreachable: "unknown" (running); heartbeats still find deaths
                    warnings.warn(f"cannot ask AWS Batch about {len(chunk)} worker(s), assuming they still run:"
                                  f" {exc}", stacklevel=2)  # fmt: skip
                    states.update(dict.fromkeys(chunk, "UNKNOWN"))
                    continue
                states.update(dict.fromkeys(chunk, "GONE"))
                states.update({job["jobId"]: job["status"] for job in jobs})
                if causes is not None:
                    causes.update({job["jobId"]: _why(job) for job in jobs if job["status"] not in UP_STATES})
        return states

    def state(self) -> str | None:
        """Batch's status of this worker's job, or None before it was submitted."""
        return type(self).states([self]).get(self.job_id) if self.job_id else None

    # ------------------------------------------------------------------ finding workers by crew
    def place(self) -> dict[str, Any] | None:
        """The region, the queue and where launch keys are kept: where ``find`` and ``end`` look
        (credentials and endpoint come from the environment of whoever looks)."""
        return {"region": self.client.meta.region_name, "job_queue": self.job_queue,
                "secrets_store": self.keys.store}  # fmt: skip

    @classmethod
    def find(cls, label: str, place: Mapping[str, Any], via: Worker | None = None) -> list[BackendJob]:
        """The crew's queued and running jobs in the place's queue: ListJobs by job name (the
        crew's id), then DescribeJobs to keep those whose ``crew:label`` tag is the crew's label."""
        region, queue = place.get("region"), place.get("job_queue")
        if not isinstance(region, str) or not isinstance(queue, str):
            raise ValueError(f"a Batch place names a region and a job_queue (strings), not {dict(place)!r}")
        client = cls._client_for(region, via)
        prefix = job_name(label.rpartition("@")[0], "")
        ids, token = [], None
        while True:
            page = client.list_jobs(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [prefix + "*"]}],
                                    **({"nextToken": token} if token else {}))  # fmt: skip
            ids += [job["jobId"] for job in page.get("jobSummaryList", []) if job.get("status") in UP_STATES]
            token = page.get("nextToken")
            if not token:
                break
        found = []
        for start in range(0, len(ids), DESCRIBE_BATCH):
            for job in client.describe_jobs(jobs=ids[start : start + DESCRIBE_BATCH])["jobs"]:
                tags = job.get("tags") or {}
                if tags.get("crew:label") != label or job["status"] not in UP_STATES:
                    continue  # another crew whose id starts with this one's, or of another store
                worker, incarnation = str(tags.get("crew:worker", "")), str(tags.get("crew:incarnation", ""))
                found.append(BackendJob(cls.worker_class, label, job["jobId"], job["status"], worker,
                                        int(incarnation) if incarnation.isdigit() else 0, dict(place)))  # fmt: skip
        return found

    @classmethod
    def end(cls, jobs: list[BackendJob], via: Worker | None = None) -> None:
        """TerminateJob each (Batch cancels the queued ones); a job that has ended is no error.
        Then the secrets and revisions of their launches go; without ``via`` (``crew stop``: the
        crew's controller is gone), every one the crew left at that place goes too."""

        def terminate(job: BackendJob) -> None:
            try:
                cls._client_for(job.place["region"], via).terminate_job(
                    jobId=job.id, reason=f"crew stop: crew {job.crew} was stopped"
                )
            except Exception as exc:
                if "not found" not in str(exc).lower():
                    raise

        problems = []
        try:
            end_each(jobs, terminate)
        except WorkerLaunchError as exc:
            problems.append(str(exc))
        try:  # terminated first: a queued job whose key is gone would fail at its start instead
            profile = via.profile if isinstance(via, BatchWorker) else None
            batch_secrets.forget(jobs, lambda region: cls._client_for(region, via), profile, whole_crew=via is None)
        except Exception as exc:
            problems.append(str(exc))
        if problems:
            raise WorkerLaunchError("; ".join(problems))

    @classmethod
    def forget(cls, label: str, place: Mapping[str, Any]) -> None:
        """Delete every launch key and revision the crew left in the place's region (its jobs are over)."""
        region = place.get("region")
        if not isinstance(region, str):
            raise ValueError(f"a Batch place names a region (a string), not {dict(place)!r}")
        batch_secrets.forget_crew(cls._client_for(region, None), label, batch_secrets.store_of(place), None)

    @staticmethod
    def _client_for(region: str, via: Worker | None) -> Any:
        """A worker's own client (its endpoint and profile), or one set by the environment."""
        if isinstance(via, BatchWorker):
            return via.client
        return batch_client(region, _endpoint_from_environment(), None)

    def kill(self) -> None:
        if self.job_id is None:
            self.keys.release()
            return
        try:
            self.client.terminate_job(jobId=self.job_id, reason="crew: the worker did not answer a stop request")
        except Exception as exc:
            if "not found" not in str(exc).lower():
                raise launch_error(exc, f"terminate worker {self.name!r}") from exc
        finally:
            self.keys.release()  # terminated (or gone): it will not start and read its key


def _endpoint_from_environment() -> str | None:
    """Batch's endpoint as boto3 reads it from the environment (named here: clients are cached by it)."""
    return os.environ.get("AWS_ENDPOINT_URL_BATCH") or os.environ.get("AWS_ENDPOINT_URL") or None


def job_name(crew: str, worker: str) -> str:
    """A worker's Batch job name, ``crew-<crew id>-<worker>``: a ListJobs filter finds a crew's jobs by it."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"crew-{crew}-{worker}")[:128]


def _why(job: dict[str, Any]) -> str:
    """How a Batch job ended, in Batch's words: status, reason, the container's exit code and reason."""
    container = job.get("container") or {}
    parts = [f"its Batch job {job['jobId']} {job['status']}"]
    if job.get("statusReason"):
        parts.append(f": {job['statusReason']}")
    details = []
    if container.get("exitCode") is not None:
        details.append(f"container exit code {container['exitCode']}")
    if container.get("reason") and container.get("reason") != job.get("statusReason"):
        details.append(str(container["reason"]))
    if details:
        parts.append(f" ({'; '.join(details)})")
    return "".join(parts)
