"""A local Secret Manager v1 (secrets and their versions) for tests, served by the Cloud Run plane.

google-cloud-secret-manager's REST transport talks to it (``client_options={"api_endpoint":
plane.endpoint}``, anonymous credentials). It serves CreateSecret, GetSecret, ListSecrets (with
``labels.KEY=VALUE`` and ``name:TEXT`` filters joined by ``AND``, and pages), DeleteSecret,
AddSecretVersion and AccessSecretVersion (a number or ``latest``) with the real shapes and status
codes: 400 for a bad secret id, a missing replication, a TTL under 60 s, a payload over 64 KiB or
one whose CRC32C does not match, or a filter it does not know; 404 for what does not exist; 409
for a secret id in use. A secret's TTL is honoured: once past its ``expireTime`` it is gone. The
control plane resolves executions' ``secretKeyRef`` variables through :meth:`SecretManager.access`.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from .google_api import ApiError, timestamp

_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")
_MAX_PAYLOAD = 64 * 1024  # bytes, Secret Manager's limit for one version


class SecretManager:
    """Secrets by name (``projects/P/secrets/S``), with their versions' payloads."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.payloads: dict[str, dict[int, bytes]] = {}  # secret -> version -> data
        self.list_page_size = 100
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ for tests and the plane
    def names(self, **labels: str) -> list[str]:
        """The secrets that exist now, those whose labels include ``labels`` if given."""
        with self._lock:
            self._expire()
            return sorted(name for name, secret in self.secrets.items()
                          if labels.items() <= secret.get("labels", {}).items())  # fmt: skip

    def expires(self, secret: str) -> float:
        """When ``secret`` expires (seconds since the epoch; infinity: never)."""
        with self._lock:
            return float(self.secrets[secret].get("_expires", float("inf")))

    def access(self, secret: str, version: str) -> str:
        """A version's payload as text, for an execution's environment; :class:`ApiError` (404)
        when the secret, or that version, does not exist."""
        with self._lock:
            return self._payload(secret, version).decode()

    # ------------------------------------------------------------------ the API
    def route(self, method: str, resource: str, body: dict[str, Any], query: str) -> dict[str, Any]:
        """Answer one request under ``/v1/`` (``resource`` without that prefix)."""
        params = dict(parse_qsl(query.replace(";", "&")))
        parts = resource.split("/")
        with self._lock:
            self._expire()
            if method == "POST" and len(parts) == 3 and parts[2] == "secrets":
                return self._create(f"projects/{parts[1]}", params.get("secretId", ""), body)
            if method == "GET" and len(parts) == 3 and parts[2] == "secrets":
                return self._list(f"projects/{parts[1]}", params)
            if method == "POST" and len(parts) == 4 and resource.endswith(":addVersion"):
                return self._add_version(resource[: -len(":addVersion")], body)
            if method == "GET" and len(parts) == 6 and resource.endswith(":access"):
                secret, _, version = resource[: -len(":access")].rpartition("/versions/")
                return self._access(secret, version)
            if method == "GET" and len(parts) == 4 and parts[2] == "secrets":
                return self._secret(resource)
            if method == "DELETE" and len(parts) == 4 and parts[2] == "secrets":
                self._secret(resource)
                del self.secrets[resource], self.payloads[resource]
                return {}
        raise ApiError(404, "NOT_FOUND", f"no method {method} /v1/{resource}")

    def _create(self, parent: str, secret_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if not _SECRET_ID.match(secret_id):
            raise ApiError(400, "INVALID_ARGUMENT", f"secret_id {secret_id!r}: letters, digits, '_' and '-', 1 to 255")
        replication = body.get("replication") or {}
        if "automatic" not in replication and not (replication.get("userManaged") or {}).get("replicas"):
            raise ApiError(400, "INVALID_ARGUMENT", "Secret.replication is required")
        name = f"{parent}/secrets/{secret_id}"
        if name in self.secrets:
            raise ApiError(409, "ALREADY_EXISTS", f"Secret [{name}] already exists.")
        now = time.time()
        secret: dict[str, Any] = {
            "name": name,
            "replication": replication,
            "createTime": timestamp(now),
            "labels": dict(body.get("labels") or {}),
            "annotations": dict(body.get("annotations") or {}),
            "etag": f'"{now:.6f}"',
        }
        if "ttl" in body:
            seconds = _seconds(body["ttl"])
            if seconds < 60:
                raise ApiError(400, "INVALID_ARGUMENT", "The expiration must be at least 60 seconds in the future.")
            secret["expireTime"] = timestamp(now + seconds)
            secret["_expires"] = now + seconds
        self.secrets[name], self.payloads[name] = secret, {}
        return _shown(secret)

    def _secret(self, name: str) -> dict[str, Any]:
        if name not in self.secrets:
            raise ApiError(404, "NOT_FOUND", f"Secret [{name}] not found.")
        return _shown(self.secrets[name])

    def _list(self, parent: str, params: dict[str, str]) -> dict[str, Any]:
        wanted = _filter(params.get("filter", ""))
        found = [s for n, s in sorted(self.secrets.items()) if n.startswith(parent + "/secrets/") and wanted(s)]
        size = int(params.get("pageSize") or self.list_page_size)
        start = int(params.get("pageToken") or 0)
        page: dict[str, Any] = {"secrets": [_shown(s) for s in found[start : start + size]], "totalSize": len(found)}
        if start + size < len(found):
            page["nextPageToken"] = str(start + size)
        return page

    def _add_version(self, secret: str, body: dict[str, Any]) -> dict[str, Any]:
        self._secret(secret)
        payload = body.get("payload") or {}
        data = base64.b64decode(payload.get("data", ""))
        if len(data) > _MAX_PAYLOAD:
            raise ApiError(400, "INVALID_ARGUMENT", f"payload is {len(data)} bytes; at most {_MAX_PAYLOAD}")
        if "dataCrc32c" in payload:
            import google_crc32c

            if int(payload["dataCrc32c"]) != google_crc32c.value(data):
                raise ApiError(400, "INVALID_ARGUMENT", "Data corruption detected: the checksum does not match.")
        versions = self.payloads[secret]
        number = max(versions, default=0) + 1
        versions[number] = data
        return {"name": f"{secret}/versions/{number}", "createTime": timestamp(), "state": "ENABLED",
                "replicationStatus": {}, "etag": f'"{time.time():.6f}"'}  # fmt: skip

    def _access(self, secret: str, version: str) -> dict[str, Any]:
        import google_crc32c

        data = self._payload(secret, version)
        number = max(self.payloads[secret]) if version == "latest" else int(version)
        payload = {"data": base64.b64encode(data).decode(), "dataCrc32c": str(google_crc32c.value(data))}
        return {"name": f"{secret}/versions/{number}", "payload": payload}

    def _payload(self, secret: str, version: str) -> bytes:
        self._expire()
        versions = self.payloads.get(secret)
        if versions is None:
            raise ApiError(404, "NOT_FOUND", f"Secret [{secret}] not found or has no versions.")
        if version == "latest" and versions:
            return versions[max(versions)]
        if not version.isdigit() or int(version) not in versions:
            raise ApiError(404, "NOT_FOUND", f"Secret Version [{secret}/versions/{version}] not found.")
        return versions[int(version)]

    def _expire(self) -> None:
        """Secret Manager deletes a secret at its expiration time: so does this one, when next asked."""
        now = time.time()
        for name in [n for n, s in self.secrets.items() if s.get("_expires", now + 1) <= now]:
            del self.secrets[name], self.payloads[name]


def _shown(secret: dict[str, Any]) -> dict[str, Any]:
    """A secret as the API returns it (never a payload: that takes AccessSecretVersion)."""
    return {key: value for key, value in secret.items() if not key.startswith("_")}


def _seconds(duration: object) -> float:
    match = _DURATION.match(str(duration))
    if match is None:
        raise ApiError(400, "INVALID_ARGUMENT", f"ttl must be a duration such as '3600s', not {duration!r}")
    return float(match.group(1))


def _filter(text: str) -> Callable[[dict[str, Any]], bool]:
    """``labels.KEY=VALUE`` and ``name:TEXT`` terms joined by ``AND``: what crew uses of the
    List-operation filtering language; anything else is refused rather than ignored."""
    labels: dict[str, str] = {}
    names: list[str] = []
    for term in (t.strip() for t in text.split(" AND ")) if text.strip() else ():
        label = re.fullmatch(r"labels\.([a-z][a-z0-9_-]{0,62})\s*=\s*\"?([a-z0-9_-]{0,63})\"?", term)
        name = re.fullmatch(r"name\s*:\s*\"?([A-Za-z0-9_-]+)\"?", term)
        if label is not None:
            labels[label.group(1)] = label.group(2)
        elif name is not None:
            names.append(name.group(1))
        else:
            raise ApiError(400, "INVALID_ARGUMENT", f"this control plane does not know the filter term {term!r}")

    def matches(secret: dict[str, Any]) -> bool:
        short = secret["name"].rpartition("/")[2]
        return labels.items() <= secret.get("labels", {}).items() and all(text in short for text in names)

    return matches
