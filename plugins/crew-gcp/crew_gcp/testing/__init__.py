"""Offline test doubles for crew-gcp: a GCS emulator and a local Cloud Run v2 control plane."""

from .cloud_run_server import CloudRunControlPlane
from .gcs import gcs_emulator

__all__ = ["CloudRunControlPlane", "gcs_emulator"]
