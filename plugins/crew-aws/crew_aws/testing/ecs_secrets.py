"""What ECS does with a job definition's ``secrets`` when a task starts, for the Batch control plane.

Each ``{"name", "valueFrom"}`` is read with the definition's execution role: ``valueFrom`` is a
Secrets Manager secret's ARN (optionally ``:json-key:version-stage:version-id`` after it) or an SSM
parameter's ARN or name (in the job's region). The values go into the container's environment
only. When one cannot be read the task never starts, and the reason is ECS's own wording
(``ResourceInitializationError: unable to pull secrets or registry auth: ...``), which Batch shows
as the job's ``statusReason``. IAM is not modelled: the execution role must merely be there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: How ECS words a task that could not read its secrets at start.
PULL_FAILED = (
    "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed"
)


def pull_secrets(properties: Mapping[str, Any], region: str, endpoint: str | None) -> tuple[dict[str, str], str | None]:
    """``(values by variable name, None)``, or ``({}, why the task cannot start)``.

    ``properties`` is the definition's ``containerProperties``; ``endpoint`` is where Secrets
    Manager and SSM answer (None: boto3's default).
    """
    wanted = properties.get("secrets") or []
    if not wanted:
        return {}, None
    if not properties.get("executionRoleArn"):
        return {}, f"{PULL_FAILED}: the job definition has secrets but no executionRoleArn to read them with"
    values: dict[str, str] = {}
    for secret in wanted:
        value_from = secret["valueFrom"]
        if value_from.startswith("arn:") and value_from.split(":")[2] == "secretsmanager":
            value, failure = _from_secrets_manager(value_from, endpoint)
        else:
            value, failure = _from_ssm(value_from, region, endpoint)
        if failure is not None:
            return {}, failure
        values[secret["name"]] = value
    return values, None


def _from_secrets_manager(value_from: str, endpoint: str | None) -> tuple[str, str | None]:
    import boto3

    parts = value_from.split(":")
    arn, (json_key, stage, version) = ":".join(parts[:7]), [*parts[7:], "", "", ""][:3]
    client = boto3.client("secretsmanager", region_name=parts[3], endpoint_url=endpoint)
    versions = {**({"VersionStage": stage} if stage else {}), **({"VersionId": version} if version else {})}
    try:
        text = client.get_secret_value(SecretId=arn, **versions)["SecretString"]
        return (str(json.loads(text)[json_key]) if json_key else text), None
    except Exception as exc:
        return "", (
            f"{PULL_FAILED}: unable to retrieve secret from asm: service call has been retried 1 time(s):"
            f" failed to fetch secret {arn} from secrets manager: {_aws_error(exc)}"
        )


def _from_ssm(value_from: str, region: str, endpoint: str | None) -> tuple[str, str | None]:
    import boto3

    name = value_from
    if value_from.startswith("arn:"):  # arn:aws:ssm:region:account:parameter/path/name
        parts = value_from.split(":", 5)
        region, path = parts[3], parts[5].partition("/")[2]
        name = "/" + path if "/" in path else path
    client = boto3.client("ssm", region_name=region, endpoint_url=endpoint)
    problem = ""
    try:
        answer = client.get_parameters(Names=[name], WithDecryption=True)
        if answer.get("Parameters") and not answer.get("InvalidParameters"):
            return answer["Parameters"][0]["Value"], None
    except Exception as exc:
        problem = f" ({_aws_error(exc)})"
    return "", (
        f"{PULL_FAILED}: unable to retrieve secrets from ssm: service call has been retried 1 time(s):"
        f" invalid parameters: {name}{problem}"
    )


def _aws_error(exc: BaseException) -> str:
    error = (getattr(exc, "response", None) or {}).get("Error", {})
    return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', exc)}"
