"""A launch's secrets on Cloud Run: through Secret Manager, never shown by get or list, never left behind.

The control plane of crew_gcp.testing serves Cloud Run and Secret Manager on one endpoint; every
worker is a real process that gets its key from a secret reference resolved as its task starts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request

import pytest
from crew_gcp import CloudRunWorker, GCSStore
from crew_gcp.clients import run_clients, secret_client
from crew_gcp.run_secrets import LABEL_KEY, LaunchSecrets, label_value
from crew_gcp.testing import CloudRunControlPlane

from crew_core import Crew, WorkerLaunchError
from crew_core.plugin import LABEL_ENV, Launch, crew_label
from crew_core.testing import jobs, wait_for

JOB = "projects/crew-test/locations/us-central1/jobs/crew-secrets"


@pytest.fixture
def plane():
    with CloudRunControlPlane(stop_timeout=1.0) as plane:
        plane.create_job(JOB, command=[sys.executable], max_retries=0)
        yield plane
        assert plane.secret_manager.names() == [], "the test left secrets in Secret Manager"


@pytest.fixture
def options(plane):
    return {"job": JOB, "api_endpoint": plane.endpoint, "secret_manager_endpoint": plane.endpoint}


@pytest.fixture
def keys(monkeypatch):
    """Every value of ``launch.secrets`` the crew hands a Cloud Run worker to start, as it hands it."""
    seen: list[str] = []
    start = CloudRunWorker.start

    def recording_start(self, launch):
        seen.extend(launch.secrets.values())
        return start(self, launch)

    monkeypatch.setattr(CloudRunWorker, "start", recording_start)
    return seen


def shown(plane: CloudRunControlPlane, path: str) -> str:
    """What anyone allowed to get or list sees at ``path``: the API's raw JSON answer."""
    with urllib.request.urlopen(plane.endpoint + path, timeout=30) as answer:
        return answer.read().decode()


def test_no_get_or_list_shows_a_launch_secret_and_the_workers_still_run_jobs(bucket, options, plane, keys):
    with Crew(store=f"gs://{bucket}/crews/hidden", worker_classes=["cloud-run"]) as crew:
        workers = crew.recruit(workers=2, **options)
        crew.launch()
        crew.send(jobs.double, args=(21,))
        assert crew.receive(timeout=120).value == 42  # the worker's key, read from Secret Manager, signs its answers
        assert len(keys) == 2 and all(re.fullmatch(r"[0-9a-f]{64}", key) for key in keys)
        executions = [w.backend.execution for w in workers]
        pages = [shown(plane, f"/v2/{JOB}"), shown(plane, f"/v2/{JOB}/executions"),
                 shown(plane, "/v1/projects/crew-test/secrets")]  # fmt: skip
        pages += [shown(plane, f"/v2/{name}") for name in executions]
        pages += [shown(plane, f"/v2/{name}") for name in plane.operations]  # RunJob's long-running operations
        _, executions_client = run_clients(plane.endpoint)
        pages += [str(execution) for execution in executions_client.list_executions(parent=JOB)]
        assert all(key not in page for key in keys for page in pages)
        [variable] = [v for v in json.loads(pages[3])["template"]["containers"][0]["env"] if v["name"] == "CREW_SECRET"]
        reference = variable["valueSource"]["secretKeyRef"]
        assert "value" not in variable and reference["version"] == "1"
        assert reference["secret"].startswith("projects/crew-test/secrets/crew-")
        # Seen running, an execution has read its secret: the crew deletes it while the worker works on
        wait_for(lambda: plane.secret_manager.names() == [], timeout=60, what="the secrets to be deleted")
        assert all(w.up() for w in workers)
        crew.send(jobs.double, args=(4,))
        assert crew.receive(timeout=120).value == 8


def test_close_leaves_no_secret_in_secret_manager(bucket, options, plane, keys, monkeypatch):
    monkeypatch.setattr(CloudRunWorker, "status_interval", 3600)  # never seen running: close() must delete them
    crew = Crew(store=f"gs://{bucket}/crews/closing", worker_classes=["cloud-run"])
    try:
        crew.recruit(workers=3, **options)
        crew.launch()
        crew.send(jobs.double, args=(1,))
        assert crew.receive(timeout=120).value == 2
        label = label_value(crew_label(crew.store.describe(), crew.id))
        assert len(plane.secret_manager.names(**{LABEL_KEY: label})) == 3
    finally:
        crew.close()
    assert plane.secret_manager.names() == [] and len(keys) == 3


def test_a_deleted_secret_fails_its_execution_with_a_clear_cause(options, plane):
    label = crew_label("gs://somewhere/crews/x", "c1")
    launch = Launch(("--crew", "c1", "--name", "cloud-run-1", "--incarnation", "1"), {LABEL_ENV: label}, "c1",
                    "cloud-run-1", 1, label, secrets={"CREW_SECRET": "ab" * 32})  # fmt: skip
    worker = CloudRunWorker("cloud-run-1", **options)
    plane.start_delay = 2.0  # the execution waits for capacity: meanwhile someone deletes its secret
    worker.start(launch)
    [secret] = plane.secret_manager.names()
    secret_client(plane.endpoint).delete_secret(name=secret)
    wait_for(lambda: not CloudRunWorker.running([worker])[worker.name], timeout=60, what="the execution to fail")
    cause = worker.exit_cause()
    assert cause is not None and f"Secret {secret}/versions/1 was not found" in cause and "FAILED" in cause, cause
    assert plane.executions[worker.execution].process is None  # its container never ran


def test_a_crew_relaunches_a_worker_whose_secret_was_gone(bucket, options, plane, monkeypatch):
    plane.start_delay = 1.0
    start = CloudRunWorker.start
    first: list[str] = []

    def start_then_lose_the_secret(self, launch):
        start(self, launch)
        if not first:  # the first launch's secret is gone before its task starts (deleted by hand, say)
            first.append(self.execution)
            for name in plane.secret_manager.names():
                secret_client(plane.endpoint).delete_secret(name=name)

    monkeypatch.setattr(CloudRunWorker, "start", start_then_lose_the_secret)
    with Crew(store=f"gs://{bucket}/crews/lost", worker_classes=["cloud-run"]) as crew:
        crew.recruit(workers=1, **options)
        crew.send(jobs.double, args=(5,))
        result = crew.receive(timeout=120)
        assert (result.value, result.tries) == (10, 1)  # a launch that never started costs no try
        message = plane.executions[first[0]].to_json()["conditions"][0]["message"]
        assert "secret_key_ref" in message and "was not found" in message


def test_a_failed_run_leaves_no_secret(options, plane):
    label = crew_label("gs://somewhere/crews/x", "c1")
    launch = Launch(("--crew", "c1"), {LABEL_ENV: label}, "c1", "cloud-run-1", 1, label, secrets={"CREW_SECRET": "cd"})
    worker = CloudRunWorker("cloud-run-1", **{**options, "job": JOB.replace("crew-secrets", "gone")})
    with pytest.raises(WorkerLaunchError, match="does not exist"):
        worker.start(launch)  # RunJob refused, after the secret was made
    assert plane.secret_manager.names() == [] and plane.executions == {}


def test_secret_manager_out_of_reach_fails_the_launch_before_any_execution(bucket, options, plane):
    with Crew(store=f"gs://{bucket}/crews/unreachable", worker_classes=["cloud-run"]) as crew:
        crew.recruit(workers=1, **{**options, "secret_manager_endpoint": "http://127.0.0.1:9"})  # nothing there
        with pytest.raises(WorkerLaunchError, match="in Secret Manager"):
            crew.launch()
    assert plane.executions == {}


def test_secret_ttl_below_secret_managers_least_is_refused(options):
    with pytest.raises(ValueError, match="at least 60 seconds"):
        CloudRunWorker("cloud-run-1", **options, secret_ttl=30)


@pytest.mark.parametrize("crew_id", ["c1", "Mixed.Case@odd", "x" * 80, "été-42", ""])
def test_the_label_form_is_a_valid_label_value_and_tells_crews_apart(crew_id):
    value = label_value(crew_label("gs://b/p", crew_id))
    assert re.fullmatch(r"[a-z0-9_-]{1,63}", value)
    assert value != label_value(crew_label("gs://b/other", crew_id))


def test_the_control_plane_answers_as_secret_manager_does(plane):
    from google.api_core import exceptions

    client = secret_client(plane.endpoint)
    parent = "projects/crew-test"
    replication = {"automatic": {}}
    secret = client.create_secret(parent=parent, secret_id="s1", secret={"replication": replication,
                                                                          "labels": {"team": "a"}})  # fmt: skip
    with pytest.raises(exceptions.Conflict):  # 409 ALREADY_EXISTS
        client.create_secret(parent=parent, secret_id="s1", secret={"replication": replication})
    with pytest.raises(exceptions.BadRequest):
        client.create_secret(parent=parent, secret_id="s2", secret={"replication": replication, "ttl": "30s"})
    with pytest.raises(exceptions.BadRequest):
        client.create_secret(parent=parent, secret_id="s2", secret={})  # replication is required
    with pytest.raises(exceptions.BadRequest):
        client.add_secret_version(parent=secret.name, payload={"data": b"x", "data_crc32c": 1})
    version = client.add_secret_version(parent=secret.name, payload={"data": b"value"})
    assert client.access_secret_version(name=f"{secret.name}/versions/latest").payload.data == b"value"
    assert [s.name for s in client.list_secrets(request={"parent": parent, "filter": "labels.team=a"})] == [secret.name]
    assert list(client.list_secrets(request={"parent": parent, "filter": "labels.team=b"})) == []
    with pytest.raises(exceptions.BadRequest):
        list(client.list_secrets(request={"parent": parent, "filter": "create_time>2020"}))
    client.delete_secret(name=secret.name)
    with pytest.raises(exceptions.NotFound):
        client.access_secret_version(name=version.name)
    with pytest.raises(exceptions.NotFound):
        client.delete_secret(name=secret.name)


# A controller that never looks at its executions' states (their secrets stay), then is killed.
_DYING_CONTROLLER = """
import json, sys
from crew_core import Crew
from crew_gcp import CloudRunWorker
CloudRunWorker.status_interval = 3600
store, options = sys.argv[1], json.loads(sys.argv[2])
crew = Crew(store=store, worker_classes=["cloud-run"], lease_timeout=600)
crew.recruit(workers=2, **options)
crew.launch()
print(crew.id, flush=True)
import time
time.sleep(3600)
"""


def test_crew_stop_removes_the_secrets_a_killed_controller_left(bucket, options, plane, monkeypatch, capsys):
    """One worker still runs, one has ended: crew stop ends the first and deletes both secrets,
    and leaves alone a secret of the same crew id made from another store."""
    from crew_core.cli import main

    store = f"gs://{bucket}/crews/stop"
    controller = subprocess.Popen([sys.executable, "-c", _DYING_CONTROLLER, store, json.dumps(options)],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        crew_id = controller.stdout.readline().strip()
        wait_for(lambda: len(plane.executions) == 2 and all(e.state == "RUNNING" for e in plane.executions.values()),
                 timeout=60, what="both workers to run")  # fmt: skip
    finally:
        controller.kill()
        controller.wait()
    label = crew_label(GCSStore.from_url(store).describe(), crew_id)
    assert len(plane.secret_manager.names(**{LABEL_KEY: label_value(label)})) == 2
    ended, running = sorted(plane.executions)
    run_clients(plane.endpoint)[1].cancel_execution(name=ended)
    plane.wait_state(ended, ("CANCELLED",))
    other = crew_label("gs://another/store", crew_id)
    impostor = LaunchSecrets("impostor", 3600, plane.endpoint)
    [kept] = impostor.create(Launch((), {}, crew_id, "cloud-run-1", 1, other, secrets={"CREW_SECRET": "00" * 32}), JOB)
    monkeypatch.setenv("CLOUDSDK_API_ENDPOINT_OVERRIDES_RUN", plane.endpoint)  # where crew stop's user's APIs are
    monkeypatch.setenv("CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER", plane.endpoint)
    try:
        assert main(["ps", "--store", store, "--backends", "--json"]) == 0
        [seen] = json.loads(capsys.readouterr().out)
        assert [job["id"] for job in seen["backend_jobs"]] == [running]
        assert main(["stop", crew_id, "--store", store]) == 0
        assert "ended 1 job(s) on their backends" in capsys.readouterr().out
        assert plane.wait_state(running, ("CANCELLED",)) == "CANCELLED"
        assert plane.secret_manager.names() == [kept.secret]
    finally:
        impostor.release()
