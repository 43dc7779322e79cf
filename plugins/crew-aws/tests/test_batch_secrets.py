"""Launch keys on AWS Batch: kept in Secrets Manager or SSM (moto), named by a job definition
revision, read by the control plane as the job starts, and never shown by Batch's describe calls."""

from __future__ import annotations

import json

import pytest
from crew_aws import BatchWorker
from crew_aws.batch_secrets import derived_definition
from crew_aws.batch_worker import batch_client
from crew_aws.testing import BatchControlPlane

from crew_core import Crew, WorkerLaunchError
from crew_core.testing import jobs, wait_for

STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")


@pytest.fixture
def given_keys(monkeypatch):
    """Every secret value the crew gave a launch (the core may make a key per launch)."""
    values: list[str] = []
    real = BatchWorker.start

    def start(self, launch):
        values.extend(launch.secrets.values())
        return real(self, launch)

    monkeypatch.setattr(BatchWorker, "start", start)
    return values


def shown_by_batch(plane: BatchControlPlane) -> str:
    """Everything Batch shows of its jobs and job definitions, through boto3, as one text: every
    job described, every listing (by status and by name), every revision, ACTIVE and INACTIVE."""
    client = batch_client(plane.region, plane.endpoint, None)
    ids = list(plane.jobs)
    shown = [client.describe_jobs(jobs=ids[i : i + 100])["jobs"] for i in range(0, len(ids), 100)]
    for status in STATUSES:
        shown.append(client.list_jobs(jobQueue="crew-queue", jobStatus=status)["jobSummaryList"])
    shown.append(client.list_jobs(jobQueue="crew-queue", filters=[{"name": "JOB_NAME", "values": ["crew-*"]}]))
    shown += [page["jobDefinitions"] for page in client.get_paginator("describe_job_definitions").paginate()]
    return json.dumps(shown, default=str)


def crew_revisions(plane: BatchControlPlane, crew_id: str, status: str | None = None) -> list[dict]:
    return [d for ds in plane.definitions.values() for d in ds
            if d["jobDefinitionName"] == f"crew-{crew_id}" and status in (None, d["status"])]  # fmt: skip


@pytest.mark.parametrize("store", ["secretsmanager", "ssm"])
def test_no_launch_key_is_readable_through_batch_and_none_is_left(
    bucket, options, batch, given_keys, launch_keys, tmp_path, store
):
    with Crew(store=f"s3://{bucket}/crews/keys-{store}", worker_classes=["aws-batch"]) as crew:
        workers = crew.recruit(workers=2, secrets_store=store, **options)
        started = tmp_path / "started"
        busy = crew.send(jobs.touch_then_sleep, args=(str(started), 2, "slept"))
        wait_for(started.exists, timeout=120, what="a job to run")
        assert given_keys and all(len(value) == 64 for value in given_keys)  # hex keys reached the workers
        # During the run: Batch shows where each key is (valueFrom), never a key
        shown = shown_by_batch(batch)
        assert not [value for value in given_keys if value in shown]
        for request in batch.requests:  # nor did one ever travel to Batch
            assert not [value for value in given_keys if value in json.dumps(request)]
        job = batch.jobs[workers[0].backend.job_id].describe()
        assert "CREW_SECRET" not in {e["name"] for e in job["container"]["environment"]}
        [reference] = job["container"]["secrets"]
        where = f"arn:aws:secretsmanager:{batch.region}:" if store == "secretsmanager" else f"/crew/{crew.id}/"
        assert reference["name"] == "CREW_SECRET" and reference["valueFrom"].startswith(where)
        # the worker runs jobs with its key; a key goes as soon as its job runs
        ids = [crew.send(jobs.double, args=(i,)) for i in range(4)]
        results = {r.id: r for r in crew.results(timeout=120)}
        assert [results[i].value for i in ids] == [0, 2, 4, 6] and results[busy].value == "slept"
        wait_for(lambda: launch_keys() == [], timeout=30, what="the running jobs' keys to be deleted")
        assert len(crew_revisions(batch, crew.id, "INACTIVE")) == 2 and not crew_revisions(batch, crew.id, "ACTIVE")
        assert not [value for value in given_keys if value in shown_by_batch(batch)]  # INACTIVE ones too
    assert launch_keys() == [] and not crew_revisions(batch, crew.id, "ACTIVE")


def test_closing_a_crew_whose_jobs_wait_removes_their_keys(bucket, options, s3_endpoint, launch_keys):
    with BatchControlPlane(start_delay=300, secrets_endpoint=s3_endpoint) as queued:  # they never start
        queued.create_queue("crew-queue")
        queued.register_definition("crew-worker")
        with Crew(store=f"s3://{bucket}/crews/queued", worker_classes=["aws-batch"]) as crew:
            crew.recruit(workers=3, **{**options, "endpoint_url": queued.endpoint})
            crew.launch()
            assert len(launch_keys()) == 3 and len(crew_revisions(queued, crew.id, "ACTIVE")) == 3
        assert launch_keys() == [] and not crew_revisions(queued, crew.id, "ACTIVE")
        assert all(job.status == "FAILED" for job in queued.jobs.values())  # terminated before they read them


def test_a_key_deleted_before_its_job_starts_is_a_clear_launch_failure(
    bucket, options, s3_endpoint, monkeypatch, launch_keys
):
    """ECS cannot read the key as the container starts: the job FAILS with Batch's reason, the
    crew counts a failed launch, and the worker's exit cause says why."""
    import boto3

    secrets = boto3.client("secretsmanager", endpoint_url=s3_endpoint)
    real = BatchWorker.start

    def start_then_lose_the_key(self, launch):
        real(self, launch)
        for arn in self.keys.held.ids:  # someone deletes it while the job waits in the queue
            secrets.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)

    monkeypatch.setattr(BatchWorker, "start", start_then_lose_the_key)
    with BatchControlPlane(start_delay=0.5, secrets_endpoint=s3_endpoint) as plane:
        plane.create_queue("crew-queue")
        plane.register_definition("crew-worker")
        with Crew(store=f"s3://{bucket}/crews/lost", worker_classes=["aws-batch"], max_tries=1) as crew:
            [worker] = crew.recruit(workers=1, **{**options, "endpoint_url": plane.endpoint})
            job = crew.send(jobs.double, args=(1,))
            result = None
            while result is None:
                try:
                    result = crew.receive(timeout=120)
                except WorkerLaunchError:
                    continue  # a failed launch may be reported once before the job's result
            assert (result.id, result.status) == (job, "error") and isinstance(result.error, WorkerLaunchError)
            [failed] = plane.jobs.values()
            assert failed.status == "FAILED" and failed.started is None  # it never ran
            reason = "ResourceInitializationError: unable to pull secrets or registry auth"
            assert failed.status_reason.startswith(reason) and "ResourceNotFoundException" in failed.status_reason
            assert reason in worker.backend.exit_cause()
            wait_for(lambda: not crew_revisions(plane, crew.id, "ACTIVE"), timeout=30, what="the revision to go")
        assert launch_keys() == []


def test_a_job_definition_without_an_execution_role_is_refused_unless_one_is_given(crew, options, batch, launch_keys):
    batch.register_definition("no-role", execution_role=None)
    [refused] = crew.recruit(workers=1, **{**options, "job_definition": "no-role"})
    with pytest.raises(WorkerLaunchError, match="'no-role' has no executionRoleArn"):
        refused.launch()
    assert batch.jobs == {} and launch_keys() == [] and not crew_revisions(batch, crew.id)
    role = batch.role_arn("crew-batch-execution")
    [worker] = crew.recruit(workers=1, **{**options, "job_definition": "no-role", "execution_role": role})
    assert crew.send(jobs.double, args=(5,)) and crew.receive(timeout=120).value == 10
    assert batch.jobs[worker.backend.job_id].definition["containerProperties"]["executionRoleArn"] == role


def test_a_job_batch_may_start_again_keeps_its_key_until_it_ends(crew, options, batch, launch_keys, tmp_path):
    """With retry_attempts > 1 Batch may run another attempt, which reads the key again as it starts."""
    [worker] = crew.recruit(workers=1, retry_attempts=2, **options)
    started = tmp_path / "started"
    crew.send(jobs.touch_then_sleep, args=(str(started), 1, "done"))
    wait_for(started.exists, timeout=120, what="the job to run")
    assert BatchWorker.running([worker.backend]) == {worker.name: True}  # seen RUNNING: kept all the same
    assert len(launch_keys()) == 1
    assert crew.receive(timeout=120).value == "done"
    crew.stop()
    wait_for(lambda: not worker.up(), timeout=60, what="the worker to leave")
    wait_for(lambda: launch_keys() == [], timeout=30, what="the ended job's key to be deleted")


def test_a_derived_definition_keeps_the_users_own_secrets_and_settings():
    source = {
        "jobDefinitionArn": "arn:aws:batch:us-east-1:123456789012:job-definition/app:7",
        "containerProperties": {"image": "app:7", "executionRoleArn": "arn:aws:iam::123456789012:role/x",
                                "secrets": [{"name": "DB_PASSWORD", "valueFrom": "arn:db"},
                                            {"name": "CREW_SECRET", "valueFrom": "stale"}]},
        "retryStrategy": {"attempts": 1}, "timeout": {"attemptDurationSeconds": 600}, "tags": {"team": "a"},
    }  # fmt: skip
    request = derived_definition(source, [{"name": "CREW_SECRET", "valueFrom": "arn:key"}], "c1", {"crew:crew": "c1"})
    assert request["jobDefinitionName"] == "crew-c1" and request["type"] == "container"
    assert request["containerProperties"]["secrets"] == [
        {"name": "DB_PASSWORD", "valueFrom": "arn:db"},
        {"name": "CREW_SECRET", "valueFrom": "arn:key"},
    ]
    assert request["containerProperties"]["image"] == "app:7" and request["timeout"] == source["timeout"]
    assert request["tags"] == {"crew:crew": "c1", "crew:source": source["jobDefinitionArn"]}
    assert source["containerProperties"]["secrets"][1]["valueFrom"] == "stale"  # the source is left as it was
