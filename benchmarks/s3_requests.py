"""S3 requests per job and per idle worker-minute (users pay per request), on moto's S3 server.

Run: ``python benchmarks/s3_requests.py [--idle-seconds 60]``. Needs crew-aws and moto[server].
Workers run as executor workers on threads of this process, so one counter sees the requests of
the controller and of the workers alike.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor


def noop(x: int) -> int:
    return x


def main() -> None:
    import boto3
    from crew_aws import S3Store
    from crew_aws.testing import moto_s3

    from crew_core import Crew

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    ns = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    with moto_s3() as endpoint, ThreadPoolExecutor(max_workers=2) as pool:
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
        boto3.client("s3").create_bucket(Bucket="crew-bench")
        with Crew(store="s3://crew-bench/run", worker_classes=["executor"]) as crew:
            crew.recruit(workers=2, executor=pool)
            crew.launch()
            crew.send(noop, args=(0,))
            crew.receive()

            def measure(label: str, send_all: bool, count: int) -> None:
                S3Store.requests.clear()
                for i in range(count):
                    crew.send(noop, args=(i,))
                    if not send_all:
                        crew.receive()
                if send_all:
                    list(crew.results())
                total = sum(S3Store.requests.values())
                detail = ", ".join(f"{op} {n / count:.2f}" for op, n in sorted(S3Store.requests.items()))
                print(f"{label}: {total / count:.2f} requests per job ({detail})")

            measure("one job at a time (send, receive)", send_all=False, count=100)
            measure(f"{ns.jobs} jobs sent at once", send_all=True, count=ns.jobs)

        with Crew(store="s3://crew-bench/idle", worker_classes=["executor"]) as crew:
            crew.recruit(workers=1, executor=pool)
            crew.launch()
            time.sleep(1.0)  # let it start
            S3Store.requests.clear()
            time.sleep(ns.idle_seconds)  # the controller is not called: only the worker asks
            per_minute = sum(S3Store.requests.values()) * 60 / ns.idle_seconds
            detail = dict(S3Store.requests)
            print(f"idle worker: {per_minute:.1f} requests per minute ({detail} in {ns.idle_seconds:.0f} s)")
            print(
                f"  defaults: poll back-off {S3Store.poll_interval[0]}-{S3Store.poll_interval[1]} s,"
                f" heartbeat every {S3Store.heartbeat_interval:.0f} s"
            )


if __name__ == "__main__":
    main()
