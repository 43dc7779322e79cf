"""What a crew costs in S3 requests, counted as moto serves them: every party, not the controller only."""

from __future__ import annotations

import re

from crew_aws.testing import served_requests

from crew_core import Crew
from crew_core.testing import jobs


def test_moto_logs_every_partys_requests_by_verb(bucket, s3, s3_endpoint):
    served_requests(s3_endpoint, clear=True)
    s3.put_object(Bucket=bucket, Key="a/1", Body=b"1")
    s3.get_object(Bucket=bucket, Key="a/1")
    s3.list_objects_v2(Bucket=bucket, Prefix="a/")
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a/1"}]})
    assert served_requests(s3_endpoint, clear=True) == [
        ("PUT", f"/{bucket}/a/1"), ("GET", f"/{bucket}/a/1"), ("LIST", f"/{bucket}"), ("DELETE", f"/{bucket}")
    ]  # fmt: skip
    assert served_requests(s3_endpoint) == []


def test_steady_long_jobs_go_two_to_a_task_while_the_backlog_is_deep(bucket, s3_endpoint):
    # A task record and its answer cost a PUT and a GET each, whatever they hold: 8 jobs of a steady,
    # measured duration queued behind one worker go in at most 5 tasks, not 8.
    with Crew(store=f"s3://{bucket}/pairs", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        for _ in range(3):  # measure the kind: three runs show it steady
            crew.send(jobs.sleep_then, args=(0.3,))
        assert [r.ok for r in crew.results(timeout=120)] == [True] * 3
        served_requests(s3_endpoint, clear=True)
        for i in range(8):
            crew.send(jobs.sleep_then, args=(0.3, i))
        assert sorted(r.value for r in crew.results(timeout=120)) == list(range(8))
        served = served_requests(s3_endpoint)
    tasks = [path for verb, path in served if verb == "PUT" and re.search(r"/workers/[^/]+/\d+/\d{12}$", path)]
    answers = [path for verb, path in served if verb == "GET" and re.search(r"/inbox/\d{12}$", path)]
    assert 4 <= len(tasks) <= 5 and len(answers) == len(tasks)


def test_uneven_jobs_still_go_one_to_a_task(bucket, s3_endpoint):
    # One run of the kind took far longer than the others: a second job could wait behind a long one.
    with Crew(store=f"s3://{bucket}/uneven", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        for seconds in (0.3, 0.3, 0.3, 2.0):
            crew.send(jobs.sleep_then, args=(seconds,))
        assert len(list(crew.results(timeout=120))) == 4
        served_requests(s3_endpoint, clear=True)
        for i in range(4):
            crew.send(jobs.sleep_then, args=(0.3, i))
        assert sorted(r.value for r in crew.results(timeout=120)) == list(range(4))
        served = served_requests(s3_endpoint)
    tasks = [path for verb, path in served if verb == "PUT" and re.search(r"/workers/[^/]+/\d+/\d{12}$", path)]
    assert len(tasks) == 4
