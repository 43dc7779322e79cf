"""moto's server for the session (S3, Secrets Manager, SSM), dummy credentials, a fresh bucket per
test, and a Batch control plane that reads launch keys from that moto."""

from __future__ import annotations

import uuid

import pytest

moto = pytest.importorskip("moto", reason="the crew-aws tests need moto[server]")

from crew_aws.testing import moto_s3  # noqa: E402

import crew_core.plugin  # noqa: E402

#: boto3 reads these: the controller (and crew stop) keep and remove launch keys in moto.
SECRETS_ENDPOINTS = ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SSM")
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint():
    with pytest.MonkeyPatch.context() as environment:  # every variable set here is restored at the end
        for key, value in {**FAKE_CREDENTIALS, "CREW_S3_POLL_INTERVAL": "0.01,0.25"}.items():  # quick polls
            environment.setenv(key, value)
        crew_core.plugin.reset_default_plugins()  # rebuild the defaults so crew_configure reads the variable
        with moto_s3() as endpoint:
            for key in ("AWS_ENDPOINT_URL_S3", *SECRETS_ENDPOINTS):  # workers inherit it, as users' would;
                environment.setenv(key, endpoint)  # and where controllers keep launch keys
            yield endpoint
        crew_core.plugin.reset_default_plugins()


@pytest.fixture
def s3(s3_endpoint):
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def bucket(s3):
    name = f"crew-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(autouse=True)
def quick_batch_status(monkeypatch):
    """Ask the Batch control plane every 0.2 s instead of every 5 s: tests wait less."""
    from crew_aws import BatchWorker

    monkeypatch.setattr(BatchWorker, "status_interval", 0.2)


@pytest.fixture
def batch(s3_endpoint):
    """crew_aws.testing's Batch control plane with a queue and a job definition (with an execution
    role), reading jobs' secrets from moto. Whatever launch keys a test left are removed after it."""
    from crew_aws.testing import BatchControlPlane

    with BatchControlPlane(stop_timeout=1.0, secrets_endpoint=s3_endpoint) as plane:
        plane.create_queue("crew-queue")
        plane.register_definition("crew-worker", image="example/crew-worker:1")
        yield plane
    remove_launch_keys(s3_endpoint)


@pytest.fixture
def launch_keys(s3_endpoint):
    """A function: every secret and SSM parameter crew made (names under ``crew/``) in moto now."""
    return lambda: list_launch_keys(s3_endpoint)


def list_launch_keys(endpoint: str) -> list[str]:
    import boto3

    secrets = boto3.client("secretsmanager", endpoint_url=endpoint)
    ssm = boto3.client("ssm", endpoint_url=endpoint)
    by_name = [{"Key": "name", "Values": ["crew/"]}]
    names = [s["ARN"] for page in secrets.get_paginator("list_secrets").paginate(Filters=by_name)
             for s in page["SecretList"]]  # fmt: skip
    by_path = [{"Key": "Name", "Option": "BeginsWith", "Values": ["/crew/"]}]
    names += [p["Name"] for page in ssm.get_paginator("describe_parameters").paginate(ParameterFilters=by_path)
              for p in page["Parameters"]]  # fmt: skip
    return names


def remove_launch_keys(endpoint: str) -> None:
    import boto3

    secrets = boto3.client("secretsmanager", endpoint_url=endpoint)
    ssm = boto3.client("ssm", endpoint_url=endpoint)
    for name in list_launch_keys(endpoint):
        if name.startswith("arn:"):
            secrets.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        else:
            ssm.delete_parameter(Name=name)


@pytest.fixture
def options(batch):
    """BatchWorker options for that plane: the "image" is this machine's Python."""
    import sys

    return {
        "job_queue": "crew-queue",
        "job_definition": "crew-worker",
        "python": sys.executable,
        "endpoint_url": batch.endpoint,
        "region": batch.region,
    }


@pytest.fixture
def crew(bucket, options):
    """A crew on a fresh bucket that can recruit on the plane (``crew.recruit(**options)``)."""
    from crew_core import Crew

    with Crew(store=f"s3://{bucket}/crews/batch", worker_classes=["aws-batch"]) as crew:
        yield crew
