"""crew-slurm against a real slurmctld + slurmd: the worker contract and Slurm's own failure modes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from crew_slurm import SlurmWorker

from crew_core import Crew, WorkerLaunchError
from crew_core.testing import WorkerContract, jobs, wait_for


class TestSlurmWorker(WorkerContract):
    @pytest.fixture
    def worker_class(self, slurm):
        return "slurm"

    @pytest.fixture
    def worker_options(self, tmp_path):
        return {"log_dir": str(tmp_path / "logs")}

    @pytest.fixture
    def refused_options(self, tmp_path):
        return {"log_dir": str(tmp_path / "logs"), "partition": "nonexistent"}

    @pytest.fixture
    def crew_store(self, tmp_path):
        return str(tmp_path / "store")  # a folder every node sees (one node here)

    @pytest.fixture
    def crash_cause(self):
        return "ended in state FAILED"  # squeue shows the state, not the exit code

    @pytest.fixture
    def unreachable_worker(self, slurm, tmp_path, monkeypatch):
        conf = tmp_path / "dead.conf"  # a controller nobody runs: squeue fails at once
        conf.write_text("ClusterName=dead\nSlurmctldHost=localhost\nSlurmctldPort=9\nAuthType=auth/none\n"
                        "CredType=cred/none\nMessageTimeout=1\nNodeName=localhost CPUs=1\n"
                        "PartitionName=debug Nodes=ALL Default=YES\n")  # fmt: skip
        monkeypatch.setenv("SLURM_CONF", str(conf))
        worker = SlurmWorker("w-1", log_dir=str(tmp_path / "logs"))
        worker.job_id = "123"
        return worker


@pytest.fixture
def crew(slurm, tmp_path):
    with Crew(store=str(tmp_path / "store"), worker_classes=["slurm", "subprocess"]) as crew:
        yield crew


def squeue(*args: str) -> str:
    return subprocess.run(["squeue", "--noheader", *args], capture_output=True, text=True, check=True).stdout


def job_state(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    return next((f.split("=", 1)[1] for f in out.split() if f.startswith("JobState=")), "")


def test_recruiting_many_workers_submits_one_job_array(crew, tmp_path):
    workers = crew.recruit(workers=3, log_dir=tmp_path / "logs", idle_timeout=30)
    crew.launch()
    bases = {w.backend.job_id.split("_")[0] for w in workers}
    assert len(bases) == 1 and sorted(w.backend.job_id.split("_")[1] for w in workers) == ["0", "1", "2"]
    ids = [crew.send(jobs.sleep_then, args=(0.5, i)) for i in range(3)]
    results = {r.id: r for r in crew.results(timeout=120)}
    assert sorted(r.value for r in results.values()) == [0, 1, 2] and set(results) == set(ids)
    assert {r.worker for r in results.values()} == {w.name for w in workers}  # each took one
    assert workers[0].backend.log_file().exists()


def test_a_tagged_crew_mixes_local_and_slurm_workers(crew, tmp_path):
    [local] = crew.recruit(workers=1, worker_class="subprocess", tags={"local"})
    [remote] = crew.recruit(workers=1, tags={"cluster"}, log_dir=tmp_path / "logs")
    on_cluster = crew.send(jobs.warn_and_return, args=("from the node", "cluster"), tags="cluster")
    here = crew.send(jobs.fail, args=("local failure",), tags="local")
    results = {r.id: r for r in crew.results(timeout=120)}
    assert results[on_cluster].worker == remote.name and results[on_cluster].value == "cluster"
    assert results[on_cluster].warnings == ["from the node"]
    assert results[here].worker == local.name and "local failure" in results[here].traceback
    assert remote.backend.job_id is not None and local.backend.pid is not None


def test_scancel_mid_job_is_detected_and_the_job_runs_again(crew, tmp_path):
    [worker] = crew.recruit(workers=1, log_dir=tmp_path / "logs")
    started = tmp_path / "started"
    job = crew.send(jobs.touch_then_sleep, args=(str(started), 2.0, "after scancel"))
    wait_for(started.exists, timeout=120, what="the job to run")
    first = worker.backend.job_id
    subprocess.run(["scancel", first], check=True)
    result = crew.receive(timeout=180)
    assert (result.id, result.value, result.tries) == (job, "after scancel", 2)
    assert worker.backend.job_id != first
    assert job_state(first) == "CANCELLED"


def test_idle_timeout_ends_the_job_completed(crew, tmp_path):
    [worker] = crew.recruit(workers=1, idle_timeout=0.5, log_dir=tmp_path / "logs")
    crew.send(jobs.double, args=(4,))
    assert crew.receive(timeout=120).value == 8
    wait_for(lambda: not worker.up(), timeout=60, what="the idle worker to leave")
    wait_for(lambda: job_state(worker.backend.job_id) == "COMPLETED", timeout=60, what="COMPLETED")


def test_a_bad_partition_is_refused_at_launch_with_slurms_message(crew, tmp_path):
    crew.recruit(workers=2, partition="nonexistent", log_dir=tmp_path / "logs")
    with pytest.raises(WorkerLaunchError, match="invalid partition specified: nonexistent"):
        crew.launch()
    job = crew.send(jobs.double, args=(1,))  # accepted; its launches fail until it gives up
    result = crew.receive(timeout=120)
    assert (result.id, result.status) == (job, "error") and "invalid partition" in str(result.error)
    assert crew.receive() is None
    assert squeue() == ""  # nothing half-created: no pending or running job


def test_a_bad_memory_spec_is_refused_with_slurms_message(crew, tmp_path):
    crew.recruit(workers=1, memory="lots", log_dir=tmp_path / "logs")
    with pytest.raises(WorkerLaunchError, match="Invalid --mem specification"):
        crew.launch()


def test_closing_the_crew_leaves_no_job_behind(slurm, tmp_path):
    with Crew(store=str(tmp_path / "store"), worker_classes=["slurm"]) as crew:
        workers = crew.recruit(workers=2, log_dir=tmp_path / "logs")
        crew.send(jobs.sleep_then, args=(300,))  # busy: killed by scancel
        crew.launch()
        wait_for(lambda: all(w.backend.state() == "RUNNING" for w in workers), timeout=120, what="both running")
    wait_for(lambda: squeue() == "", timeout=60, what="no job left in the queue")


def launch_key(crew: Crew, worker) -> str:
    """The secret the crew gave this launch of the worker (hex)."""
    return crew._manager.keys.launch_key(worker.name, crew._manager.records[worker.name].incarnation).hex()


def test_the_launch_key_is_in_no_job_record_and_its_file_is_read_once(crew, tmp_path, monkeypatch):
    monkeypatch.setenv("CREW_SECRET", "ef" * 32)  # the controller's own (a named crew's key): not exported
    [worker] = crew.recruit(workers=1, worker_class="slurm", log_dir=tmp_path / "logs")
    crew.send(jobs.pid)
    pid = crew.receive(timeout=120).value
    job_id, key = worker.backend.job_id, launch_key(crew, worker)
    started_with = (Path("/proc") / str(pid) / "environ").read_bytes()  # the worker's environment at exec
    assert key.encode() not in started_with and b"ef" * 32 not in started_with
    assert b"CREW_SECRET_FILE=" in started_with
    shown = subprocess.run(["scontrol", "show", "job", "-d", "-o", job_id], capture_output=True, text=True).stdout
    script = subprocess.run(["scontrol", "write", "batch_script", job_id, "-"], capture_output=True, text=True)
    assert "crew_core worker" in script.stdout, script.stderr  # the record was read
    assert key not in shown and key not in script.stdout and "CREW_SECRET=" not in shown
    folder = tmp_path / "state" / "crew" / "launch-secrets"
    assert list(folder.iterdir()) == []  # the worker read its file and deleted it


def test_a_planted_or_shared_secret_file_is_refused(tmp_path, monkeypatch):
    from crew_core.plugin import read_secret_file, write_secret_file

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = write_secret_file({"CREW_SECRET": "ab" * 32})
    path.chmod(0o644)
    with pytest.raises(RuntimeError, match="others can read or write"):
        read_secret_file(path)
    assert not path.exists()  # refused, and gone
    path = write_secret_file({"CREW_SECRET": "ab" * 32})
    path.parent.chmod(0o777)
    with pytest.raises(RuntimeError, match="others can write"):
        read_secret_file(path)
    path.parent.chmod(0o700)
    path = write_secret_file({"CREW_SECRET": "ab" * 32})
    assert read_secret_file(path) == {"CREW_SECRET": "ab" * 32} and not path.exists()


def test_status_of_all_workers_is_one_squeue_call(crew, tmp_path, monkeypatch):
    from crew_slurm import commands

    monkeypatch.setattr(SlurmWorker, "status_interval", 3600)  # no status check of the crew's own meanwhile
    workers = crew.recruit(workers=3, log_dir=tmp_path / "logs")
    crew.launch()
    calls = []
    real = commands._run
    monkeypatch.setattr(commands, "_run", lambda command, **kw: calls.append(command[0]) or real(command, **kw))
    assert all(SlurmWorker.running([w.backend for w in workers]).values())
    assert calls == ["squeue"]
