"""crew-aws: an S3 store and AWS Batch workers for crew."""

from .s3_store import S3Store

__all__ = ["S3Store"]
