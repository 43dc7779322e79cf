"""AWS Batch workers end to end: S3 on moto, Batch on crew_aws.testing's control plane, real processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from crew_aws import BatchWorker, S3Store
from crew_aws.batch_worker import batch_client
from crew_aws.testing import BatchControlPlane

from crew_core import Crew, WorkerLaunchError
from crew_core.plugin import crew_label
from crew_core.testing import WorkerContract, jobs, wait_for


class TestBatchWorker(WorkerContract):
    @pytest.fixture
    def worker_class(self):
        return "aws-batch"

    @pytest.fixture
    def worker_options(self, options):
        return options

    @pytest.fixture
    def refused_options(self, options):
        return {**options, "job_queue": "no-such-queue"}

    @pytest.fixture
    def crew_store(self, bucket):
        return f"s3://{bucket}/crews/contract"

    @pytest.fixture
    def surviving_options(self, options, monkeypatch, batch):
        # find() takes Batch's endpoint from the environment, as boto3 does, never from the store
        monkeypatch.setenv("AWS_ENDPOINT_URL_BATCH", batch.endpoint)
        return options

    @pytest.fixture
    def unreachable_worker(self, options):
        worker = BatchWorker("w-1", **{**options, "endpoint_url": "http://127.0.0.1:9"})  # nothing listens there
        worker.job_id = "a-job-submitted-before"
        return worker


def test_the_readme_example_runs_jobs_with_values_errors_and_warnings(crew, options, batch):
    crew.recruit(workers=2, vcpus=2, memory=4096, tags={"big"}, idle_timeout=300, **options)
    ok = crew.send(jobs.warn_and_return, args=("careful", 7), tags="big")
    bad = crew.send(jobs.fail, args=("in the container",), tags="big")
    results = {r.id: r for r in crew.results(timeout=120)}
    assert results[ok].value == 7 and results[ok].warnings == ["careful"]
    assert isinstance(results[bad].error, ValueError) and "in the container" in results[bad].traceback
    _, request = next(r for r in batch.requests if r[0] == "submitjob")
    assert request["containerOverrides"]["resourceRequirements"] == [
        {"type": "VCPU", "value": "2"},
        {"type": "MEMORY", "value": "4096"},
    ]
    assert request["retryStrategy"] == {"attempts": 1}  # crew owns retries
    assert request["tags"]["crew:tag:big"] == "true"
    command = request["containerOverrides"]["command"]
    assert command[1:4] == ["-m", "crew_core", "worker"] and "--store" in command
    assert len(str(request)) < 2000  # the command, never a job's payload


def test_a_batch_job_killed_mid_job_is_relaunched_and_the_job_reruns(crew, options, batch, tmp_path):
    [worker] = crew.recruit(workers=1, **options)
    started = tmp_path / "started"
    job = crew.send(jobs.touch_then_sleep, args=(str(started), 1.5, "second attempt"))
    wait_for(started.exists, timeout=120, what="the job to start")
    first = worker.backend.job_id
    batch.kill(first)  # a spot reclaim, mid-job
    result = crew.receive(timeout=120)
    assert (result.id, result.value, result.tries) == (job, "second attempt", 2)
    assert batch.jobs[first].status == "FAILED" and worker.backend.job_id != first


def test_idle_timeout_ends_the_batch_job_succeeded(crew, options, batch):
    [worker] = crew.recruit(workers=1, idle_timeout=0.5, **options)
    crew.send(jobs.double, args=(3,))
    assert crew.receive(timeout=120).value == 6
    wait_for(lambda: not worker.up(), timeout=60, what="the idle worker to leave")
    assert batch.wait_status(worker.backend.job_id, ("SUCCEEDED", "FAILED")) == "SUCCEEDED"


def test_shutdown_goes_through_the_store_and_terminate_is_the_fallback(bucket, options, batch, tmp_path):
    # The idle worker must see its stop, leave, and be reported ended by Batch within the grace: 0.5 s
    # was too short for a loaded CI machine (both were killed once); the busy one is killed either way.
    with Crew(store=f"s3://{bucket}/crews/stop", worker_classes=["aws-batch"], stop_grace=5.0) as crew:
        idle, busy = crew.recruit(workers=2, **options)
        crew.launch()
        started = tmp_path / "started"
        crew.send(jobs.touch_then_sleep, args=(str(started), 60))
        wait_for(started.exists, what="the job to start")
        batch.wait_status(idle.backend.job_id, ("RUNNING",))
        batch.wait_status(busy.backend.job_id, ("RUNNING",))
        first = {w.name: w.backend.job_id for w in (idle, busy)}
        crew.stop(idle_only=False)  # the busy worker's job goes back to the backlog, uncharged
        for job_id in first.values():  # the crew kills the one that does not answer when it polls
            wait_for(lambda job_id=job_id: crew.receivable() or batch.jobs[job_id].status in ("SUCCEEDED", "FAILED"))
    stopped = [batch.jobs[job_id] for job_id in first.values()]
    terminated = [j for j in stopped if j.terminate_reason]
    assert len(terminated) == 1 and terminated[0].status == "FAILED"  # the busy one did not answer
    assert "did not answer a stop request" in terminated[0].status_reason
    assert sorted(j.status for j in stopped) == ["FAILED", "SUCCEEDED"]  # the idle one left on request


def test_launching_many_workers_is_concurrent_and_status_is_batched(bucket, options, monkeypatch, launch_keys):
    monkeypatch.setattr(BatchWorker, "status_interval", 3600)  # no status check of the crew's own meanwhile
    with BatchControlPlane(start_delay=300) as queued:  # no capacity: jobs wait RUNNABLE, as on a busy queue
        queued.create_queue("crew-queue")
        queued.register_definition("crew-worker")
        with Crew(store=f"s3://{bucket}/crews/many", worker_classes=["aws-batch"]) as crew:
            workers = crew.recruit(workers=120, **{**options, "endpoint_url": queued.endpoint})
            crew.launch()
            assert len({w.backend.job_id for w in workers}) == 120
            assert all(w.backend.job_id in queued.jobs for w in workers)
            before = sum(1 for op, _ in queued.requests if op == "describejobs")
            assert all(BatchWorker.running([w.backend for w in workers]).values())
            calls = [body for op, body in queued.requests if op == "describejobs"][before:]
            assert [len(body["jobs"]) for body in calls] == [100, 20]
            assert sum(1 for op, _ in queued.requests if op == "describejobqueues") == 1  # once per queue
            assert sum(1 for op, _ in queued.requests if op == "describejobdefinitions") == 1  # and definition
            assert sum(1 for op, _ in queued.requests if op == "registerjobdefinition") == 120  # a key each
        # Closing terminates what never started: nothing is left queued, and no key
        wait_for(lambda: all(j.status == "FAILED" for j in queued.jobs.values()), what="all terminated")
        assert launch_keys() == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"job_queue": "no-such-queue"}, "job queue 'no-such-queue' does not exist in region us-east-1"),
        ({"job_definition": "no-such-def"}, "job definition 'no-such-def' does not exist"),
        ({"region": "eu-west-1"}, "job queue 'crew-queue' does not exist in region eu-west-1"),
        ({"environment": {"BIG": "x" * 9000}}, "over Batch's 8192"),
    ],
)
def test_bad_settings_fail_at_launch_and_create_nothing(crew, options, batch, change, message):
    crew.recruit(workers=3, **{**options, **change})
    with pytest.raises(WorkerLaunchError, match=message):
        crew.launch()
    job = crew.send(jobs.double, args=(1,))  # accepted; its launches fail until it gives up
    result = crew.receive(timeout=60)
    assert (result.id, result.status) == (job, "error") and isinstance(result.error, WorkerLaunchError)
    assert re.search(message, str(result.error))
    assert batch.jobs == {} and crew.receive() is None


def test_missing_credentials_fail_at_launch(crew, options, batch, monkeypatch, tmp_path):
    from crew_aws import batch_worker

    monkeypatch.setattr(batch_worker, "_clients", {})
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    crew.recruit(workers=1, **options)
    with pytest.raises(WorkerLaunchError, match="no AWS credentials were found"):
        crew.launch()
    assert batch.jobs == {}


def test_a_failed_submission_in_a_group_terminates_the_rest(crew, options, batch, monkeypatch):
    workers = crew.recruit(workers=5, **options)
    real = BatchWorker.submit_request

    def refuse_third(self, launch):
        if self is workers[2].backend:
            return {**real(self, launch), "jobName": "bad name!"}
        return real(self, launch)

    monkeypatch.setattr(BatchWorker, "submit_request", refuse_third)
    with pytest.raises(WorkerLaunchError, match="Job name should be"):
        crew.launch()
    wait_for(lambda: all(j.status == "FAILED" for j in batch.jobs.values()), what="the others terminated")
    assert not any(w.up() for w in workers)


def test_request_shapes_are_accepted_by_motos_batch(s3_endpoint, launch_keys):
    """A second, independent implementation checks the requests crew sends."""
    import boto3
    import requests

    requests.post(f"{s3_endpoint}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10)
    region = "us-east-1"
    ec2 = boto3.client("ec2", endpoint_url=s3_endpoint, region_name=region)
    iam = boto3.client("iam", endpoint_url=s3_endpoint, region_name=region)
    client = boto3.client("batch", endpoint_url=s3_endpoint, region_name=region)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="crew", Description="crew", VpcId=vpc)["GroupId"]
    role = iam.create_role(RoleName="crew-batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    environment = client.create_compute_environment(
        computeEnvironmentName="crew-env",
        type="UNMANAGED",
        state="ENABLED",
        serviceRole=role,
    )["computeEnvironmentArn"]
    client.create_job_queue(
        jobQueueName="moto-queue", state="ENABLED", priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
    )  # fmt: skip
    execution = iam.create_role(RoleName="crew-execution", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    resources = [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}]
    client.register_job_definition(
        jobDefinitionName="moto-worker", type="container",
        containerProperties={"image": "crew:1", "command": ["true"], "executionRoleArn": execution,
                             "resourceRequirements": resources},
    )  # fmt: skip
    del subnet, group
    with Crew(store="local", worker_classes=["aws-batch"]) as crew:
        [worker] = crew.recruit(
            workers=1, job_queue="moto-queue", job_definition="moto-worker", vcpus=1, memory=1024,
            tags={"gpu"}, endpoint_url=s3_endpoint, region=region,
        )  # fmt: skip
        crew.launch()
        [job] = client.describe_jobs(jobs=[worker.backend.job_id])["jobs"]
        assert job["jobName"] == f"crew-{crew.id}-{worker.name}"
        assert (job["tags"]["crew:crew"], job["tags"]["crew:worker"], job["tags"]["crew:incarnation"]) == (
            crew.id, worker.name, "1")  # fmt: skip
        assert job["container"]["command"][1:4] == ["-m", "crew_core", "worker"]
        assert job["tags"]["crew:tag:gpu"] == "true"
        # the launch's key: a revision of crew-<id> naming a Secrets Manager secret, never a value
        [revision] = client.describe_job_definitions(jobDefinitions=[job["jobDefinition"]])["jobDefinitions"]
        assert revision["jobDefinitionName"] == f"crew-{crew.id}" and revision["tags"]["crew:source"].endswith(
            "job-definition/moto-worker:1")  # fmt: skip
        [secret] = revision["containerProperties"]["secrets"]
        assert secret["name"] == "CREW_SECRET" and secret["valueFrom"].startswith("arn:aws:secretsmanager:")
        assert crew._manager.secret.hex() not in json.dumps(revision, default=str)
        assert revision["containerProperties"]["executionRoleArn"] == execution
        worker.backend.kill()  # TerminateJob accepted; the secret deleted, the revision deregistered
        assert launch_keys() == []
        [revision] = client.describe_job_definitions(jobDefinitions=[job["jobDefinition"]])["jobDefinitions"]
        assert revision["status"] == "INACTIVE"


def test_job_definition_revisions_and_batch_minimums(crew, options, batch):
    batch.register_definition("crew-worker", image="example/crew-worker:2")  # revision 2, the latest
    [pinned] = crew.recruit(workers=1, **{**options, "job_definition": "crew-worker:1"})
    [latest] = crew.recruit(workers=1, **options)
    crew.launch()
    for worker, revision in ((pinned, 1), (latest, 2)):  # each launch's revision derives from the one named
        derived = batch.jobs[worker.backend.job_id].definition
        assert derived["jobDefinitionName"] == f"crew-{crew.id}"
        assert derived["tags"]["crew:source"].endswith(f"job-definition/crew-worker:{revision}")
        assert derived["containerProperties"]["image"] == f"example/crew-worker:{revision}"
    [missing] = crew.recruit(workers=1, **{**options, "job_definition": "crew-worker:9"})
    with pytest.raises(WorkerLaunchError, match="'crew-worker:9' does not exist"):
        missing.launch()
    [short] = crew.recruit(workers=1, job_timeout=30, **options)
    with pytest.raises(WorkerLaunchError, match="at least 60 s"):
        short.launch()


_DYING_CONTROLLER = """
import json, sys
from crew_core import Crew
store, options = sys.argv[1], json.loads(sys.argv[2])
crew = Crew(store=store, worker_classes=["aws-batch"], lease_timeout=600)
crew.recruit(workers=3, **options)
crew.launch()
print(crew.id, flush=True)
import time
time.sleep(3600)
"""


def test_crew_stop_ends_a_dead_controllers_queued_batch_jobs(
    bucket, options, monkeypatch, capsys, s3_endpoint, launch_keys
):
    """Queued jobs never read the lease: crew stop finds them on Batch by the crew's label and
    cancels them, and leaves alone a job of the same crew id launched from another store. The
    launch keys the killed controller left (its jobs never started) go with them."""
    from crew_core.cli import main

    with BatchControlPlane(start_delay=300, secrets_endpoint=s3_endpoint) as queued:  # no capacity: jobs wait
        queued.create_queue("crew-queue")
        queued.register_definition("crew-worker")
        options = {**options, "endpoint_url": queued.endpoint}
        store = f"s3://{bucket}/crews/stop"
        crew_id = _controller_killed_after_three_jobs(queued, store, options)
        client = batch_client(queued.region, queued.endpoint, None)
        impostor = client.submit_job(
            jobName=f"crew-{crew_id}-aws-batch-1", jobQueue="crew-queue", jobDefinition="crew-worker",
            tags={"crew:crew": crew_id, "crew:label": crew_label("s3://another/store", crew_id)},
        )["jobId"]  # fmt: skip
        # A controller looking for its own (adopted) launches goes through its worker's endpoint
        label = crew_label(S3Store.from_url(store).describe(), crew_id)
        place = {"region": queued.region, "job_queue": "crew-queue", "secrets_store": "secretsmanager"}
        mine = BatchWorker.find(label, place, via=BatchWorker("w", **options))
        assert sorted(job.worker for job in mine) == [f"aws-batch-{n}" for n in (1, 2, 3)]
        monkeypatch.setenv("AWS_ENDPOINT_URL_BATCH", queued.endpoint)  # where crew stop's user's Batch is
        assert main(["ps", "--store", store, "--backends", "--json"]) == 0
        [seen] = json.loads(capsys.readouterr().out)
        assert seen["places"] == [{"worker_class": "aws-batch", "place": place}]
        found = sorted((job["worker"], job["state"]) for job in seen["backend_jobs"])
        assert found == [(f"aws-batch-{n}", "RUNNABLE") for n in (1, 2, 3)]
        # Left behind, findable by name and label: a key and a revision for each queued launch
        left = [key for key in launch_keys() if f":secret:crew/{crew_id}/" in key]
        assert len(left) == 3 and len(crew_revisions(queued, crew_id, "ACTIVE")) == 3
        assert main(["stop", crew_id, "--store", store]) == 0
        assert "ended 3 job(s) on their backends" in capsys.readouterr().out
        ours = [job for job in queued.jobs.values() if job.id != impostor]
        assert all(job.status == "FAILED" and "crew stop" in job.status_reason for job in ours)
        assert queued.jobs[impostor].status == "RUNNABLE"
        assert S3Store.from_url(store).list("") == []
        assert launch_keys() == [] and crew_revisions(queued, crew_id, "ACTIVE") == []


def _controller_killed_after_three_jobs(plane: BatchControlPlane, store: str, options: dict) -> str:
    """Run ``_DYING_CONTROLLER`` until its three Batch jobs are submitted, kill it; its crew's id."""
    controller = subprocess.Popen([sys.executable, "-c", _DYING_CONTROLLER, store, json.dumps(options)],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        crew_id = controller.stdout.readline().strip()
        wait_for(lambda: len(plane.jobs) == 3, what="the three Batch jobs to be submitted")
    finally:
        controller.kill()
        controller.wait()
    return crew_id


def crew_revisions(plane: BatchControlPlane, crew_id: str, status: str) -> list[dict]:
    """The revisions of the crew's job definition (``crew-<id>``) in that status, through the API."""
    client = batch_client(plane.region, plane.endpoint, None)
    pages = client.get_paginator("describe_job_definitions").paginate(
        jobDefinitionName=f"crew-{crew_id}", status=status
    )
    return [d for page in pages for d in page["jobDefinitions"]]


def test_crew_stop_removes_the_keys_of_launches_that_ended_before_it(
    bucket, options, monkeypatch, capsys, s3_endpoint, launch_keys
):
    """The jobs of a killed controller ended on their own (here: terminated by hand) before
    crew stop: find() sees none, yet their keys and revisions go (Worker.forget)."""
    from crew_core.cli import main

    with BatchControlPlane(start_delay=300, secrets_endpoint=s3_endpoint) as queued:
        queued.create_queue("crew-queue")
        queued.register_definition("crew-worker")
        options = {**options, "endpoint_url": queued.endpoint}
        store = f"s3://{bucket}/crews/ended"
        crew_id = _controller_killed_after_three_jobs(queued, store, options)
        client = batch_client(queued.region, queued.endpoint, None)
        for job_id in list(queued.jobs):
            client.terminate_job(jobId=job_id, reason="ended before crew stop")
        assert len([key for key in launch_keys() if f":secret:crew/{crew_id}/" in key]) == 3
        monkeypatch.setenv("AWS_ENDPOINT_URL_BATCH", queued.endpoint)
        assert main(["stop", crew_id, "--store", store]) == 0, capsys.readouterr().err
        assert launch_keys() == [] and crew_revisions(queued, crew_id, "ACTIVE") == []
