"""Nested crews on AWS: forwarders on this machine, inner crews on moto's S3 (local workers, and
AWS Batch workers through crew_aws.testing's control plane). Real processes throughout."""

from __future__ import annotations

import os
import signal

from crew_core import Crew
from crew_core.testing import jobs, wait_for


def test_an_inner_crew_on_s3_with_local_workers(bucket, s3, tmp_path):
    inner = {"store": f"s3://{bucket}/inner", "recruit": [{"workers": 2, "worker_class": "subprocess"}]}
    with Crew(store=tmp_path / "outer", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=2, worker_class="nested", inner=inner)
        ids = [crew.send(jobs.double, (i,)) for i in range(200)]
        failed = crew.send(jobs.fail, ("on s3",))
        results = {r.id: r for r in crew.results(timeout=120)}
        assert [results[i].value for i in ids] == [2 * i for i in range(200)]
        assert isinstance(results[failed].error, ValueError) and "on s3" in results[failed].traceback
        assert {r.worker.split("/")[0] for r in results.values()} == {"nested-1", "nested-2"}
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="inner/").get("KeyCount", 0)
    assert listed == 0  # closing the outer crew closed the inner crews, which removed their objects


def test_an_inner_crew_of_batch_workers_survives_its_forwarders_death(bucket, batch, options, tmp_path):
    inner = {
        "store": f"s3://{bucket}/inner",
        "worker_classes": ["aws-batch"],
        "recruit": [{"workers": 2, "worker_class": "aws-batch", **options}],
    }
    marks = tmp_path / "marks"
    with Crew(store=tmp_path / "outer", worker_classes=["subprocess"]) as crew:
        crew.recruit(worker_class="nested", inner=inner)
        ids = [crew.send(jobs.mark_then_sleep, (str(marks), f"j{i}", 2.0)) for i in range(4)]
        wait_for(lambda: sum(jobs.runs_of(marks).values()) >= 2, timeout=120, what="Batch workers to start jobs")
        forwarder = crew.workers["nested-1"].backend
        first = forwarder.pid
        os.kill(first, signal.SIGKILL)
        results = {r.id: r for r in crew.results(timeout=180)}
        assert all(results[i].ok for i in ids) and forwarder.pid != first
        assert jobs.runs_of(marks) == {f"j{i}": 1 for i in range(4)}  # nothing lost, nothing run twice
        submitted = [request for request in batch.requests if request[0] == "submitjob"]
        assert len(submitted) == 2  # the relaunched forwarder adopted the Batch workers: none launched again
    for job_id in list(batch.jobs):  # closing the outer crew closed the inner one, which ended them
        batch.wait_status(job_id, ("SUCCEEDED", "FAILED"), timeout=60)
