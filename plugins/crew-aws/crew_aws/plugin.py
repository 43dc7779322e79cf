"""crew-aws's entry point: registers the ``s3`` store and the ``aws-batch`` worker class."""

from __future__ import annotations

from crew_core.plugin import hookimpl


@hookimpl
def crew_register_stores(registry):
    from .s3_store import S3Store

    registry.add("s3", S3Store)


@hookimpl
def crew_register_workers(registry):
    from .batch_worker import BatchWorker

    registry.add("aws-batch", BatchWorker)


@hookimpl
def crew_configure(config):
    # Settings from the environment, for the controller and (through the store's config) workers.
    import os

    if os.environ.get("CREW_S3_POLL_INTERVAL"):  # "low,high", checked by the store (an error names it)
        config["s3"].setdefault("poll_interval", os.environ["CREW_S3_POLL_INTERVAL"])
    for key in ("job_queue", "job_definition"):
        value = os.environ.get(f"CREW_BATCH_{key.upper()}")
        if value:
            config["aws-batch"].setdefault(key, value)
