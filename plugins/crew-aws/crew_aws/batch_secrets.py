"""A launch's secrets on AWS Batch: kept in Secrets Manager (or SSM), named by a job definition.

Batch hands a container a secret only through its job definition: ``containerProperties.secrets``
lists ``{"name", "valueFrom"}`` pairs, and ECS reads each ``valueFrom`` (a Secrets Manager secret's
ARN, an SSM parameter's name) with the definition's ``executionRoleArn`` as the container starts.
SubmitJob's overrides cannot carry secrets, and DescribeJobs shows whatever they carry. So for each
launch with :attr:`~crew_core.plugin.Launch.secrets` (its signing key), crew

1. stores each value as the secret ``crew/<crew id>/<worker>/<launch>/<random>/<VARIABLE>`` (or the
   SSM SecureString parameter ``/crew/...``), tagged with the crew's label, worker and launch;
2. registers a revision of the job definition ``crew-<crew id>``: the worker's own definition (its
   container properties, retry strategy, timeout, ...) plus those ``secrets``, tagged alike;
3. submits the job with that revision;

and removes both (:func:`release`: the secrets first, then the revision) once the job no longer
needs them: it runs (ECS read them as it started), it ended, it was killed, or its submission
failed. A revision is deregistered only once its secrets are gone, so a crew's ACTIVE revisions
list what it may have left behind: :func:`forget_crew` (``crew stop``) removes it all.

DescribeJobs, ListJobs and DescribeJobDefinitions show ``valueFrom`` only, never a value.
"""

from __future__ import annotations

import logging
import os
import re
import secrets as random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crew_core.plugin import BackendJob, Launch

from .errors import error_code

log = logging.getLogger("crew")

#: Where a launch's secrets can be kept: Secrets Manager (the default) or SSM Parameter Store.
STORES = ("secretsmanager", "ssm")
#: The first part of every name crew gives a secret or parameter: an IAM policy can scope on it.
PREFIX = "crew"
#: Errors that say a secret, parameter or revision is gone already (nothing left to remove).
_GONE = frozenset({"ResourceNotFoundException", "ParameterNotFound"})

_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


def secrets_client(store: str, region: str | None, profile: str | None) -> Any:
    """One Secrets Manager or SSM client per (store, region, profile, endpoint) in this process.

    The endpoint comes from the environment as boto3 reads it (``AWS_ENDPOINT_URL_SECRETS_MANAGER``,
    ``AWS_ENDPOINT_URL_SSM``, ``AWS_ENDPOINT_URL``): named in the key so that a changed one is used.
    """
    variable = "AWS_ENDPOINT_URL_SSM" if store == "ssm" else "AWS_ENDPOINT_URL_SECRETS_MANAGER"
    key = (store, region, profile, os.environ.get(variable), os.environ.get("AWS_ENDPOINT_URL"))
    with _clients_lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            session = boto3.session.Session(profile_name=profile, region_name=region)
            config = Config(retries={"max_attempts": 8, "mode": "adaptive"}, max_pool_connections=16)
            _clients[key] = session.client(store, config=config)
        return _clients[key]


def definition_name(crew: str) -> str:
    """The job definition whose revisions carry a crew's launch keys: ``crew-<crew id>``."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"crew-{crew}")[:128]


def crew_prefix(store: str, crew: str) -> str:
    """What the names of a crew's secrets (``crew/<id>/``) or parameters (``/crew/<id>/``) begin with."""
    return f"{'/' if store == 'ssm' else ''}{PREFIX}/{crew}/"


@dataclass
class LaunchSecrets:
    """What one launch's secrets made on AWS, to remove once its job no longer needs them."""

    store: str
    client: Any  # the Secrets Manager or SSM client that made them
    batch: Any  # the Batch client that registered the revision
    ids: list[str] = field(default_factory=list)  # secret ARNs, or parameter names
    definition: str | None = None  # the ARN of the job definition revision that names them
    job_id: str | None = None  # the job submitted with it

    def describe(self) -> str:
        return ", ".join([*self.ids, *([self.definition] if self.definition else [])])


class LaunchKeys:
    """One worker's launch secrets on AWS: made for each launch, held until its job no longer needs
    them, then removed. Thread-safe: the crew starts, checks and kills workers from several threads."""

    def __init__(self, worker: str, store: str = "secretsmanager", execution_role: str | None = None) -> None:
        if store not in STORES:
            raise ValueError(f"secrets_store must be one of {STORES}, not {store!r}")
        self.worker, self.store, self.execution_role = worker, store, execution_role
        self.held: LaunchSecrets | None = None  # the current launch's, until released
        self._lock = threading.Lock()

    def make(self, batch: Any, profile: str | None, source: Mapping[str, Any], launch: Launch) -> str:
        """Store the launch's secrets and register the revision of ``source`` that names them (in
        the Batch client's region); return the revision's ARN, to submit the job with."""
        client = secrets_client(self.store, batch.meta.region_name, profile)
        made = create(batch, client, self.store, source, launch, self.worker, self.execution_role)
        with self._lock:
            self.held = made
        assert made.definition is not None
        return made.definition

    def submitted(self, job_id: str) -> None:
        with self._lock:
            if self.held is not None:
                self.held.job_id = job_id

    def release(self, job_id: str | None = None) -> None:
        """Remove the current launch's secrets and revision (only if they are ``job_id``'s, when
        given). A failure is logged and they are kept, to be tried again at the next chance."""
        with self._lock:
            made = self.held
            if made is None or (job_id is not None and made.job_id != job_id):
                return
            self.held = None
        try:
            release(made)
        except Exception as exc:
            log.warning("worker %r: could not remove its launch's key (%s): %s", self.worker, made.describe(), exc)
            with self._lock:
                if self.held is None:
                    self.held = made


def no_longer_needed(state: str | None, retry_attempts: int) -> bool:
    """Whether a job in this Batch state needs its secrets no more: it has ended (``GONE``: Batch
    forgot it), or it runs and Batch will not start it again (a next attempt reads them as it starts)."""
    return state in ("SUCCEEDED", "FAILED", "GONE") or (state == "RUNNING" and retry_attempts <= 1)


def release_many(keys: list[tuple[LaunchKeys, str | None]]) -> None:
    """Release several workers' keys (each if still its ``job id``'s): in parallel, as jobs that
    waited on a busy queue start together."""
    if len(keys) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, len(keys))) as pool:
            list(pool.map(lambda item: item[0].release(item[1]), keys))
    elif keys:
        keys[0][0].release(keys[0][1])


def create(
    batch: Any,
    client: Any,
    store: str,
    source: Mapping[str, Any],
    launch: Launch,
    worker: str,
    execution_role: str | None = None,
) -> LaunchSecrets:
    """Store the launch's secrets and register the revision of ``source`` (the worker's job
    definition, as DescribeJobDefinitions gave it) that names them. On failure, whatever was made
    is removed again before the error propagates."""
    made = LaunchSecrets(store, client, batch)
    tags = {
        "crew:crew": launch.crew,
        "crew:label": launch.label,  # what forget_crew matches: the crew's id and store
        "crew:worker": launch.worker or worker,
        "crew:incarnation": str(launch.incarnation),
    }
    about = f"launch {launch.incarnation} of crew worker {worker!r} ({launch.label}): removed once it has started"
    try:
        references = []
        folder = crew_prefix(store, launch.crew) + f"{_safe(worker)}/{launch.incarnation}/{random.token_hex(8)}/"
        for variable, value in sorted(launch.secrets.items()):
            name = folder + _safe(variable)
            if store == "ssm":
                client.put_parameter(Name=name, Value=value, Type="SecureString", Description=about,
                                     Tags=[{"Key": k, "Value": v} for k, v in tags.items()])  # fmt: skip
                made.ids.append(name)  # a name in the job's region is a valid valueFrom
            else:
                answer = client.create_secret(Name=name, SecretString=value, Description=about,
                                              Tags=[{"Key": k, "Value": v} for k, v in tags.items()])  # fmt: skip
                made.ids.append(answer["ARN"])  # Secrets Manager takes the full ARN only
            references.append({"name": variable, "valueFrom": made.ids[-1]})
        request = derived_definition(source, references, launch.crew, tags, execution_role)
        made.definition = batch.register_job_definition(**request)["jobDefinitionArn"]
    except BaseException as exc:
        try:
            release(made)
        except Exception as cleanup:
            exc.add_note(f"also failed to remove what was made for the launch ({made.describe()}): {cleanup}")
        raise
    return made


def derived_definition(
    source: Mapping[str, Any],
    references: list[dict[str, str]],
    crew: str,
    tags: Mapping[str, str],
    execution_role: str | None = None,
) -> dict[str, Any]:
    """The RegisterJobDefinition request of a launch: ``source`` with ``references`` added to its
    container's ``secrets`` (replacing any of the same name), under ``crew-<crew id>``."""
    properties = dict(source["containerProperties"])
    names = {reference["name"] for reference in references}
    properties["secrets"] = [s for s in properties.get("secrets") or [] if s.get("name") not in names] + references
    if execution_role:
        properties["executionRoleArn"] = execution_role
    request: dict[str, Any] = {
        "jobDefinitionName": definition_name(crew),
        "type": "container",
        "containerProperties": properties,
        "tags": {**tags, "crew:source": str(source.get("jobDefinitionArn", ""))},
    }
    for key in (
        "parameters",
        "retryStrategy",
        "timeout",
        "propagateTags",
        "platformCapabilities",
        "schedulingPriority",
    ):
        if source.get(key) is not None:
            request[key] = source[key]
    return request


def release(made: LaunchSecrets) -> None:
    """Delete the launch's secrets, then deregister its revision; what is gone already is no
    error. The revision stays while a secret does: it is the record of what is left."""
    delete_secrets(made.store, made.client, made.ids)
    if made.definition:
        deregister(made.batch, made.definition)


def delete_secrets(store: str, client: Any, ids: list[str]) -> None:
    """Delete secrets (ARNs) or parameters (names) at once, for good; raise after trying them all."""
    problems = []
    if store == "ssm":
        for start in range(0, len(ids), 10):  # DeleteParameters takes 10 names a call; unknown ones are no error
            try:
                client.delete_parameters(Names=ids[start : start + 10])
            except Exception as exc:
                problems.append(f"{', '.join(ids[start : start + 10])} ({exc})")
    else:
        for arn in ids:
            try:  # no recovery window: a deleted key must not be readable for another week
                client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
            except Exception as exc:
                if error_code(exc) not in _GONE:
                    problems.append(f"{arn} ({exc})")
    if problems:
        raise RuntimeError(f"could not delete launch secret(s): {'; '.join(problems)}")


def deregister(batch: Any, arn: str) -> None:
    """Deregister a job definition revision; one that is gone or inactive already is no error."""
    try:
        batch.deregister_job_definition(jobDefinition=arn)
    except Exception as exc:
        if "not found" not in str(exc).lower() and "inactive" not in str(exc).lower():
            raise RuntimeError(f"could not deregister job definition {arn}: {exc}") from exc


# ---------------------------------------------------------------------- what a crew left (crew stop)
def forget(jobs: Iterable[BackendJob], batch_for: Callable[[str], Any], profile: str | None, whole_crew: bool) -> None:
    """Remove what the launches of these jobs (ended by :meth:`BatchWorker.end`) left: their own
    secrets and revisions, or (``whole_crew``, when the crew's controller is gone) everything
    each crew left in each region. ``batch_for(region)`` gives a Batch client. Raises after trying all."""
    jobs = list(jobs)
    problems = []
    for region, store, label in sorted({(job.place["region"], store_of(job.place), job.label) for job in jobs}):
        try:
            if whole_crew:
                forget_crew(batch_for(region), label, store, profile)
            else:  # a live controller ending a launch it adopted: that launch's alone
                ids = {job.id: job.label for job in jobs if (job.place["region"], job.label) == (region, label)}
                forget_jobs(batch_for(region), ids, profile)
        except Exception as exc:
            problems.append(f"could not remove the launch keys of crew {label} in {region}: {exc}")
    if problems:
        raise RuntimeError("; ".join(problems))


def store_of(place: Mapping[str, Any]) -> str:
    """Where a place's launch keys are kept (places noted before there were any: Secrets Manager)."""
    store = place.get("secrets_store", "secretsmanager")
    if store not in STORES:
        raise ValueError(f"a Batch place's secrets_store is one of {STORES}, not {store!r}")
    return str(store)


def forget_jobs(batch: Any, jobs: Mapping[str, str], profile: str | None) -> None:
    """Remove the secrets and revisions of these jobs' launches (``{job id: crew label}``): those
    of the revisions the jobs were submitted with, if crew made them for that crew."""
    ids = list(jobs)
    arns: dict[str, str] = {}
    for start in range(0, len(ids), 100):
        for job in batch.describe_jobs(jobs=ids[start : start + 100])["jobs"]:
            arns[job["jobDefinition"]] = jobs[job["jobId"]]
    listed = list(arns)
    definitions = []
    for start in range(0, len(listed), 100):
        definitions += batch.describe_job_definitions(jobDefinitions=listed[start : start + 100])["jobDefinitions"]
    _forget_definitions(batch, [d for d in definitions if d.get("tags", {}).get("crew:label") == arns.get(
        d["jobDefinitionArn"])], profile)  # fmt: skip


def forget_crew(batch: Any, label: str, store: str, profile: str | None) -> None:
    """Remove every secret and revision the crew labelled ``label`` left in the Batch client's
    region: its ACTIVE revisions (and the secrets they name), then any secret of its without one
    (a controller killed between the two). For a crew whose controller is gone (``crew stop``)."""
    crew = label.rpartition("@")[0]
    pages = batch.get_paginator("describe_job_definitions").paginate(
        jobDefinitionName=definition_name(crew), status="ACTIVE"
    )
    definitions = [d for page in pages for d in page["jobDefinitions"] if d.get("tags", {}).get("crew:label") == label]
    _forget_definitions(batch, definitions, profile)
    client = secrets_client(store, batch.meta.region_name, profile)
    left = _crew_secrets(client, store, crew, label)
    if left:
        log.info("removing %d secret(s) that crew %s left without a job definition", len(left), label)
        delete_secrets(store, client, left)


def _forget_definitions(batch: Any, definitions: Iterable[Mapping[str, Any]], profile: str | None) -> None:
    """Delete the secrets crew made that each ACTIVE revision names, then deregister it."""
    problems = []
    for definition in definitions:
        if definition.get("status", "ACTIVE") != "ACTIVE":
            continue  # deregistered: its secrets went first
        crew = str(definition.get("tags", {}).get("crew:label", "")).rpartition("@")[0]
        try:
            for store, ids in _named_secrets(definition, crew).items():
                delete_secrets(store, secrets_client(store, batch.meta.region_name, profile), ids)
            deregister(batch, definition["jobDefinitionArn"])
        except Exception as exc:
            problems.append(str(exc))
    if problems:
        raise RuntimeError("; ".join(problems))


def _named_secrets(definition: Mapping[str, Any], crew: str) -> dict[str, list[str]]:
    """The secrets crew made for ``crew`` that a revision names, by store: never the user's own
    secrets that the worker's definition carried."""
    found: dict[str, list[str]] = {}
    for secret in definition.get("containerProperties", {}).get("secrets") or []:
        value_from = str(secret.get("valueFrom", ""))
        parts = value_from.split(":")
        if value_from.startswith("arn:") and len(parts) > 6 and parts[2] == "secretsmanager":
            if parts[6].startswith(crew_prefix("secretsmanager", crew)):
                found.setdefault("secretsmanager", []).append(value_from)
        elif value_from.startswith(crew_prefix("ssm", crew)):
            found.setdefault("ssm", []).append(value_from)
    return found


def _crew_secrets(client: Any, store: str, crew: str, label: str) -> list[str]:
    """The crew's secrets (ARNs) or parameters (names), found by name and by the label tag."""
    prefix = crew_prefix(store, crew)
    if store == "ssm":
        pages = client.get_paginator("describe_parameters").paginate(ParameterFilters=[
            {"Key": "Name", "Option": "BeginsWith", "Values": [prefix]},
            {"Key": "tag:crew:label", "Option": "Equals", "Values": [label]},
        ])  # fmt: skip
        return [p["Name"] for page in pages for p in page["Parameters"]]
    pages = client.get_paginator("list_secrets").paginate(Filters=[{"Key": "name", "Values": [prefix]}])
    return [s["ARN"] for page in pages for s in page["SecretList"]
            if {t["Key"]: t["Value"] for t in s.get("Tags", [])}.get("crew:label") == label]  # fmt: skip


def _safe(part: str) -> str:
    """A name part both Secrets Manager and SSM accept (letters, digits, ``_.-``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", part)[:64] or "-"
