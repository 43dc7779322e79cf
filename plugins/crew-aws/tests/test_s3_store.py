"""The S3 store against moto's S3 server on 127.0.0.1: the store contract and S3's failures."""

from __future__ import annotations

import pytest
from crew_aws import S3Store

from crew_core import Crew, CrewExecutor, StoreError, StoreGoneError
from crew_core.plugin import get_plugin_manager, hookimpl
from crew_core.testing import CrewContract, StoreContract, WorkerContract, jobs, wait_for

ROOT = "crews/run-1/"  # where the contract's stores live in their bucket


class TestS3Store(StoreContract):
    @pytest.fixture
    def store(self, bucket, s3):
        self.s3 = s3  # the raw helpers' own client: ground truth without the store's methods
        store = S3Store(bucket, ROOT)
        yield store
        store.close()

    @pytest.fixture
    def small_page_store(self, store):
        paged = S3Store(store.bucket, ROOT, page_size=self.small_page)
        yield paged
        paged.close()

    def raw_put(self, store, key, data):
        self.s3.put_object(Bucket=store.bucket, Key=ROOT + key, Body=data)

    def raw_get(self, store, key):
        return self.s3.get_object(Bucket=store.bucket, Key=ROOT + key)["Body"].read()

    def raw_list(self, store, prefix):
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=ROOT + prefix)
        return sorted(item["Key"][len(ROOT) :] for page in pages for item in page.get("Contents", ()))


class TestCrewOverS3(CrewContract):
    """Prefetch, revoke, a long backlog and put objects, every message going through S3."""

    @pytest.fixture
    def crew_store(self, bucket):
        return f"s3://{bucket}/crews/protocol"


class TestLocalWorkersOverS3(WorkerContract):
    """The whole worker contract with every message going through S3."""

    @pytest.fixture
    def worker_class(self):
        return "subprocess"

    @pytest.fixture
    def crew_store(self, bucket):
        return f"s3://{bucket}/crews/contract"

    @pytest.fixture
    def surviving_options(self):
        return {"detached": True}  # by default a local worker ends with its controller's process


def test_a_crew_runs_over_an_s3_url(bucket):
    with Crew(store=f"s3://{bucket}/crews/run-2", worker_classes=["subprocess"]) as crew:
        assert crew.store.describe() == f"s3://{bucket}/crews/run-2"
        assert crew.heartbeat_interval == 30.0  # heartbeats are paid requests on S3
        crew.recruit(workers=2)
        ids = [crew.send(jobs.double, args=(i,)) for i in range(20)]
        results = list(crew.results(timeout=120))
        assert sorted(r.value for r in results) == [2 * i for i in range(20)] and len(ids) == 20


def test_an_explicit_endpoint_reaches_s3_compatible_services(bucket, s3_endpoint, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    store = S3Store.from_url(f"s3://{bucket}/p", endpoint_url=s3_endpoint)
    store.put("k", b"v")
    assert S3Store.from_config(store.config()).get("k") == b"v"
    assert store.config() == {"bucket": bucket, "prefix": "p", "endpoint_url": s3_endpoint}


def test_page_size_is_the_number_of_keys_per_list_request(bucket):
    store = S3Store(bucket, "paged", page_size=10)
    for n in range(25):
        store.put(f"k/{n:02d}", b"")
    S3Store.requests.clear()
    assert store.list("k/") == [f"k/{n:02d}" for n in range(25)]
    assert S3Store.requests == {"ListObjectsV2": 3}
    assert S3Store.from_config(store.config()).page_size == 10  # workers list as the controller does
    with pytest.raises(StoreError, match="page_size must be a positive number"):
        S3Store(bucket, page_size=0)


def test_the_url_names_the_location_over_the_options(bucket):
    """Explicit beats defaults: a URL's bucket and prefix win over the config's or store_options'."""
    store = S3Store.from_url(f"s3://{bucket}/from-url", bucket="config-bucket", prefix="config/prefix")
    assert (store.bucket, store.prefix) == (bucket, "from-url")
    store = S3Store.from_url(f"s3://{bucket}", prefix="config/prefix")
    assert (store.bucket, store.prefix) == (bucket, "")  # the URL names the bucket's top level


def test_a_crew_takes_its_location_from_the_url_not_the_config(bucket):
    class Defaults:
        @hookimpl
        def crew_configure(self, config):
            config["s3"].update(bucket="no-such-bucket-configured", prefix="from-config")

    plugins = get_plugin_manager([Defaults()])
    with Crew(store=f"s3://{bucket}/from-url", plugins=plugins, worker_classes=["subprocess"]) as crew:
        assert crew.store.describe() == f"s3://{bucket}/from-url"
    with Crew(store="s3", plugins=plugins, store_options={"bucket": bucket}, worker_classes=["subprocess"]) as crew:
        assert crew.store.describe() == f"s3://{bucket}/from-config"  # no URL: the config's prefix


def test_a_missing_bucket_is_a_clear_error_at_crew_creation(s3_endpoint):
    with pytest.raises(StoreError, match="does not exist: create it or fix the"):
        Crew(store="s3://no-such-bucket-here/run", worker_classes=["subprocess"])


def test_missing_credentials_are_a_clear_error(bucket, monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StoreError, match="no AWS credentials were found"):
        S3Store(bucket)


def test_access_denied_names_the_missing_permission(bucket, s3):
    import json

    denied = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(denied))
    store = S3Store(bucket, "p")
    try:
        store.put("k", b"v")
    except StoreError as exc:
        assert "s3:PutObject" in str(exc) and "access denied" in str(exc)
    else:
        pytest.skip("this moto version does not enforce bucket policies")


def test_the_store_counts_its_requests(bucket):
    S3Store.requests.clear()
    store = S3Store(bucket)
    store.put("a", b"1")
    store.get("a")
    store.list("")
    store.delete(["a"])
    assert S3Store.requests == {"HeadBucket": 1, "PutObject": 1, "GetObject": 1, "ListObjectsV2": 1, "DeleteObjects": 1}
    assert store.put_new("b", b"1") and not store.put_new("b", b"2")
    assert S3Store.requests["PutObject"] == 3  # one conditional PUT each


def test_a_conditional_put_that_meets_another_in_flight_is_retried(bucket):
    """S3 answers 409 ConditionalRequestConflict while another write to the key is in flight and asks
    for a retry; moto never does, so these answers are stubbed on the store's own client."""
    from botocore.stub import Stubber

    store = S3Store(bucket, "p")
    S3Store.requests.clear()
    with Stubber(store._client) as stub:
        stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
        stub.add_client_error("put_object", "PreconditionFailed", http_status_code=412)
        assert store.put_new("taken", b"1") is False  # the other write won
        stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
        stub.add_response("put_object", {})
        assert store.put_new("free", b"1") is True  # the other write failed
        for _ in range(5):
            stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
        with pytest.raises(StoreError, match="ConditionalRequestConflict"):
            store.put_new("busy", b"1")
        stub.assert_no_pending_responses()
    assert S3Store.requests == {"PutObject": 9}


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("ExpiredToken", "credentials have expired: renew them"),
        ("InvalidAccessKeyId", "access key id is not valid"),
        ("PermanentRedirect", "in another region: pass region="),
        ("NoSuchBucket", "does not exist: create it"),
        ("AccessDenied", "need the s3:GetObject permission"),
    ],
)
def test_s3_error_codes_moto_does_not_produce_become_clear_errors(code, message):
    """Expired tokens and wrong regions: moto never answers these, AWS does, with these codes."""
    from botocore.exceptions import ClientError
    from crew_aws.errors import store_error

    exc = ClientError({"Error": {"Code": code, "Message": "from AWS"}}, "GetObject")
    assert message in str(store_error(exc, "read", "s3:GetObject", "s3://b/p/k"))


def _delete_bucket(s3, bucket):
    """Empty the bucket and delete it (S3 deletes only empty buckets; a crew may write meanwhile)."""
    from botocore.exceptions import ClientError

    def deleted():
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", ()):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
        try:
            s3.delete_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "BucketNotEmpty":
                raise
            return False
        return True

    wait_for(deleted, what=f"bucket {bucket} to be deleted")


def test_a_deleted_bucket_is_a_store_gone_for_good(bucket, s3):
    store = S3Store(bucket, "p")
    store.put("k", b"v")
    _delete_bucket(s3, bucket)
    for call in (lambda: store.list(""), lambda: store.get("k"), lambda: store.put("k", b"v"),
                 lambda: store.put_new("n", b"v"), lambda: store.delete(["k"])):  # fmt: skip
        with pytest.raises(StoreGoneError, match="does not exist: create it or fix the store URL"):
            call()
    with pytest.raises(StoreGoneError, match="does not exist"):
        S3Store(bucket, "p")  # as a worker would build it
    store.close()


def test_a_crew_whose_bucket_is_deleted_ends_every_wait_with_store_gone_error(bucket, s3):
    """The same through the crew's own thread, which does the I/O on S3 (reads and writes in parallel)."""
    from concurrent.futures import wait

    with Crew(store=f"s3://{bucket}/crews/gone", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=2)
        executor = CrewExecutor(crew=crew)
        assert executor.submit(jobs.double, 1).result(timeout=120) == 2
        futures = [executor.submit(jobs.sleep_then, 60, n) for n in range(4)]  # never answered
        crew.send(jobs.sleep_then, args=(60,))
        _delete_bucket(s3, bucket)
        done, waiting = wait(futures, timeout=60)
        assert not waiting, "futures still wait after their bucket was deleted"
        assert all(isinstance(future.exception(), StoreGoneError) for future in done)
        with pytest.raises(StoreError):  # gone, or a failure reported as the bucket went
            crew.receive(timeout=60)
        with pytest.raises(StoreGoneError, match="does not exist"):
            crew.receive(timeout=60)  # for good, at once


def test_a_junk_poll_interval_in_the_environment_is_a_clear_error_naming_it(monkeypatch, bucket):
    """It made the whole crew-aws plugin skipped (a warning), and then "unknown store s3"."""
    from crew_core import StoreError

    monkeypatch.setenv("CREW_S3_POLL_INTERVAL", "junk")
    from crew_core.plugin import get_plugin_manager

    with pytest.raises(StoreError, match=r"CREW_S3_POLL_INTERVAL; not 'junk'"):
        Crew(store=f"s3://{bucket}/crews/junk", worker_classes=["subprocess"], plugins=get_plugin_manager())


def test_large_buffers_go_up_in_parts_and_come_back_in_ranges(bucket, s3):
    """``crew.put``'s arrays: a multipart upload and ranged GETs, ``request_concurrency`` at a time."""
    import random

    store = S3Store(bucket, "parts")
    store.part_size = 5 << 20  # S3's least: every part but the last must have at least this
    data = random.Random(5).randbytes(12 << 20)
    S3Store.requests.clear()
    store.put_buffer("big", memoryview(data))
    assert (S3Store.requests["CreateMultipartUpload"], S3Store.requests["UploadPart"]) == (1, 3)
    assert s3.get_object(Bucket=bucket, Key="parts/big")["Body"].read() == data  # one object, in order
    S3Store.requests.clear()
    view = store.get_buffer("big")
    assert S3Store.requests["GetObject"] == 3 and view.readonly and view.tobytes() == data
    store.put_buffer("small", memoryview(data[:100]))
    assert store.get_buffer("small").tobytes() == data[:100]
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")  # none left open
    store.close()
