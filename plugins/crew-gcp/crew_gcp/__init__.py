"""crew-gcp: a Google Cloud Storage store and Cloud Run Jobs workers for crew."""

from .cloud_run_worker import CloudRunWorker
from .gcs_store import GCSStore

__all__ = ["CloudRunWorker", "GCSStore"]
