"""crew-aws: an S3 store and AWS Batch workers for crew."""

from .batch_worker import BatchWorker
from .s3_store import S3Store

__all__ = ["BatchWorker", "S3Store"]
