"""The Google Cloud Storage store: one object per key under ``gs://bucket/prefix/``.

Application Default Credentials and the project come from google-auth; ``STORAGE_EMULATOR_HOST``
points the client at an emulator (fake-gcs-server) with anonymous credentials. The library is
imported when the first store is built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from crew_core.plugin import KeyNotFoundError, Store, StoreError, StoreGoneError, check_key, is_key

_PERMISSIONS = {
    "write": "storage.objects.create (and storage.objects.delete to overwrite)",
    "read": "storage.objects.get",
    "list": "storage.objects.list",
    "delete from": "storage.objects.delete",
    "open": "storage.objects.list",
}
_LOCATION = ("bucket", "prefix")  # options that a gs:// URL names itself

logger = logging.getLogger("crew")
_COMPOSE_MAX = 32  # source objects one compose request takes


def _store_error(exc: BaseException, what: str, where: str) -> StoreError:
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(exc, auth.DefaultCredentialsError):
        message = (
            f"cannot {what} {where}: no Google credentials were found; run `gcloud auth"
            " application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
        )
    elif isinstance(exc, auth.RefreshError):
        message = f"cannot {what} {where}: the Google credentials could not be refreshed (expired?): {exc}"
    elif isinstance(exc, api.Forbidden | api.Unauthorized):
        message = f"permission denied to {what} {where}: the credentials need {_PERMISSIONS.get(what, 'access')}"
    elif isinstance(exc, api.NotFound):  # not an object's 404 (get and delete catch those): the bucket's
        return StoreGoneError(f"the bucket of {where} does not exist: create it or fix the store URL")
    else:
        message = f"GCS failed to {what} {where}: {exc}"
    return StoreError(message)


def _in_parallel(work: Callable[[int], None], items: Iterable[int], threads: int) -> None:
    from concurrent.futures import ThreadPoolExecutor  # only for large objects

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, items))


class GCSStore(Store):
    """Keys live under ``prefix`` in ``bucket``.

    Options: ``project`` (default: detected from the credentials or ``GOOGLE_CLOUD_PROJECT``),
    ``poll_interval`` (shortest and longest pause between an idle party's list requests),
    ``page_size`` (objects per list request; default GCS's 1000, tests set a few to exercise
    paging). Transient errors are retried with the library's default retry policy.
    """

    name = "gcs"
    schemes = ("gs", "gcs")
    notifies = False
    # An idle worker backs off to one list every 6 s and beats every 300 s: 10.2 requests a minute.
    poll_interval = (0.05, 6.0)
    heartbeat_interval = 30.0
    request_concurrency = 16  # the controller reads results and writes tasks in parallel
    atomic_put_new = True  # an upload with ifGenerationMatch=0
    #: Bytes per part of a large object's parallel upload and ranged reads.
    part_size: int = 16 << 20

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        project: str | None = None,
        poll_interval: tuple[float, float] | list[float] | str | None = None,
        page_size: int | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise StoreError(f"invalid GCS bucket name {bucket!r}")
        if page_size is not None and not (isinstance(page_size, int) and page_size >= 1):
            raise StoreError(f"page_size must be a positive number of objects, got {page_size!r}")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self._base = f"{self.prefix}/" if self.prefix else ""
        self.project = project
        self.page_size = page_size
        try:
            self.set_poll_interval(poll_interval)
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        try:
            from google.cloud import storage

            self._client = storage.Client(project=project)
            self._bucket = self._client.bucket(bucket)
            # Probe with a one-object listing, which object-level roles allow (buckets.get needs
            # more): a missing bucket or a permission problem shows here, not at the first job.
            self.count("objects.list")
            list(self._client.list_blobs(self._bucket, prefix=self._base, max_results=1))
        except Exception as exc:
            raise _store_error(exc, "open", self.describe()) from exc

    @classmethod
    def from_url(cls, url: str, **options: Any) -> GCSStore:
        """``gs://bucket`` or ``gs://bucket/some/prefix``.

        The URL names the whole location: a ``bucket`` or ``prefix`` among the options (from the
        ``gcs`` config section or ``store_options``) is ignored, as ``gs://bucket`` means the
        bucket's top level.
        """
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in cls.schemes:
            raise StoreError(f"not a GCS URL: {url!r} (expected gs://bucket/prefix)")
        bucket, _, prefix = rest.partition("/")
        overridden = {key: options.pop(key) for key in _LOCATION if key in options}
        if overridden:
            logger.info("the store URL %s overrides the options %s", url, overridden)
        return cls(bucket, prefix, **options)

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"bucket": self.bucket_name, "prefix": self.prefix}
        if self.project is not None:
            config["project"] = self.project
        config.update(self.poll_interval_config())
        if self.page_size is not None:
            config["page_size"] = self.page_size
        return config

    def describe(self) -> str:
        return f"gs://{self.bucket_name}/{self.prefix}" if self.prefix else f"gs://{self.bucket_name}"

    def _key(self, key: str) -> str:
        return self._base + check_key(key)

    # ------------------------------------------------------------------ the four verbs
    def put(self, key: str, data: bytes) -> None:
        name = self._key(key)
        self.count("objects.insert")
        try:
            self._bucket.blob(name).upload_from_string(data, content_type="application/octet-stream")
        except Exception as exc:
            raise _store_error(exc, "write", f"{self.describe()}/{key}") from exc

    def put_new(self, key: str, data: bytes) -> bool:
        """One upload with ``ifGenerationMatch=0``: GCS answers 412 if the object exists.

        The library retries such an upload on transient errors (the precondition makes it safe).
        """
        from google.api_core.exceptions import PreconditionFailed

        name = self._key(key)
        self.count("objects.insert")
        try:
            self._bucket.blob(name).upload_from_string(
                data, content_type="application/octet-stream", if_generation_match=0
            )
        except PreconditionFailed:
            return False
        except Exception as exc:
            raise _store_error(exc, "write", f"{self.describe()}/{key}") from exc
        return True

    def put_buffer(self, key: str, buffer: memoryview) -> None:
        """A large object in parallel parts: each uploaded as a private dot-name object beside
        the key, then composed into it (atomic: the object appears whole) and deleted. GCS
        composes at most 32 parts, so a very large object has larger parts."""
        view = buffer.cast("B") if buffer.format != "B" or buffer.ndim != 1 else buffer
        if view.nbytes <= self.part_size:
            self.put(key, view.tobytes())
            return
        import secrets

        name, where = self._key(key), f"{self.describe()}/{key}"
        size = max(self.part_size, -(-view.nbytes // _COMPOSE_MAX))
        folder, _, base = name.rpartition("/")
        token = secrets.token_hex(4)  # two writers of one key never share parts
        parts = [f"{folder}/.{base}.{token}.{n}".lstrip("/") for n in range(-(-view.nbytes // size))]

        def upload(n: int) -> None:
            self.count("objects.insert")
            body = view[n * size : (n + 1) * size].tobytes()
            self._bucket.blob(parts[n]).upload_from_string(body, content_type="application/octet-stream")

        try:
            _in_parallel(upload, range(len(parts)), self.request_concurrency)
            self.count("objects.compose")
            self._bucket.blob(name).compose([self._bucket.blob(part) for part in parts])
        except Exception as exc:
            raise _store_error(exc, "write", where) from exc
        finally:
            self._delete_names([part[len(self._base) :] for part in parts])

    def get_buffer(self, key: str) -> memoryview:
        """A large object in parallel ranged reads of one generation, after one metadata read."""
        name, where = self._key(key), f"{self.describe()}/{key}"
        self.count("objects.get")
        try:
            blob = self._bucket.get_blob(name)
        except Exception as exc:
            raise _store_error(exc, "read", where) from exc
        if blob is None:
            raise KeyNotFoundError(f"no object {key!r} in {self.describe()}")
        total, generation = int(blob.size or 0), blob.generation
        whole = bytearray(total)

        def read(start: int) -> None:
            self.count("objects.get")
            end = min(start + self.part_size, total) - 1
            data = blob.download_as_bytes(start=start, end=end, if_generation_match=generation, checksum=None)
            whole[start : start + len(data)] = data

        try:
            _in_parallel(read, range(0, total, self.part_size), self.request_concurrency)
        except Exception as exc:
            from google.api_core.exceptions import NotFound

            if isinstance(exc, NotFound):
                raise KeyNotFoundError(f"no object {key!r} in {self.describe()}") from None
            raise _store_error(exc, "read", where) from exc
        return memoryview(whole).toreadonly()

    def get(self, key: str) -> bytes:
        from google.api_core.exceptions import NotFound

        name = self._key(key)
        self.count("objects.get")
        try:
            return self._bucket.blob(name).download_as_bytes()
        except NotFound:
            raise KeyNotFoundError(f"no object {key!r} in {self.describe()}") from None
        except Exception as exc:
            raise _store_error(exc, "read", f"{self.describe()}/{key}") from exc

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        # GCS lists in UTF-8 binary order, which is the contract's code-point order for ASCII keys.
        keys = [name for name in self._names(prefix, start_after) if is_key(name)]
        if start_after is not None:
            keys = [key for key in keys if key > start_after]  # start_offset is inclusive
        return keys

    def _names(self, prefix: str, start_offset: str | None = None) -> list[str]:
        """Every object name under ``prefix`` (relative to the store's), private ones too, all pages."""
        arguments: dict[str, Any] = {"prefix": self._base + prefix, "page_size": self.page_size}
        if start_offset is not None:
            arguments["start_offset"] = self._base + start_offset
        names: list[str] = []
        try:
            for page in self._client.list_blobs(self._bucket, **arguments).pages:
                self.count("objects.list")
                names.extend(blob.name[len(self._base) :] for blob in page)
        except Exception as exc:
            raise _store_error(exc, "list", f"{self.describe()}/{prefix}") from exc
        return names

    def delete(self, keys: Iterable[str]) -> None:
        self._delete_names([check_key(key) for key in keys])

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under ``prefix``, including private dot-names that ``list`` hides."""
        self._delete_names(self._names(prefix))

    def _delete_names(self, relative_names: list[str]) -> None:
        # One request per object: GCS's batch endpoint would take 100 per request, but the
        # emulator the tests use (fake-gcs-server 1.54) answers google-cloud-storage's batches
        # with an empty response and deletes nothing, so a batched delete could not be tested.
        from google.api_core.exceptions import NotFound

        def delete(name: str) -> None:
            self.count("objects.delete")
            try:
                self._bucket.blob(self._base + name).delete()
            except NotFound:
                pass
            except Exception as exc:
                raise _store_error(exc, "delete from", f"{self.describe()}/{name}") from exc

        if len(relative_names) < 4:
            for name in relative_names:
                delete(name)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(16, len(relative_names))) as pool:  # a crew's leftovers: thousands
            list(pool.map(delete, relative_names))

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()
