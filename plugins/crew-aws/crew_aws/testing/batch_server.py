"""A local AWS Batch control plane for tests: boto3's Batch client talks to it over HTTP.

It speaks the REST-JSON surface crew uses (and a little more, so tests can set up as they would on
AWS): CreateJobQueue, DescribeJobQueues, RegisterJobDefinition, DescribeJobDefinitions,
DeregisterJobDefinition, SubmitJob, DescribeJobs, ListJobs, TerminateJob and CancelJob. Every
submitted job really runs: its container command (the override, else the definition's) becomes a
local process with the job's environment, and moves SUBMITTED → PENDING → RUNNABLE → STARTING →
RUNNING → SUCCEEDED or FAILED as it would on Batch. It rejects what Batch rejects: unknown queues
and job definitions, malformed job names, container overrides over 8 KiB, retry attempts outside
1..10, more than 100 ids in one DescribeJobs.

A job definition's ``secrets`` (``[{"name", "valueFrom"}]``) are resolved as ECS resolves them, when
the job starts: each ``valueFrom`` (a Secrets Manager secret's ARN, an SSM parameter's ARN or name)
is read from Secrets Manager or SSM at ``secrets_endpoint`` (moto's server in tests) and its value
goes into the process's environment, never into what DescribeJobs shows (only ``valueFrom``). A
secret that cannot be read, or a definition with secrets but no ``executionRoleArn``, fails the
job at start with a ``ResourceInitializationError`` reason, as Batch does. A test can delay jobs,
make the next ones fail, or kill a running one::

    with BatchControlPlane() as batch:
        client = boto3.client("batch", endpoint_url=batch.endpoint, region_name=batch.region)
        batch.create_queue("crew-queue"); batch.register_definition("crew-worker")
        ...
        batch.kill(job_id)            # SIGKILL the container: the job ends FAILED
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .ecs_secrets import pull_secrets

ACTIVE = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_OVERRIDES_LIMIT = 8192  # bytes of containerOverrides JSON Batch accepts
_REGION_IN_SIGNATURE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/batch/")


class ClientException(Exception):
    """Batch's 400 answer for a request it refuses."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Job:
    def __init__(self, plane: BatchControlPlane, request: dict[str, Any], queue: dict, definition: dict) -> None:
        self.id = str(uuid.uuid4())
        self.name = request["jobName"]
        self.queue = queue
        self.definition = definition
        self.overrides = request.get("containerOverrides") or {}
        self.tags = request.get("tags") or {}
        self.retry = request.get("retryStrategy") or {"attempts": 1}
        self.status = "SUBMITTED"
        self.status_reason: str | None = None
        self.created = _now_ms()
        self.started: int | None = None
        self.stopped: int | None = None
        self.exit_code: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.terminate_reason: str | None = None
        self.ended = threading.Event()  # set by TerminateJob/CancelJob: a queued job stops waiting
        self.lock = threading.Lock()
        self.arn = f"arn:aws:batch:{plane.region}:{plane.account}:job/{self.id}"

    def command(self) -> list[str]:
        return list(self.overrides.get("command") or self.definition["containerProperties"].get("command") or [])

    def environment(self) -> dict[str, str]:
        """The plain environment (definition, then overrides): what DescribeJobs shows. Secrets are
        not in it: they are read at start and reach the process alone."""
        variables = {e["name"]: e["value"] for e in self.definition["containerProperties"].get("environment", [])}
        variables.update({e["name"]: e["value"] for e in self.overrides.get("environment", [])})
        return variables

    def describe(self) -> dict[str, Any]:
        properties = self.definition["containerProperties"]
        container: dict[str, Any] = {
            "image": properties.get("image", ""),
            "command": self.command(),
            "environment": [{"name": k, "value": v} for k, v in self.environment().items()],
            "resourceRequirements": self.overrides.get("resourceRequirements")
            or properties.get("resourceRequirements", []),
        }
        for key in ("secrets", "executionRoleArn", "jobRoleArn"):  # secrets as references: valueFrom only
            if properties.get(key):
                container[key] = properties[key]
        if self.exit_code is not None:
            container["exitCode"] = self.exit_code
        if self.status_reason and self.status == "FAILED":
            container["reason"] = self.status_reason
        record: dict[str, Any] = {
            "jobArn": self.arn,
            "jobName": self.name,
            "jobId": self.id,
            "jobQueue": self.queue["jobQueueArn"],
            "status": self.status,
            "createdAt": self.created,
            "jobDefinition": self.definition["jobDefinitionArn"],
            "dependsOn": [],
            "container": container,
            "tags": self.tags,
            "retryStrategy": self.retry,
            "platformCapabilities": ["EC2"],
            "attempts": [],
        }
        if self.status_reason:
            record["statusReason"] = self.status_reason
        if self.started is not None:
            record["startedAt"] = self.started
        if self.stopped is not None:
            record["stoppedAt"] = self.stopped
            record["attempts"] = [
                {
                    "container": {"exitCode": self.exit_code, "reason": self.status_reason or ""},
                    "startedAt": self.started or self.stopped,
                    "stoppedAt": self.stopped,
                    "statusReason": self.status_reason or "",
                }
            ]
        return record


class BatchControlPlane:
    """An HTTP server on 127.0.0.1 that acts as AWS Batch and runs jobs as local processes.

    ``start_delay`` keeps each job RUNNABLE that many seconds (a queue waiting for capacity);
    ``stop_timeout`` is the grace between SIGTERM and SIGKILL on TerminateJob (ECS's stopTimeout);
    ``env`` is added to every job's environment (store endpoints, credentials for tests);
    ``secrets_endpoint`` is where Secrets Manager and SSM answer when a job's secrets are read at
    its start (moto's endpoint in tests; None: boto3's default, which honours
    ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` and ``AWS_ENDPOINT_URL_SSM``).
    """

    def __init__(
        self,
        region: str = "us-east-1",
        account: str = "123456789012",
        start_delay: float = 0.0,
        stop_timeout: float = 2.0,
        env: dict[str, str] | None = None,
        secrets_endpoint: str | None = None,
    ) -> None:
        self.region, self.account = region, account
        self.start_delay, self.stop_timeout = start_delay, stop_timeout
        self.env = dict(env or {})
        self.secrets_endpoint = secrets_endpoint
        self.queues: dict[str, dict[str, Any]] = {}
        self.definitions: dict[str, list[dict[str, Any]]] = {}
        self.jobs: dict[str, _Job] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (operation, body), for assertions
        self._fail_next: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.endpoint = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> BatchControlPlane:
        plane = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet: tests read plane.requests instead
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                match = _REGION_IN_SIGNATURE.search(self.headers.get("Authorization", ""))
                status, body = plane.handle(self.path, raw, match.group(1) if match else plane.region)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status >= 400:
                    self.send_header("x-amzn-ErrorType", body.get("__type", "ClientException"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="batch-control-plane", daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self) -> None:
        """Kill every job still running and stop serving."""
        for job in list(self.jobs.values()):
            if job.process is not None and job.process.poll() is None:
                job.process.kill()
                job.process.wait()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> BatchControlPlane:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ set-up and control for tests
    def create_queue(self, name: str, state: str = "ENABLED") -> dict[str, Any]:
        """Create a job queue (the same as CreateJobQueue through boto3)."""
        return self._create_job_queue({"jobQueueName": name, "state": state, "priority": 1})

    def register_definition(
        self,
        name: str,
        command: list[str] | None = None,
        image: str = "crew:latest",
        execution_role: str | None = "crew-batch-execution",
    ) -> dict[str, Any]:
        """Register a container job definition (the same as RegisterJobDefinition). ``execution_role``
        (a role name or ARN; None for none) is the role ECS reads the job's secrets with."""
        properties: dict[str, Any] = {"image": image, "command": command or [], "resourceRequirements": []}
        if execution_role:
            properties["executionRoleArn"] = (
                execution_role if execution_role.startswith("arn:") else self.role_arn(execution_role)
            )
        return self._register_job_definition(
            {"jobDefinitionName": name, "type": "container", "containerProperties": properties}
        )

    def role_arn(self, name: str) -> str:
        """The ARN of an IAM role of this plane's account (IAM itself is not modelled)."""
        return f"arn:aws:iam::{self.account}:role/{name}"

    def fail_next(self, count: int = 1, reason: str = "CannotPullContainerError: image not found") -> None:
        """The next ``count`` jobs to start end FAILED without running, with ``reason``."""
        with self._lock:
            self._fail_next.extend([reason] * count)

    def kill(self, job_id: str) -> None:
        """SIGKILL a running job's container, as a spot reclaim or the OOM killer would."""
        job = self.jobs[job_id]
        if job.process is not None and job.process.poll() is None:
            job.process.send_signal(signal.SIGKILL)

    def wait_status(self, job_id: str, statuses: tuple[str, ...], timeout: float = 60.0) -> str:
        """Wait until the job reaches one of ``statuses``; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.jobs[job_id].status in statuses:
                return self.jobs[job_id].status
            time.sleep(0.01)
        raise TimeoutError(f"job {job_id} is {self.jobs[job_id].status}, not {statuses}")

    # ------------------------------------------------------------------ the API
    def handle(self, path: str, raw: bytes, region: str) -> tuple[int, dict[str, Any]]:
        operation = path.split("?")[0].rstrip("/").rsplit("/", 1)[-1].lower()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return 400, {"__type": "SerializationException", "message": "request body is not JSON"}
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "createjobqueue": self._create_job_queue,
            "describejobqueues": self._describe_job_queues,
            "registerjobdefinition": self._register_job_definition,
            "describejobdefinitions": self._describe_job_definitions,
            "deregisterjobdefinition": self._deregister_job_definition,
            "submitjob": self._submit_job,
            "describejobs": self._describe_jobs,
            "listjobs": self._list_jobs,
            "terminatejob": self._terminate_job,
            "canceljob": self._cancel_job,
        }
        handler = handlers.get(operation)
        if handler is None:
            return 404, {"__type": "UnknownOperationException", "message": f"unknown operation {path}"}
        self.requests.append((operation, body))
        if region != self.region:
            # Batch is regional: another region's endpoint has none of these queues or jobs.
            body = {**body, "__other_region": region}
        try:
            with self._lock:
                return 200, handler(body)
        except ClientException as exc:
            return 400, {"__type": "ClientException", "message": str(exc)}

    def _in_region(self, body: dict[str, Any]) -> bool:
        return "__other_region" not in body

    def _create_job_queue(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("jobQueueName", "")
        if not _JOB_NAME.match(name):
            raise ClientException("Error executing request, Exception : jobQueueName is invalid.")
        queue = {
            "jobQueueName": name,
            "jobQueueArn": f"arn:aws:batch:{self.region}:{self.account}:job-queue/{name}",
            "state": body.get("state", "ENABLED"),
            "status": "VALID",
            "priority": body.get("priority", 1),
            "computeEnvironmentOrder": body.get("computeEnvironmentOrder", []),
        }
        self.queues[name] = queue
        return {"jobQueueName": name, "jobQueueArn": queue["jobQueueArn"]}

    def _queue(self, reference: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if not self._in_region(body):
            return None
        name = reference.rsplit("/", 1)[-1] if reference.startswith("arn:") else reference
        return self.queues.get(name)

    def _describe_job_queues(self, body: dict[str, Any]) -> dict[str, Any]:
        names = body.get("jobQueues") or list(self.queues)
        found = [q for q in (self._queue(n, body) for n in names) if q is not None]
        return {"jobQueues": found}

    def _register_job_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("jobDefinitionName", "")
        if not _JOB_NAME.match(name):
            raise ClientException("Error executing request, Exception : jobDefinitionName is invalid.")
        properties = body.get("containerProperties", {})
        for secret in properties.get("secrets") or []:
            if not isinstance(secret, dict) or not secret.get("name") or not secret.get("valueFrom"):
                raise ClientException("Error executing request, Exception : a secret needs a name and a valueFrom.")
        if len({s["name"] for s in properties.get("secrets") or []}) < len(properties.get("secrets") or []):
            raise ClientException("Error executing request, Exception : secret names must be unique.")
        revisions = self.definitions.setdefault(name, [])
        revision = len(revisions) + 1
        definition = {
            "jobDefinitionName": name,
            "jobDefinitionArn": f"arn:aws:batch:{self.region}:{self.account}:job-definition/{name}:{revision}",
            "revision": revision,
            "status": "ACTIVE",
            "type": body.get("type", "container"),
            "containerProperties": properties,
            "tags": body.get("tags", {}),
        }
        for key in ("parameters", "retryStrategy", "timeout", "propagateTags", "platformCapabilities"):
            if key in body:
                definition[key] = body[key]
        revisions.append(definition)
        return {"jobDefinitionName": name, "jobDefinitionArn": definition["jobDefinitionArn"], "revision": revision}

    def _definition(self, reference: str, body: dict[str, Any], active_only: bool = True) -> dict[str, Any] | None:
        """The definition a reference names: ``name`` (its latest active revision), ``name:revision``
        or an ARN. SubmitJob takes active revisions only; DescribeJobDefinitions by revision any."""
        if not self._in_region(body):
            return None
        if reference.startswith("arn:"):
            reference = reference.rsplit("/", 1)[-1]
        name, _, revision = reference.partition(":")
        candidates = [d for d in self.definitions.get(name, []) if d["status"] == "ACTIVE" or not active_only]
        if revision:
            return next((d for d in candidates if str(d["revision"]) == revision), None)
        return candidates[-1] if candidates else None

    def _describe_job_definitions(self, body: dict[str, Any]) -> dict[str, Any]:
        """By revisions (``jobDefinitions``), or by name and status; pages of ``maxResults`` (100)."""
        if body.get("jobDefinitions"):
            if body.get("jobDefinitionName") or body.get("status"):
                raise ClientException("jobDefinitions can't be used with other parameters.")
            if any(":" not in r for r in body["jobDefinitions"]):
                raise ClientException("jobDefinitions must be name:revision or an ARN.")
            found = [self._definition(r, body, active_only=False) for r in body["jobDefinitions"]]
            return {"jobDefinitions": [d for d in found if d is not None]}
        name, status = body.get("jobDefinitionName"), body.get("status")
        every = [d for ds in self.definitions.values() for d in ds] if self._in_region(body) else []
        matching = [d for d in every if name in (None, d["jobDefinitionName"]) and status in (None, d["status"])]
        start = int(body.get("nextToken") or 0)
        end = start + int(body.get("maxResults") or 100)
        return {"jobDefinitions": matching[start:end], **({"nextToken": str(end)} if end < len(matching) else {})}

    def _deregister_job_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        """Make a revision INACTIVE: no new job may use it; jobs submitted with it are not affected."""
        reference = body.get("jobDefinition", "")
        if ":" not in reference:
            raise ClientException("Error executing request, Exception : jobDefinition must be name:revision or an ARN.")
        definition = self._definition(reference, body, active_only=False)
        if definition is None:
            raise ClientException(f"Error executing request, Exception : JobDefinition {reference} not found.")
        definition["status"] = "INACTIVE"
        return {}

    def _submit_job(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("jobName", "")
        if not _JOB_NAME.match(name):
            raise ClientException(
                "Error executing request, Exception : Job name should be up to 128 letters (uppercase and"
                " lowercase), numbers, hyphens, and underscores."
            )
        queue = self._queue(body.get("jobQueue", ""), body)
        if queue is None:
            raise ClientException(f"Error executing request, Exception : JobQueue {body.get('jobQueue')} not found.")
        definition = self._definition(body.get("jobDefinition", ""), body)
        if definition is None:
            raise ClientException(
                f"Error executing request, Exception : JobDefinition {body.get('jobDefinition')} not found."
            )
        if len(json.dumps(body.get("containerOverrides") or {})) > _OVERRIDES_LIMIT:
            raise ClientException("Container overrides should not be more than 8192 bytes.")
        attempts = (body.get("retryStrategy") or {}).get("attempts", 1)
        if not 1 <= attempts <= 10:
            raise ClientException("Error executing request, Exception : attempts must be between 1 and 10.")
        if (body.get("timeout") or {}).get("attemptDurationSeconds", 60) < 60:
            raise ClientException("Error executing request, Exception : attemptDurationSeconds must be at least 60.")
        if len(body.get("tags") or {}) > 50:
            raise ClientException("Error executing request, Exception : a resource can have at most 50 tags.")
        job = _Job(self, body, queue, definition)
        self.jobs[job.id] = job
        threading.Thread(target=self._run, args=(job,), name=f"batch-job-{job.id[:8]}", daemon=True).start()
        return {"jobArn": job.arn, "jobName": job.name, "jobId": job.id}

    def _describe_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = body.get("jobs") or []
        if len(ids) > 100:
            raise ClientException("Error executing request, Exception : Too many job ids: at most 100.")
        if not self._in_region(body):
            return {"jobs": []}
        return {"jobs": [self.jobs[i].describe() for i in ids if i in self.jobs]}

    def _list_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        """ListJobs as Batch answers it: by status, or (``filters`` given) any status whose name
        matches a JOB_NAME filter (a trailing ``*`` matches a prefix); pages by ``nextToken``."""
        queue = self._queue(body.get("jobQueue", ""), body)
        if queue is None:
            raise ClientException(f"Error executing request, Exception : JobQueue {body.get('jobQueue')} not found.")
        filters = body.get("filters") or []
        names = [value for f in filters if f.get("name") == "JOB_NAME" for value in f.get("values", [])]
        if filters and not names:
            raise ClientException("Error executing request, Exception : only JOB_NAME filters are supported here.")

        def wanted(job: _Job) -> bool:
            if not filters:
                return job.status == body.get("jobStatus", "RUNNING")
            return any(job.name.startswith(n[:-1]) if n.endswith("*") else job.name == n for n in names)

        matching = [job for job in self.jobs.values() if job.queue is queue and wanted(job)]
        start = int(body.get("nextToken") or 0)
        end = start + int(body.get("maxResults") or 100)
        summaries = [
            {"jobArn": j.arn, "jobId": j.id, "jobName": j.name, "status": j.status, "createdAt": j.created,
             "jobDefinition": j.definition["jobDefinitionArn"]}
            for j in matching[start:end]
        ]  # fmt: skip
        return {"jobSummaryList": summaries, **({"nextToken": str(end)} if end < len(matching) else {})}

    def _terminate_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._job(body)
        with job.lock:
            if job.status not in ACTIVE:
                return {}
            job.terminate_reason = body.get("reason") or "Terminated by the user"
            job.ended.set()
            process = job.process
        if process is not None:  # running: SIGTERM, then SIGKILL after stop_timeout, as ECS does
            threading.Thread(target=self._stop_process, args=(process,), daemon=True).start()
        return {}

    def _cancel_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._job(body)
        with job.lock:
            if job.status in ("SUBMITTED", "PENDING", "RUNNABLE"):
                job.terminate_reason = body.get("reason") or "Cancelled by the user"
                job.ended.set()
        return {}

    def _job(self, body: dict[str, Any]) -> _Job:
        if not self._in_region(body) or body.get("jobId") not in self.jobs:
            raise ClientException(f"Error executing request, Exception : Job {body.get('jobId')} not found.")
        return self.jobs[body["jobId"]]

    # ------------------------------------------------------------------ running jobs
    def _stop_process(self, process: subprocess.Popen[bytes] | None) -> None:
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()

    def _set(self, job: _Job, status: str) -> bool:
        """Move the job on unless it was terminated first; False if it ended instead."""
        with job.lock:
            if job.terminate_reason is not None and job.process is None:
                job.status, job.status_reason, job.stopped = "FAILED", job.terminate_reason, _now_ms()
                return False
            job.status = status
            return True

    def _run(self, job: _Job) -> None:
        for status, pause in (("PENDING", 0.0), ("RUNNABLE", self.start_delay), ("STARTING", 0.0)):
            if not self._set(job, status):
                return
            job.ended.wait(pause if pause else 0.01)
        with self._lock:
            failure = self._fail_next.pop(0) if self._fail_next else None
        secrets: dict[str, str] = {}
        if failure is None:  # read now, as ECS reads them at a task's start
            secrets, failure = pull_secrets(job.definition["containerProperties"], self.region, self.secrets_endpoint)
        if failure is not None:
            with job.lock:
                job.status, job.status_reason, job.stopped = "FAILED", failure, _now_ms()
            return
        env = {**os.environ, **self.env, **job.environment(), **secrets}
        env.update(AWS_BATCH_JOB_ID=job.id, AWS_BATCH_JQ_NAME=job.queue["jobQueueName"], AWS_BATCH_JOB_ATTEMPT="1")
        with job.lock:
            if job.terminate_reason is not None:
                job.status, job.status_reason, job.stopped = "FAILED", job.terminate_reason, _now_ms()
                return
            try:
                job.process = subprocess.Popen(job.command(), env=env, stdin=subprocess.DEVNULL)
            except OSError as exc:
                job.status, job.stopped = "FAILED", _now_ms()
                job.status_reason = f"CannotStartContainerError: {exc}"
                return
            job.status, job.started = "RUNNING", _now_ms()
        code = job.process.wait()
        with job.lock:
            job.exit_code = code if code >= 0 else 128 - code  # a signal shows as 128 + number
            job.stopped = _now_ms()
            if job.terminate_reason is not None:
                job.status, job.status_reason = "FAILED", job.terminate_reason
            elif code == 0:
                job.status = "SUCCEEDED"
            else:
                job.status, job.status_reason = "FAILED", "Essential container in task exited"
