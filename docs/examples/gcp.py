"""crew-gcp: a crew on Google Cloud Storage with Cloud Run Jobs workers."""

# --8<-- [start:gcp]
from crew_core import Crew


def fit(n):
    return sum(i * i for i in range(n))


with Crew(store="gs://my-bucket/crews/run-1", worker_classes=["cloud-run"]) as crew:
    crew.recruit(workers=4, job="projects/my-project/locations/us-central1/jobs/crew-worker",
                 tags={"gcp"}, idle_timeout=300)  # fmt: skip
    print(crew.map(fit, [10, 100, 1000], tags="gcp").values())
# --8<-- [end:gcp]
