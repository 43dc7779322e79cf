"""The S3 store: one object per key under ``s3://bucket/prefix/``, through boto3.

Works with any S3-compatible service through ``endpoint_url`` (MinIO, R2, Ceph, moto). boto3 is
imported when the first store is built, not when crew starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from crew_core.plugin import KeyNotFoundError, Store, StoreError, StoreGoneError, check_key, is_key

from .errors import error_code, store_error

_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
_LOCATION = ("bucket", "prefix")  # options that an s3:// URL names itself
_CONFLICT_TRIES = 5  # conditional PUTs answered 409: S3 asks to retry them

logger = logging.getLogger("crew")



class S3Store(Store):
    """Keys live under ``prefix`` in ``bucket``; credentials come from boto3's default chain.

    Options: ``region`` (default: the environment's), ``endpoint_url`` (S3-compatible services),
    ``profile`` (a named AWS profile), ``max_attempts`` and ``retry_mode`` (botocore's retries on
    throttling and transient errors; default 10 attempts, ``"adaptive"``), ``poll_interval``
    (shortest and longest pause between an idle party's LIST requests; default 0.05 s and 6 s),
    ``page_size`` (keys per LIST request; default S3's 1000, tests set a few to exercise paging).
    """

    name = "s3"
    schemes = ("s3",)
    notifies = False
    # An idle worker backs off to one LIST every 6 s and beats every 300 s: 10.2 requests a minute.
    poll_interval = (0.05, 6.0)
    heartbeat_interval = 30.0  # one PUT every 30 s per busy worker
    request_concurrency = 16  # the controller reads results and writes tasks in parallel
    atomic_put_new = True  # PutObject with If-None-Match: * (S3 has had it since August 2024)
    #: Bytes per part of a large object's parallel upload and ranged reads (S3's least is 5 MiB).
    part_size: int = 16 << 20

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        max_attempts: int = 10,
        retry_mode: str = "adaptive",
        poll_interval: tuple[float, float] | list[float] | str | None = None,
        page_size: int | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise StoreError(f"invalid S3 bucket name {bucket!r}")
        if page_size is not None and not (isinstance(page_size, int) and page_size >= 1):
            raise StoreError(f"page_size must be a positive number of keys, got {page_size!r}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._base = f"{self.prefix}/" if self.prefix else ""
        self.region, self.endpoint_url, self.profile = region, endpoint_url, profile
        self.max_attempts, self.retry_mode = max_attempts, retry_mode
        self.page_size = page_size
        try:
            self.set_poll_interval(poll_interval)
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        self._client = self._make_client()
        self._check_bucket()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3Store:
        """``s3://bucket`` or ``s3://bucket/some/prefix``.

        The URL names the whole location: a ``bucket`` or ``prefix`` among the options (from the
        ``s3`` config section or ``store_options``) is ignored, as ``s3://bucket`` means the
        bucket's top level.
        """
        if not url.startswith("s3://"):
            raise StoreError(f"not an S3 URL: {url!r} (expected s3://bucket/prefix)")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        overridden = {key: options.pop(key) for key in _LOCATION if key in options}
        if overridden:
            logger.info("the store URL %s overrides the options %s", url, overridden)
        return cls(bucket, prefix, **options)

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"bucket": self.bucket, "prefix": self.prefix}
        for key in ("region", "endpoint_url", "profile"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        config.update(self.poll_interval_config())
        if self.page_size is not None:
            config["page_size"] = self.page_size
        if (self.max_attempts, self.retry_mode) != (10, "adaptive"):
            config.update(max_attempts=self.max_attempts, retry_mode=self.retry_mode)
        return config

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
        config = Config(retries={"max_attempts": self.max_attempts, "mode": self.retry_mode}, max_pool_connections=32)
        try:
            return session.client("s3", endpoint_url=self.endpoint_url, config=config)
        except Exception as exc:
            raise store_error(exc, "connect to", "s3:ListBucket", self.describe()) from exc

    def _check_bucket(self) -> None:
        """Fail at construction, with the reason, rather than at the first job."""
        self.count("HeadBucket")
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            if str(getattr(exc, "response", {}).get("Error", {}).get("Code")) == "404":
                message = f"the bucket of {self.describe()} does not exist: create it or fix the URL"
                raise StoreGoneError(message) from exc
            raise store_error(exc, "open", "s3:ListBucket", self.describe()) from exc

    # ------------------------------------------------------------------ the four verbs
    def _key(self, key: str) -> str:
        return self._base + check_key(key)

    def put(self, key: str, data: bytes) -> None:
        name = self._key(key)
        self.count("PutObject")
        try:
            self._client.put_object(Bucket=self.bucket, Key=name, Body=data)
        except Exception as exc:
            raise store_error(exc, "write", "s3:PutObject", f"{self.describe()}/{key}") from exc

    def put_buffer(self, key: str, buffer: memoryview) -> None:
        """A large object in parallel parts (a multipart upload: the object appears whole, at
        ``CompleteMultipartUpload``, or not at all); up to :attr:`part_size` in one PutObject."""
        view = buffer.cast("B") if buffer.format != "B" or buffer.ndim != 1 else buffer
        if view.nbytes <= self.part_size:
            self.put(key, view.tobytes())
            return
        name, where = self._key(key), f"{self.describe()}/{key}"
        self.count("CreateMultipartUpload")
        try:
            upload = self._client.create_multipart_upload(Bucket=self.bucket, Key=name)["UploadId"]
        except Exception as exc:
            raise store_error(exc, "write", "s3:PutObject", where) from exc
        starts = range(0, view.nbytes, self.part_size)

        def part(number: int) -> dict[str, Any]:
            start = starts[number - 1]
            self.count("UploadPart")
            body = view[start : start + self.part_size].tobytes()  # one part's copy at a time per thread
            answer = self._client.upload_part(Bucket=self.bucket, Key=name, UploadId=upload, PartNumber=number,
                                              Body=body)  # fmt: skip
            return {"PartNumber": number, "ETag": answer["ETag"]}

        try:
            parts = self._in_parallel(part, range(1, len(starts) + 1))
            self.count("CompleteMultipartUpload")
            self._client.complete_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload,
                                                   MultipartUpload={"Parts": parts})  # fmt: skip
        except Exception as exc:
            self.count("AbortMultipartUpload")
            try:  # parts left behind would be billed until a lifecycle rule removes them
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload)
            except Exception:
                logger.warning("could not abort the multipart upload of %s; its parts stay until aborted", where)
            raise store_error(exc, "write", "s3:PutObject", where) from exc

    def get_buffer(self, key: str) -> memoryview:
        """A large object in parallel ranged GETs of :attr:`part_size`; the first says its size."""
        name, where = self._key(key), f"{self.describe()}/{key}"

        def read(start: int, *same: str) -> tuple[bytes, int, str]:
            self.count("GetObject")
            span = f"bytes={start}-{start + self.part_size - 1}"
            # Every range of one version: an object replaced meanwhile answers 412, not a mix.
            condition = {"IfMatch": same[0]} if same else {}
            answer = self._client.get_object(Bucket=self.bucket, Key=name, Range=span, **condition)
            total = int(str(answer.get("ContentRange", "")).rpartition("/")[2] or 0)
            return answer["Body"].read(), total, str(answer.get("ETag", ""))

        try:
            first, total, etag = read(0)
        except Exception as exc:
            code = error_code(exc)
            if code in ("NoSuchKey", "404"):
                raise KeyNotFoundError(f"no object {key!r} in {self.describe()}") from None
            if code in ("InvalidRange", "416"):  # an empty object has no first byte
                return memoryview(self.get(key))
            raise store_error(exc, "read", "s3:GetObject", where) from exc
        if total <= len(first):
            return memoryview(first)
        whole = bytearray(total)
        whole[: len(first)] = first

        def fill(start: int) -> None:
            data, _, _ = read(start, etag)
            whole[start : start + len(data)] = data

        try:
            self._in_parallel(fill, range(len(first), total, self.part_size))
        except Exception as exc:
            raise store_error(exc, "read", "s3:GetObject", where) from exc
        return memoryview(whole).toreadonly()

    def _in_parallel(self, work: Any, items: Iterable[Any]) -> list[Any]:
        """``work`` on each item, :attr:`request_concurrency` requests at once, results in order."""
        from concurrent.futures import ThreadPoolExecutor  # only for large objects

        with ThreadPoolExecutor(self.request_concurrency) as pool:
            return list(pool.map(work, items))

    def put_new(self, key: str, data: bytes) -> bool:
        """One conditional PutObject (``If-None-Match: *``): S3 answers 412 if the key exists.

        A 409 (ConditionalRequestConflict: another write to the key was in flight) is retried,
        as S3 asks; the retry then meets the other write's object (412) or none.
        """
        name = self._key(key)
        conflicts = 0
        while True:
            self.count("PutObject")
            try:
                self._client.put_object(Bucket=self.bucket, Key=name, Body=data, IfNoneMatch="*")
                return True
            except Exception as exc:
                code = error_code(exc)
                if code in ("PreconditionFailed", "412"):
                    return False
                conflicts += 1
                if code not in ("ConditionalRequestConflict", "409") or conflicts == _CONFLICT_TRIES:
                    raise store_error(exc, "write", "s3:PutObject", f"{self.describe()}/{key}") from exc
            time.sleep(0.05 * 2**conflicts)  # the write in flight ends within milliseconds

    def get(self, key: str) -> bytes:
        name = self._key(key)
        self.count("GetObject")
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=name)
            return response["Body"].read()
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise KeyNotFoundError(f"no object {key!r} in {self.describe()}") from None
            raise store_error(exc, "read", "s3:GetObject", f"{self.describe()}/{key}") from exc

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        # S3 lists in UTF-8 binary order, which is the contract's code-point order for ASCII keys.
        return [name for name in self._names(prefix, start_after) if is_key(name)]

    def _names(self, prefix: str, start_after: str | None = None) -> list[str]:
        """Every object name under ``prefix`` (relative to the store's), private ones too, all pages."""
        names: list[str] = []
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._base + prefix}
        if start_after is not None:
            arguments["StartAfter"] = self._base + start_after
        if self.page_size is not None:
            arguments["PaginationConfig"] = {"PageSize": self.page_size}
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(**arguments):
                self.count("ListObjectsV2")
                names.extend(item["Key"][len(self._base) :] for item in page.get("Contents", ()))
        except Exception as exc:
            raise store_error(exc, "list", "s3:ListBucket", f"{self.describe()}/{prefix}") from exc
        return names

    def delete(self, keys: Iterable[str]) -> None:
        self._delete_names([check_key(key) for key in keys])

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under ``prefix``, including private dot-names that ``list`` hides."""
        self._delete_names(self._names(prefix))

    def _delete_names(self, relative_names: list[str]) -> None:
        names = [self._base + name for name in relative_names]
        for start in range(0, len(names), _DELETE_BATCH):
            chunk = names[start : start + _DELETE_BATCH]
            self.count("DeleteObjects")
            try:
                response = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
                )
            except Exception as exc:
                raise store_error(exc, "delete from", "s3:DeleteObject", self.describe()) from exc
            errors = [e for e in response.get("Errors", ()) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise StoreError(
                    f"S3 refused to delete {len(errors)} object(s) from {self.describe()}, e.g."
                    f" {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                    " (the credentials need s3:DeleteObject)"
                )

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()
