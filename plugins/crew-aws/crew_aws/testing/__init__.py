"""Offline test doubles for crew-aws: moto's S3 server and a local AWS Batch control plane.

Use them to test your own pipelines without an AWS account::

    with moto_s3() as endpoint, BatchControlPlane() as batch:
        ...
"""

from .batch_server import BatchControlPlane
from .moto import moto_s3, served_requests

__all__ = ["BatchControlPlane", "moto_s3", "served_requests"]
