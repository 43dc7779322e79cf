"""A local Cloud Run Admin API v2 (jobs and executions) for tests, over HTTP/JSON on 127.0.0.1.

google-cloud-run's REST transport talks to it (``client_options={"api_endpoint": plane.endpoint}``,
anonymous credentials). It serves GetJob, CreateJob, UpdateJob, RunJob, GetOperation,
GetExecution, ListExecutions and CancelExecution with the real shapes: RunJob answers a
long-running operation whose metadata is the new execution, and every execution really runs its
container (``command`` + ``args``, the overrides' args winning) as a local process, moving from
reconciling to running to succeeded, failed or cancelled. It refuses what Cloud Run refuses:
unknown jobs (404, also for another project or region), malformed job ids, overrides naming more
containers than the job has, a negative task count, a timeout that is not ``<seconds>s``.
Tests can delay starts, fail the next executions, or kill a running one.

The same server is a Secret Manager (``/v1/``, :mod:`crew_gcp.testing.secret_manager`): an
environment variable whose ``valueSource.secretKeyRef`` names a secret version is resolved from it
each time a task's container starts, as Cloud Run does; one that cannot be resolved fails the
execution with a condition naming the secret. Jobs and executions show the reference, never the value.
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .google_api import ApiError, timestamp
from .secret_manager import SecretManager

__all__ = ["ApiError", "CloudRunControlPlane"]

_JOB_ID = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_TIMEOUT = re.compile(r"^\d+(\.\d+)?s$")
_EXECUTION = "type.googleapis.com/google.cloud.run.v2.Execution"
_JOB = "type.googleapis.com/google.cloud.run.v2.Job"


class _Unresolved(Exception):
    """A ``secretKeyRef`` that names no existing secret version: the task cannot start."""


class _Execution:
    def __init__(self, job: dict[str, Any], name: str, overrides: dict[str, Any]) -> None:
        self.job, self.name, self.overrides = job, name, overrides
        self.uid = str(uuid.uuid4())
        self.created = time.time()
        self.started: float | None = None
        self.completed: float | None = None
        self.state = "PENDING"  # PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED
        self.exit_code: int | None = None
        self.failure: str | None = None  # why its task could not start (an unresolved secret)
        self.retried = 0  # tasks started again after they failed (maxRetries)
        self.process: subprocess.Popen[bytes] | None = None
        self.cancel = threading.Event()
        self.lock = threading.Lock()

    def container(self) -> dict[str, Any]:
        return self.job["template"]["template"]["containers"][0]

    def command(self) -> list[str]:
        container = self.container()
        overrides = (self.overrides.get("containerOverrides") or [{}])[0]
        args = overrides.get("args") if overrides.get("args") else container.get("args", [])
        return [*container.get("command", []), *args]

    def effective_container(self) -> dict[str, Any]:
        """The job's container with this execution's overrides applied, as an execution shows it."""
        container = dict(self.container())
        overrides = (self.overrides.get("containerOverrides") or [{}])[0]
        if overrides.get("args"):
            container["args"] = list(overrides["args"])
        if self.env_entries():
            container["env"] = [dict(entry) for entry in self.env_entries()]
        return container

    def env_entries(self) -> list[dict[str, Any]]:
        """The container's ``env`` merged with the overrides' by name (an override wins): each a
        ``value`` or a ``valueSource.secretKeyRef``, the reference and never what it names."""
        merged = {entry["name"]: entry for entry in self.container().get("env", [])}
        overrides = (self.overrides.get("containerOverrides") or [{}])[0]
        merged.update({entry["name"]: entry for entry in overrides.get("env", [])})
        return list(merged.values())

    def resolve(self, secrets: SecretManager) -> dict[str, str]:
        """The container's environment, secret references read from ``secrets`` now (a task's
        container reads them as it starts); :class:`_Unresolved` names one that cannot be read."""
        project = self.job["name"].split("/")[1]
        env = {}
        for index, entry in enumerate(self.env_entries()):
            ref = (entry.get("valueSource") or {}).get("secretKeyRef")
            if ref is None:
                env[entry["name"]] = entry.get("value", "")
                continue
            secret = str(ref.get("secret", ""))
            secret = secret if secret.startswith("projects/") else f"projects/{project}/secrets/{secret}"
            version = str(ref.get("version") or "latest")
            try:
                env[entry["name"]] = secrets.access(secret, version)
            except ApiError:
                raise _Unresolved(f"spec.template.spec.containers[0].env[{index}].value_from.secret_key_ref.name:"
                                  f" Secret {secret}/versions/{version} was not found") from None  # fmt: skip
        return env

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "name": self.name,
            "uid": self.uid,
            "job": self.job["name"].rsplit("/", 1)[-1],
            "createTime": timestamp(self.created),
            "taskCount": self.overrides.get("taskCount", 1),
            "runningCount": 1 if self.state == "RUNNING" else 0,
            "succeededCount": 1 if self.state == "SUCCEEDED" else 0,
            "failedCount": 1 if self.state == "FAILED" else 0,
            "cancelledCount": 1 if self.state == "CANCELLED" else 0,
            "retriedCount": self.retried,
            "reconciling": self.state in ("PENDING", "RUNNING"),
            "etag": f'"{self.uid[:8]}"',
            "template": {"containers": [self.effective_container()]},
            "conditions": [],
        }
        if self.started is not None:
            record["startTime"] = timestamp(self.started)
        if self.completed is not None:
            record["completionTime"] = timestamp(self.completed)
            completed = {
                "type": "Completed",
                "state": "CONDITION_SUCCEEDED" if self.state == "SUCCEEDED" else "CONDITION_FAILED",
                "lastTransitionTime": timestamp(self.completed),
            }
            if self.state == "CANCELLED":
                completed["executionReason"] = "CANCELLED"
            elif self.state == "FAILED" and self.failure is not None:
                completed["message"] = f"Task {self.name.rsplit('/', 1)[-1]}-task0 failed to start: {self.failure}"
            elif self.state == "FAILED" and self.exit_code is not None:
                completed["message"] = f"Task {self.name.rsplit('/', 1)[-1]}-task0 failed: the container exited" + (
                    f" with exit code {self.exit_code}" if self.exit_code >= 0 else f" on signal {-self.exit_code}"
                )
            record["conditions"].append(completed)
        return record


class CloudRunControlPlane:
    """An HTTP server that acts as Cloud Run's v2 API and runs executions as local processes."""

    def __init__(self, start_delay: float = 0.0, stop_timeout: float = 2.0, env: dict[str, str] | None = None) -> None:
        self.start_delay, self.stop_timeout = start_delay, stop_timeout
        self.env = dict(env or {})
        self.jobs: dict[str, dict[str, Any]] = {}
        self.executions: dict[str, _Execution] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path), for assertions
        self.secret_manager = SecretManager()  # what /v1/ serves and executions' secret references read
        self.list_page_size = 100
        self._fail_next = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.endpoint = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> CloudRunControlPlane:
        plane = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body = plane.handle(method, self.path, raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def do_PATCH(self) -> None:
                self._answer("PATCH")

            def do_DELETE(self) -> None:
                self._answer("DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="cloud-run-plane", daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self) -> None:
        for execution in list(self.executions.values()):
            execution.cancel.set()
            if execution.process is not None and execution.process.poll() is None:
                execution.process.kill()
                execution.process.wait()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> CloudRunControlPlane:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ set-up and control
    def create_job(
        self,
        name: str,
        command: list[str],
        image: str = "crew:latest",
        max_retries: int | None = None,
        **container: Any,
    ) -> dict:
        """Create a job directly (``projects/P/locations/L/jobs/J``) whose container runs ``command``.

        Without ``max_retries`` the job retries a failed task 3 times, Cloud Run's default.
        """
        task: dict[str, Any] = {"containers": [{"image": image, "command": command, **container}]}
        if max_retries is not None:
            task["maxRetries"] = max_retries
        job = self._job_record(name, {"template": {"template": task}})
        self.jobs[name] = job
        return job

    def fail_next(self, count: int = 1) -> None:
        """The next ``count`` executions fail at start, as with an image that cannot be pulled."""
        with self._lock:
            self._fail_next += count

    def kill(self, execution_name: str) -> None:
        """SIGKILL a running execution's container."""
        execution = self.executions[execution_name]
        if execution.process is not None and execution.process.poll() is None:
            execution.process.send_signal(signal.SIGKILL)

    def wait_state(self, execution_name: str, states: tuple[str, ...], timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.executions[execution_name].state in states:
                return self.executions[execution_name].state
            time.sleep(0.01)
        raise TimeoutError(f"{execution_name} is {self.executions[execution_name].state}, not {states}")

    # ------------------------------------------------------------------ the API
    def handle(self, method: str, path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        path, _, query = path.partition("?")
        self.requests.append((method, path))
        try:
            body = json.loads(raw) if raw else {}
            if path.startswith("/v1/"):  # Secret Manager, which keeps its own lock
                return 200, self.secret_manager.route(method, path[len("/v1/") :], body, query)
            if not path.startswith("/v2/"):
                raise ApiError(404, "NOT_FOUND", f"unknown path {path}")
            resource = path[len("/v2/") :]
            with self._lock:
                return 200, self._route(method, resource, body, query)
        except ApiError as exc:
            return exc.code, {"error": {"code": exc.code, "status": exc.status, "message": str(exc)}}
        except ValueError as exc:
            return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": str(exc)}}

    def _route(self, method: str, resource: str, body: dict[str, Any], query: str) -> dict[str, Any]:
        parts = resource.split("/")
        if method == "GET" and "/operations/" in resource:
            return self._operation(resource)
        if method == "POST" and resource.endswith(":run"):
            return self._run_job(resource[: -len(":run")], body)
        if method == "POST" and resource.endswith(":cancel"):
            return self._cancel(resource[: -len(":cancel")])
        if method == "POST" and resource.endswith("/jobs"):
            job_id = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("jobId", "")
            return self._create_job(resource[: -len("/jobs")], job_id, body)
        if method == "PATCH" and len(parts) == 6 and parts[4] == "jobs":
            return self._update_job(resource, body)
        if method == "GET" and len(parts) == 6 and parts[4] == "jobs":
            return self._get_job(resource)
        if method == "GET" and len(parts) == 7 and parts[6] == "executions":
            return self._list_executions(resource[: -len("/executions")], query)
        if method == "GET" and len(parts) == 8 and parts[6] == "executions":
            return self._get_execution(resource)
        raise ApiError(404, "NOT_FOUND", f"no method {method} {resource}")

    def _job_record(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        template = body.get("template") or {}
        task = template.get("template") or {}
        containers = task.get("containers") or []
        if not containers:
            raise ApiError(400, "INVALID_ARGUMENT", "template.template.containers: at least one container is required")
        retries = int(task.get("maxRetries", 3))  # Cloud Run retries a failed task 3 times unless told
        return {
            "name": name,
            "uid": str(uuid.uuid4()),
            "generation": "1",
            "createTime": timestamp(),
            "template": {
                "taskCount": template.get("taskCount", 1),
                "template": {**task, "containers": containers, "maxRetries": retries},
            },
        }

    def _existing_job(self, name: str) -> dict[str, Any]:
        if name not in self.jobs:
            raise ApiError(404, "NOT_FOUND", f"Resource '{name.rsplit('/', 1)[-1]}' of kind 'JOB' in region"
                           f" '{name.split('/')[3]}' in project '{name.split('/')[1]}' does not exist.")  # fmt: skip
        return self.jobs[name]

    def _done(self, payload_type: str, payload: dict[str, Any], parent: str) -> dict[str, Any]:
        name = f"{parent}/operations/{uuid.uuid4()}"
        operation = {"name": name, "metadata": {"@type": payload_type, **payload}, "done": True,
                     "response": {"@type": payload_type, **payload}}  # fmt: skip
        self.operations[name] = operation
        return operation

    def _location(self, resource: str) -> str:
        return "/".join(resource.split("/")[:4])

    def _create_job(self, parent: str, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if not _JOB_ID.match(job_id):
            raise ApiError(400, "INVALID_ARGUMENT", f"job_id {job_id!r}: lowercase letters, digits and '-', at most 63")
        name = f"{parent}/jobs/{job_id}"
        if name in self.jobs:
            raise ApiError(409, "ALREADY_EXISTS", f"Resource '{job_id}' already exists.")
        self.jobs[name] = self._job_record(name, body)
        return self._done(_JOB, self.jobs[name], parent)

    def _update_job(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        old = self._existing_job(name)
        job = self._job_record(name, body)
        job["uid"], job["generation"] = old["uid"], str(int(old["generation"]) + 1)
        self.jobs[name] = job
        return self._done(_JOB, job, self._location(name))

    def _get_job(self, name: str) -> dict[str, Any]:
        return self._existing_job(name)

    def _run_job(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        job = self._existing_job(name)
        overrides = body.get("overrides") or {}
        containers = overrides.get("containerOverrides") or []
        if len(containers) > len(job["template"]["template"]["containers"]):
            raise ApiError(400, "INVALID_ARGUMENT", "overrides.container_overrides: more overrides than containers")
        if int(overrides.get("taskCount", 1)) < 0:
            raise ApiError(400, "INVALID_ARGUMENT", "overrides.task_count must not be negative")
        if "timeout" in overrides and not _TIMEOUT.match(str(overrides["timeout"])):
            raise ApiError(400, "INVALID_ARGUMENT", "overrides.timeout must be a duration such as '600s'")
        execution_name = f"{name}/executions/{name.rsplit('/', 1)[-1]}-{uuid.uuid4().hex[:5]}"
        execution = _Execution(job, execution_name, overrides)
        self.executions[execution_name] = execution
        threading.Thread(target=self._execute, args=(execution,), daemon=True).start()
        operation_name = f"{self._location(name)}/operations/{uuid.uuid4()}"
        operation = {"name": operation_name, "metadata": {"@type": _EXECUTION, **execution.to_json()}, "done": False}
        self.operations[operation_name] = operation
        return operation

    def _operation(self, name: str) -> dict[str, Any]:
        if name not in self.operations:
            raise ApiError(404, "NOT_FOUND", f"operation {name} not found")
        operation = self.operations[name]
        metadata = operation["metadata"]
        if metadata["@type"] == _EXECUTION and metadata["name"] in self.executions:
            execution = self.executions[metadata["name"]]
            payload = {"@type": _EXECUTION, **execution.to_json()}
            operation = {"name": name, "metadata": payload, "done": execution.completed is not None}
            if execution.completed is not None:
                operation["response"] = payload  # RunJob's operation ends with its execution
        return operation

    def _execution(self, name: str) -> _Execution:
        if name not in self.executions:
            raise ApiError(
                404, "NOT_FOUND", f"Resource '{name.rsplit('/', 1)[-1]}' of kind 'EXECUTION' does not exist."
            )
        return self.executions[name]

    def _get_execution(self, name: str) -> dict[str, Any]:
        return self._execution(name).to_json()

    def _list_executions(self, job: str, query: str = "") -> dict[str, Any]:
        """Newest first, ``list_page_size`` a page (or the request's pageSize), with page tokens."""
        self._existing_job(job)
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        size = int(params.get("pageSize") or self.list_page_size)
        start = int(params.get("pageToken") or 0)
        found = [e for n, e in self.executions.items() if n.startswith(job + "/executions/")][::-1]
        page = {"executions": [e.to_json() for e in found[start : start + size]]}
        if start + size < len(found):
            page["nextPageToken"] = str(start + size)
        return page

    def _cancel(self, name: str) -> dict[str, Any]:
        execution = self._execution(name)
        with execution.lock:
            if execution.completed is None:
                execution.cancel.set()
                process = execution.process
            else:
                process = None
        if process is not None:
            threading.Thread(target=self._stop, args=(process,), daemon=True).start()
        return self._done(_EXECUTION, execution.to_json(), self._location(name))

    # ------------------------------------------------------------------ running
    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()

    def _finish(self, execution: _Execution, state: str) -> None:
        execution.state, execution.completed = state, time.time()

    def _execute(self, execution: _Execution) -> None:
        if execution.cancel.wait(self.start_delay or 0.01):
            with execution.lock:
                self._finish(execution, "CANCELLED")
            return
        with self._lock:
            fail = self._fail_next > 0
            self._fail_next -= 1 if fail else 0
        short = execution.name.rsplit("/", 1)[-1]
        reserved = {"CLOUD_RUN_JOB": execution.job["name"].rsplit("/", 1)[-1], "CLOUD_RUN_EXECUTION": short,
                    "CLOUD_RUN_TASK_INDEX": "0", "CLOUD_RUN_TASK_COUNT": "1"}  # fmt: skip
        with execution.lock:
            if execution.cancel.is_set():
                self._finish(execution, "CANCELLED")
                return
            execution.started = time.time()
            if fail:
                self._finish(execution, "FAILED")
                return
        retries = int(execution.job["template"]["template"].get("maxRetries", 3))
        while True:  # as Cloud Run does: a task that fails is started again, maxRetries times
            with execution.lock:
                if execution.cancel.is_set():
                    self._finish(execution, "CANCELLED")
                    return
                try:  # each start of the task's container reads its secrets anew
                    env = {**os.environ, **self.env, **execution.resolve(self.secret_manager), **reserved}
                except _Unresolved as exc:
                    execution.failure = str(exc)
                    self._finish(execution, "FAILED")
                    return
                try:
                    execution.process = subprocess.Popen(execution.command(), env=env, stdin=subprocess.DEVNULL)
                except OSError:
                    self._finish(execution, "FAILED")
                    return
                execution.state = "RUNNING"
            code = execution.process.wait()
            with execution.lock:
                execution.exit_code = code
                if execution.cancel.is_set():
                    self._finish(execution, "CANCELLED")
                    return
                if code == 0 or execution.retried >= retries:
                    self._finish(execution, "SUCCEEDED" if code == 0 else "FAILED")
                    return
                execution.retried += 1
