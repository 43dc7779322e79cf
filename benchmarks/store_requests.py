"""Cloud store requests per job and per idle worker-minute (users pay per request), on emulators.

Run: ``python benchmarks/store_requests.py s3|gcs [--idle-seconds 60]``. S3 runs on moto's server
(needs crew-aws, moto[server]); GCS on fake-gcs-server (needs crew-gcp and its wrapper wheel).
Workers run as executor workers on threads of this process, so one counter sees the requests of
the controller and of the workers alike.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any


def noop(x: int) -> int:
    return x


@contextmanager
def s3_store() -> Iterator[tuple[str, Any]]:
    import boto3
    from crew_aws import S3Store
    from crew_aws.testing import moto_s3

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    with moto_s3() as endpoint:
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
        boto3.client("s3").create_bucket(Bucket="crew-bench")
        yield "s3://crew-bench", S3Store


@contextmanager
def gcs_store() -> Iterator[tuple[str, Any]]:
    from crew_gcp import GCSStore
    from crew_gcp.testing import gcs_emulator
    from google.cloud import storage

    with gcs_emulator():
        storage.Client(project="crew-bench").create_bucket("crew-bench")
        os.environ["GOOGLE_CLOUD_PROJECT"] = "crew-bench"
        yield "gs://crew-bench", GCSStore


def main() -> None:
    from crew_core import Crew

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store", choices=["s3", "gcs"])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    ns = parser.parse_args()
    with s3_store() if ns.store == "s3" else gcs_store() as (url, cls), ThreadPoolExecutor(2) as pool:
        with Crew(store=f"{url}/run", worker_classes=["executor"]) as crew:
            crew.recruit(workers=2, executor=pool)
            crew.launch()
            crew.send(noop, args=(0,))
            crew.receive()

            def measure(label: str, send_all: bool, count: int) -> None:
                cls.requests.clear()
                for i in range(count):
                    crew.send(noop, args=(i,))
                    if not send_all:
                        crew.receive()
                if send_all:
                    list(crew.results())
                total = sum(cls.requests.values())
                detail = ", ".join(f"{op} {n / count:.2f}" for op, n in sorted(cls.requests.items()))
                print(f"{label}: {total / count:.2f} requests per job ({detail})")

            measure("one job at a time (send, receive)", send_all=False, count=100)
            measure(f"{ns.jobs} jobs sent at once", send_all=True, count=ns.jobs)

        with Crew(store=f"{url}/idle", worker_classes=["executor"]) as crew:
            crew.recruit(workers=1, executor=pool)
            crew.launch()
            time.sleep(1.0)  # let it start
            cls.requests.clear()
            time.sleep(ns.idle_seconds)  # the controller is not called: only the worker asks
            per_minute = sum(cls.requests.values()) * 60 / ns.idle_seconds
            print(
                f"idle worker: {per_minute:.1f} requests per minute ({dict(cls.requests)} in {ns.idle_seconds:.0f} s)"
            )
            print(f"  defaults: poll back-off {cls.poll_interval[0]}-{cls.poll_interval[1]} s,"
                  f" heartbeat every {cls.heartbeat_interval:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
