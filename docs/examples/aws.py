"""crew-aws: a crew on S3 with AWS Batch workers."""

# --8<-- [start:aws]
from crew_core import Crew


def fit(n):
    return sum(i * i for i in range(n))


with Crew(store="s3://my-bucket/crews/run-1", worker_classes=["aws-batch"]) as crew:
    crew.recruit(workers=4, job_queue="spot-queue", job_definition="crew-worker:1",
                 vcpus=2, memory=4096, tags={"big"}, idle_timeout=300)  # fmt: skip
    crew.launch()  # start all four now rather than as jobs come
    print(crew.map(fit, [10, 100, 1000], tags="big").values())
# --8<-- [end:aws]
