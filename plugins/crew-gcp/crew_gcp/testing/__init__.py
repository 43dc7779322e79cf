"""Offline test doubles for crew-gcp: a GCS emulator, and a local Cloud Run v2 control plane that
is a Secret Manager v1 as well."""

from .cloud_run_server import CloudRunControlPlane
from .gcs import gcs_emulator
from .secret_manager import SecretManager

__all__ = ["CloudRunControlPlane", "SecretManager", "gcs_emulator"]
