"""A launch's secrets through Secret Manager: never in an execution's plain environment.

Cloud Run shows an execution's environment overrides to anyone who may get or list executions,
so each of a launch's secrets (``Launch.secrets``: the crew's signing key) becomes a Secret
Manager secret of its own, in the job's project and stored in the job's region only, and the
RunJob override passes it as an ``EnvVar`` whose ``value_source.secret_key_ref`` names the secret
and the version that holds the value. Cloud Run reads it, as the job's service account, when the
task's container starts; get and list show the reference alone.

A secret lives from just before RunJob until nothing will read it:

- the worker's status poll sees its execution with a running task, ended, or gone;
- the worker is killed or closed (``crew.close()``), or RunJob failed;
- ``crew stop`` (``CloudRunWorker.end``) deletes those of the launches it ends and of the
  crew's launches that have ended, found by the crew's label;
- Secret Manager deletes it at its expiration (``secret_ttl`` after its creation): what a
  controller killed meanwhile leaves when no ``crew stop`` follows.

Labels say whose a secret is and can be filtered on: ``managed_by=crew``, and ``crew_label``, a
form of the crew's label that label values allow (keys without ``-``, which a filter may read as
NOT). Annotations keep the exact label, worker, launch number and job, which decide.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from crew_core.plugin import Launch

from .clients import launch_error, secret_client

log = logging.getLogger("crew")

#: Where ``find`` and ``end`` reach Secret Manager when not at Google's own endpoint (gcloud's variable).
ENDPOINT_ENV = "CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER"
#: Seconds from a secret's creation to its expiration, unless ``secret_ttl`` says otherwise.
DEFAULT_TTL = 3600.0
#: Secret Manager refuses an expiration less than a minute away.
MIN_TTL = 60.0
#: The label a crew's secrets are listed by.
LABEL_KEY = "crew_label"

_held: set[str] = set()  # secrets that launches started by this process may still need
_held_lock = threading.Lock()


@dataclass(frozen=True)
class SecretRef:
    """One environment variable passed by reference, as the RunJob override carries it."""

    variable: str
    secret: str  # projects/P/secrets/S
    version: str  # the version that holds the value: "1"

    def env_var(self) -> Any:
        """The ``run_v2.EnvVar`` naming the secret version instead of holding a value."""
        from google.cloud import run_v2

        selector = run_v2.SecretKeySelector(secret=self.secret, version=self.version)
        return run_v2.EnvVar(name=self.variable, value_source=run_v2.EnvVarSource(secret_key_ref=selector))


@dataclass(frozen=True)
class CrewSecret:
    """A secret a crew's launch left, found by the crew's label: whose launch it was."""

    name: str
    worker: str
    incarnation: int


def label_value(label: str) -> str:
    """``label`` (``<crew id>@<digest>``) as a label value may spell it: the crew id in lowercase
    letters, digits, ``_`` and ``-``, then a digest of the whole label; at most 63 characters."""
    return f"{_crew_id(label)}-{hashlib.sha256(label.encode()).hexdigest()[:16]}"


def _crew_id(label: str) -> str:
    """The crew id of ``label`` in the characters that label values and secret ids share."""
    return re.sub(r"[^a-z0-9_-]", "-", label.rpartition("@")[0].lower())[:40]


class LaunchSecrets:
    """The secrets of one worker's launches, by execution, until nothing will read them.

    Safe to use from the crew's threads at once (a status poll may release what a start made).
    """

    def __init__(self, owner: str, ttl: float, api_endpoint: str | None) -> None:
        if not ttl >= MIN_TTL:
            raise ValueError(f"secret_ttl must be at least {MIN_TTL:.0f} seconds (Secret Manager's shortest"
                             f" expiration), not {ttl!r}")  # fmt: skip
        self.owner, self.ttl, self.api_endpoint = owner, float(ttl), api_endpoint
        self._by_execution: dict[str | None, list[str]] = {}  # None: its RunJob has not answered yet
        self._lock = threading.Lock()

    def create(self, launch: Launch, job: str) -> list[SecretRef]:
        """Keep each of ``launch.secrets`` in a new secret of ``job``'s project (its value as
        version 1, stored in the job's region, expiring after ``ttl``); all or none: a failure
        deletes what was made and raises :class:`~crew_core.plugin.WorkerLaunchError`."""
        refs: list[SecretRef] = []
        try:
            for variable, value in sorted(launch.secrets.items()):
                refs.append(self._create_one(launch, job, variable, value))
        except Exception as exc:
            error = launch_error(exc, f"keep the secret of worker {self.owner!r} in Secret Manager", "Secret Manager")
            self.release()
            raise error from exc
        return refs

    def _create_one(self, launch: Launch, job: str, variable: str, value: str) -> SecretRef:
        import google_crc32c

        _, project, _, region, _, _ = job.split("/")
        client = secret_client(self.api_endpoint)
        notes = {"crew-label": launch.label, "crew-worker": launch.worker, "crew-variable": variable,
                 "crew-incarnation": str(launch.incarnation), "crew-job": job}  # fmt: skip
        labels = {"managed_by": "crew", LABEL_KEY: label_value(launch.label)}
        replication = {"user_managed": {"replicas": [{"location": region}]}}  # where the job runs, only
        secret = {"replication": replication, "labels": labels, "annotations": notes, "ttl": f"{int(self.ttl)}s"}
        secret_id = f"crew-{_crew_id(launch.label)[:32]}".rstrip("-_") + f"-{secrets.token_hex(8)}"
        request = {"parent": f"projects/{project}", "secret_id": secret_id, "secret": secret}
        name = client.create_secret(request=request).name
        with _held_lock:
            _held.add(name)
        with self._lock:
            self._by_execution.setdefault(None, []).append(name)
        data = value.encode()
        payload = {"data": data, "data_crc32c": google_crc32c.value(data)}  # Secret Manager checks it
        version = client.add_secret_version(request={"parent": name, "payload": payload}).name
        return SecretRef(variable, name, version.rpartition("/")[2])

    def started(self, execution: str) -> None:
        """RunJob answered: the secrets just made belong to ``execution``."""
        with self._lock:
            self._by_execution.setdefault(execution, []).extend(self._by_execution.pop(None, []))

    def release(self, execution: str | None = None) -> None:
        """Delete the secrets of ``execution`` (all by default); any that cannot be deleted now
        is kept to be tried again, and logged (it expires on its own)."""
        with self._lock:
            if execution is None:
                taken, self._by_execution = self._by_execution, {}
            else:
                taken = {execution: self._by_execution.pop(execution, [])}
        for key, names in taken.items():
            failed = delete(names, self.api_endpoint) if names else {}
            if failed:
                log.warning("worker %r could not delete launch secret(s) %s in Secret Manager (tried again later;"
                            " they expire on their own): %s", self.owner, ", ".join(failed),
                            "; ".join(failed.values()))  # fmt: skip
                with self._lock:
                    self._by_execution.setdefault(key, []).extend(failed)


def delete(names: Iterable[str], api_endpoint: str | None) -> dict[str, str]:
    """Delete each secret (one already gone is no error); ``{secret: why}`` for those that could
    not be deleted now."""
    from google.api_core.exceptions import NotFound

    failed = {}
    for name in names:
        try:
            secret_client(api_endpoint).delete_secret(request={"name": name})
        except NotFound:
            pass
        except Exception as exc:
            failed[name] = str(exc)
            continue
        with _held_lock:
            _held.discard(name)
    return failed


def crew_secrets(label: str, job: str, api_endpoint: str | None) -> list[CrewSecret]:
    """The secrets that launches of the crew labelled ``label`` made for ``job`` and that still
    exist (listed by the label's safe form, then checked against the exact label and job)."""
    project = job.split("/")[1]
    request = {"parent": f"projects/{project}", "filter": f'labels.{LABEL_KEY}="{label_value(label)}"'}
    found = []
    for secret in secret_client(api_endpoint).list_secrets(request=request):  # pages lazily
        notes = secret.annotations
        if notes.get("crew-label") != label or notes.get("crew-job") != job:
            continue
        number = notes.get("crew-incarnation", "")
        found.append(CrewSecret(secret.name, notes.get("crew-worker", ""), int(number) if number.isdigit() else 0))
    return found


def delete_left(label: str, job: str, running: set[tuple[str, int]], api_endpoint: str | None) -> None:
    """Delete the secrets the crew labelled ``label`` left at ``job``, but those of ``running``
    launches (``(worker, incarnation)``) and those this process's own launches may still need
    (a controller ending an adopted launch must not break one it is starting)."""
    keep = held()
    left = [s.name for s in crew_secrets(label, job, api_endpoint)
            if (s.worker, s.incarnation) not in running and s.name not in keep]  # fmt: skip
    failed = delete(left, api_endpoint)
    if failed:
        raise RuntimeError("; ".join(f"{name}: {why}" for name, why in failed.items()))


def held() -> frozenset[str]:
    """Secrets made by this process and not deleted yet: its own launches may still need them."""
    with _held_lock:
        return frozenset(_held)
