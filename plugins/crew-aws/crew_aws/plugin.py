"""crew-aws's entry point: registers the ``s3`` store and the ``aws-batch`` worker class."""

from __future__ import annotations

from crew_core import hookimpl


@hookimpl
def crew_register_stores(registry):
    from .s3_store import S3Store

    registry.add("s3", S3Store)
