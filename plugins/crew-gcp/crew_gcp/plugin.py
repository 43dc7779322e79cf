"""crew-gcp's entry point: registers the ``gcs`` store and the ``cloud-run`` worker class."""

from __future__ import annotations

import os

from crew_core.plugin import hookimpl


@hookimpl
def crew_register_stores(registry):
    from .gcs_store import GCSStore

    registry.add("gcs", GCSStore)


@hookimpl
def crew_register_workers(registry):
    from .cloud_run_worker import CloudRunWorker

    registry.add("cloud-run", CloudRunWorker)


@hookimpl
def crew_configure(config):
    # Settings from the environment, for the controller and (through the store's config) workers.
    if os.environ.get("CREW_GCS_POLL_INTERVAL"):  # "low,high", checked by the store (an error names it)
        config["gcs"].setdefault("poll_interval", os.environ["CREW_GCS_POLL_INTERVAL"])
    for key, variable in (
        ("job", "CREW_CLOUD_RUN_JOB"),
        ("project", "GOOGLE_CLOUD_PROJECT"),
        ("region", "CREW_CLOUD_RUN_REGION"),
    ):
        if os.environ.get(variable):
            config["cloud-run"].setdefault(key, os.environ[variable])
