"""moto's S3 server for the session, dummy credentials, a fresh bucket per test, and a Batch control plane."""

from __future__ import annotations

import os
import uuid

import pytest

moto = pytest.importorskip("moto", reason="the crew-aws tests need moto[server]")

from crew_aws.testing import moto_s3  # noqa: E402

import crew_core.plugin.registry  # noqa: E402

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint():
    saved = {key: os.environ.get(key) for key in [*FAKE_CREDENTIALS, "AWS_ENDPOINT_URL_S3", "CREW_S3_POLL_INTERVAL"]}
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["CREW_S3_POLL_INTERVAL"] = "0.01,0.25"  # quick tests; the default idles at 5 s
    crew_core.plugin.registry._default = None  # rebuild the defaults so crew_configure reads the variable
    with moto_s3() as endpoint:
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint  # workers inherit it, as users' would
        yield endpoint
    crew_core.plugin.registry._default = None
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
def batch():
    """crew_aws.testing's Batch control plane with a queue and a job definition."""
    from crew_aws.testing import BatchControlPlane

    with BatchControlPlane(stop_timeout=1.0) as plane:
        plane.create_queue("crew-queue")
        plane.register_definition("crew-worker", image="example/crew-worker:1")
        yield plane


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
