"""Cloud Run workers end to end: GCS on fake-gcs-server, Cloud Run on crew_gcp.testing's control plane."""

from __future__ import annotations

import re
import sys
import time

import pytest
from crew_gcp import CloudRunWorker
from crew_gcp.run_secrets import DEFAULT_TTL
from crew_gcp.testing import CloudRunControlPlane

from crew_core import Crew, WorkerLaunchError
from crew_core.testing import WorkerContract, jobs, wait_for

JOB = "projects/crew-test/locations/us-central1/jobs/crew-worker"


@pytest.fixture
def cloud_run(request):
    with CloudRunControlPlane(stop_timeout=1.0) as plane:
        plane.create_job(JOB, command=[sys.executable], max_retries=0)  # the image's python is this machine's
        yield plane
        left = plane.secret_manager.names()  # checked once the worker suite has ended what the test started
        if request.node.name == "test_workers_leave_by_themselves_when_their_controller_dies":
            # A killed controller and no crew stop after it: Secret Manager deletes the secret at its expiration
            assert all(plane.secret_manager.expires(name) <= time.time() + DEFAULT_TTL for name in left)
        else:
            assert left == [], "the test left launch secrets in Secret Manager"


@pytest.fixture
def options(cloud_run):
    return {"job": JOB, "api_endpoint": cloud_run.endpoint, "secret_manager_endpoint": cloud_run.endpoint}


@pytest.fixture
def crew(bucket, options):
    with Crew(store=f"gs://{bucket}/crews/run", worker_classes=["cloud-run"]) as crew:
        yield crew


class TestCloudRunWorker(WorkerContract):
    @pytest.fixture
    def worker_class(self):
        return "cloud-run"

    @pytest.fixture
    def surviving_options(self, options, monkeypatch, cloud_run):
        # find() takes Cloud Run's endpoint from the environment (gcloud's variable), never the store
        monkeypatch.setenv("CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN", cloud_run.endpoint)
        monkeypatch.setenv("CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER", cloud_run.endpoint)
        return options

    @pytest.fixture
    def worker_options(self, options):
        return options

    @pytest.fixture
    def refused_options(self, options):
        return {**options, "job": "projects/crew-test/locations/us-central1/jobs/nope"}

    @pytest.fixture
    def crew_store(self, bucket):
        return f"gs://{bucket}/crews/contract"

    @pytest.fixture
    def unreachable_worker(self, options):
        worker = CloudRunWorker("w-1", **{**options, "api_endpoint": "http://127.0.0.1:9"})  # nothing listens there
        worker.execution = f"{worker.job}/executions/started-before"
        return worker


def test_the_readme_example_runs_jobs_with_values_errors_and_warnings(crew, options, cloud_run):
    crew.recruit(workers=2, tags={"gcp"}, idle_timeout=300, env={"MODE": "test"}, execution_timeout=600, **options)
    ok = crew.send(jobs.warn_and_return, args=("careful", 7), tags="gcp")
    bad = crew.send(jobs.fail, args=("in the container",), tags="gcp")
    env = crew.send(jobs.getenv, args=("MODE",), tags="gcp")
    results = {r.id: r for r in crew.results(timeout=120)}
    assert results[ok].value == 7 and results[ok].warnings == ["careful"]
    assert isinstance(results[bad].error, ValueError) and "in the container" in results[bad].traceback
    assert results[env].value == "test"
    execution = next(iter(cloud_run.executions.values()))
    override = execution.overrides["containerOverrides"][0]
    assert override["args"][:3] == ["-m", "crew_core", "worker"] and execution.overrides["timeout"] == "600s"
    assert execution.overrides["taskCount"] == 1


def test_an_execution_killed_mid_job_is_relaunched_and_the_job_reruns(crew, options, cloud_run, tmp_path):
    [worker] = crew.recruit(workers=1, **options)
    started = tmp_path / "started"
    job = crew.send(jobs.touch_then_sleep, args=(str(started), 1.5, "second attempt"))
    wait_for(started.exists, timeout=120, what="the job to start")
    first = worker.backend.execution
    cloud_run.kill(first)
    result = crew.receive(timeout=120)
    assert (result.id, result.value, result.tries) == (job, "second attempt", 2)
    assert cloud_run.executions[first].state == "FAILED" and worker.backend.execution != first


def test_idle_timeout_ends_the_execution_succeeded(crew, options, cloud_run):
    [worker] = crew.recruit(workers=1, idle_timeout=0.5, **options)
    crew.send(jobs.double, args=(3,))
    assert crew.receive(timeout=120).value == 6
    wait_for(lambda: not worker.up(), timeout=60, what="the idle worker to leave")
    assert cloud_run.wait_state(worker.backend.execution, ("SUCCEEDED", "FAILED")) == "SUCCEEDED"


def test_status_of_many_workers_is_one_list_call_per_job(crew, options, cloud_run, monkeypatch):
    monkeypatch.setattr(CloudRunWorker, "status_interval", 3600)  # no status check of the crew's own meanwhile
    workers = crew.recruit(workers=5, **options)
    crew.launch()
    for worker in workers:
        cloud_run.wait_state(worker.backend.execution, ("RUNNING",))
    before = len(cloud_run.requests)
    assert all(CloudRunWorker.running([w.backend for w in workers]).values())
    calls = cloud_run.requests[before:]  # and the first sight of them running: their secrets go, once
    assert calls[0] == ("GET", f"/v2/{JOB}/executions") and len(calls) == 6
    assert {method for method, _ in calls[1:]} == {"DELETE"} and cloud_run.secret_manager.names() == []
    before = len(cloud_run.requests)
    assert all(CloudRunWorker.running([w.backend for w in workers]).values())
    assert cloud_run.requests[before:] == [("GET", f"/v2/{JOB}/executions")]


def test_status_pages_through_executions_and_stops_once_all_are_seen(crew, options, cloud_run, monkeypatch):
    monkeypatch.setattr(CloudRunWorker, "status_interval", 3600)  # only exit notes prompt the crew's own checks
    cloud_run.list_page_size = 2
    older = crew.recruit(workers=3, idle_timeout=0.2, tags={"old"}, **options)
    crew.launch()
    wait_for(lambda: not any(w.up() for w in older), what="the first workers to leave")
    workers = crew.recruit(workers=3, tags={"new"}, **options)
    crew.launch(tags="new")
    before = len(cloud_run.requests)
    assert all(CloudRunWorker.running([w.backend for w in workers]).values())  # newest first: two pages hold all three
    run_calls = [call for call in cloud_run.requests[before:] if call[1].startswith("/v2/")]  # not Secret Manager's
    assert run_calls == [("GET", f"/v2/{JOB}/executions")] * 2
    assert not any(CloudRunWorker.running([w.backend for w in older]).values())  # found on later pages


def test_an_unanswered_stop_is_followed_by_cancel_execution(bucket, options, cloud_run, tmp_path):
    with Crew(store=f"gs://{bucket}/crews/stop", worker_classes=["cloud-run"], stop_grace=0.5) as crew:
        [worker] = crew.recruit(workers=1, **options)
        started = tmp_path / "started"
        crew.send(jobs.touch_then_sleep, args=(str(started), 60))
        wait_for(started.exists, what="the job to start")
        first = worker.backend.execution
        crew.stop(idle_only=False)
        wait_for(lambda: crew.receivable() or cloud_run.executions[first].state == "CANCELLED", what="cancelled")
    assert ("POST", f"/v2/{first}:cancel") in cloud_run.requests


def test_crew_creates_the_job_from_an_image(crew, cloud_run):
    options = {"image": "example/crew:1", "cpu": "2", "memory": "4Gi", "project": "crew-test",
               "region": "us-central1", "python": sys.executable, "api_endpoint": cloud_run.endpoint,
               "secret_manager_endpoint": cloud_run.endpoint}  # fmt: skip
    [worker] = crew.recruit(workers=1, **options)
    crew.send(jobs.double, args=(21,))
    assert crew.receive(timeout=120).value == 42
    job = cloud_run.jobs[worker.backend.job]
    container = job["template"]["template"]["containers"][0]
    assert container["image"] == "example/crew:1" and container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    crew.recruit(workers=1, **{**options, "memory": "8Gi"})  # another job: settings differ
    crew.launch()
    assert len(cloud_run.jobs) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"job": "projects/crew-test/locations/us-central1/jobs/nope"}, "job 'nope' does not exist in project"),
        ({"job": "projects/other-project/locations/us-central1/jobs/crew-worker"}, "project 'other-project'"),
        ({"job": "projects/crew-test/locations/europe-west1/jobs/crew-worker"}, "region 'europe-west1'"),
    ],
)
def test_bad_settings_fail_at_launch_and_create_nothing(crew, options, cloud_run, change, message):
    crew.recruit(workers=2, **{**options, **change})
    with pytest.raises(WorkerLaunchError, match=message):
        crew.launch()
    job = crew.send(jobs.double, args=(1,))  # accepted; its launches fail until it gives up
    result = crew.receive(timeout=60)
    assert (result.id, result.status) == (job, "error") and isinstance(result.error, WorkerLaunchError)
    assert re.search(message, str(result.error))
    assert cloud_run.executions == {} and crew.receive() is None


def test_missing_options_are_a_clear_error(crew):
    with pytest.raises(TypeError, match=r"need job= .* or image="):
        crew.recruit(workers=1)


def test_missing_credentials_fail_at_launch(crew, monkeypatch, tmp_path):
    from crew_gcp import clients

    monkeypatch.setattr(clients, "_clients", {})
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    crew.recruit(workers=1, job=JOB)  # the real API endpoint, with no credentials anywhere
    with pytest.raises(WorkerLaunchError, match="no Google credentials were found"):
        crew.launch()


def test_a_named_job_is_updated_when_the_image_changes(crew, cloud_run):
    options = {"job": "crew-custom", "project": "crew-test", "region": "us-central1", "python": sys.executable,
               "api_endpoint": cloud_run.endpoint,
               "secret_manager_endpoint": cloud_run.endpoint}  # fmt: skip
    [first] = crew.recruit(workers=1, image="example/crew:1", **options)
    first.backend.ensure_job()
    assert cloud_run.jobs[first.backend.job]["generation"] == "1"
    account = "crew@crew-test.iam.gserviceaccount.com"
    cloud_run.jobs[first.backend.job]["template"]["template"]["serviceAccount"] = account
    first.backend.ensure_job()  # nothing differs: no update
    assert cloud_run.jobs[first.backend.job]["generation"] == "1"
    [second] = crew.recruit(workers=1, image="example/crew:2", cpu="1", **options)
    second.backend.ensure_job()
    job = cloud_run.jobs[second.backend.job]
    assert job["generation"] == "2" and job["template"]["template"]["containers"][0]["image"] == "example/crew:2"
    assert job["template"]["template"]["serviceAccount"] == "crew@crew-test.iam.gserviceaccount.com"  # kept
    job["template"]["template"]["containers"][0]["resources"]["limits"]["cpu"] = "1000m"  # as Cloud Run reports
    second.backend.ensure_job()
    assert cloud_run.jobs[second.backend.job]["generation"] == "2"  # "1" and "1000m" are the same


def test_an_execution_that_fails_to_start_is_retried(crew, options, cloud_run):
    cloud_run.fail_next(1)  # e.g. the image could not be pulled, once
    crew.recruit(workers=1, **options)
    crew.send(jobs.double, args=(5,))
    result = crew.receive(timeout=120)
    assert (result.value, result.tries) == (10, 1)  # it ran once: an execution that never started costs no try
    assert sorted(e.state for e in cloud_run.executions.values())[0] == "FAILED"


def test_run_jobs_operation_parses_strictly_until_done(cloud_run):
    """The client parses operations strictly: the control plane's must be exactly right."""
    from crew_gcp.cloud_run_worker import run_clients

    cloud_run.create_job("projects/crew-test/locations/us-central1/jobs/short", command=["true"])
    jobs_client, executions_client = run_clients(cloud_run.endpoint)
    operation = jobs_client.run_job(name="projects/crew-test/locations/us-central1/jobs/short")
    execution = operation.result(timeout=60)  # polls GetOperation until the execution ends
    assert execution.succeeded_count == 1 and execution.completion_time
    assert executions_client.get_execution(name=execution.name).succeeded_count == 1


def test_a_job_that_retries_failed_tasks_on_its_own_is_refused(bucket, cloud_run):
    """Cloud Run retries a failed task 3 times by default: a dead worker would start again behind crew's back."""
    name = "projects/crew-test/locations/us-central1/jobs/retrying"
    cloud_run.create_job(name, command=[sys.executable])  # maxRetries left at Cloud Run's default
    with Crew(store=f"gs://{bucket}/crews/retrying", worker_classes=["cloud-run"]) as crew:
        crew.recruit(workers=1, job=name, api_endpoint=cloud_run.endpoint)
        with pytest.raises(WorkerLaunchError, match=r"starts a failed task again 3 time\(s\).*--max-retries=0"):
            crew.launch()
    assert cloud_run.executions == {}


def test_the_control_plane_retries_failed_tasks_as_cloud_run_does(cloud_run):
    from crew_gcp.cloud_run_worker import run_clients

    name = "projects/crew-test/locations/us-central1/jobs/flaky"
    cloud_run.create_job(name, command=["false"], max_retries=2)
    jobs_client, _ = run_clients(cloud_run.endpoint)
    execution = jobs_client.run_job(name=name).result(timeout=60)
    assert execution.failed_count == 1 and execution.retried_count == 2  # three runs of the task in all


def test_crew_sets_max_retries_to_zero_on_the_jobs_it_manages(crew, cloud_run):
    options = {"image": "example/crew:1", "project": "crew-test", "region": "us-central1",
               "python": sys.executable, "api_endpoint": cloud_run.endpoint,
               "secret_manager_endpoint": cloud_run.endpoint}  # fmt: skip
    [worker] = crew.recruit(workers=1, **options)
    worker.backend.ensure_job()  # created by crew, with maxRetries 0
    assert cloud_run.jobs[worker.backend.job]["template"]["template"]["maxRetries"] == 0
    cloud_run.jobs[worker.backend.job]["template"]["template"]["maxRetries"] = 3  # changed by hand since
    worker.backend.ensure_job()
    assert cloud_run.jobs[worker.backend.job]["template"]["template"]["maxRetries"] == 0
