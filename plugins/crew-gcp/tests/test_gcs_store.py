"""The GCS store against fake-gcs-server on 127.0.0.1: the store contract and GCS's failures."""

from __future__ import annotations

import pytest
from crew_gcp import GCSStore

from crew_core import Crew, StoreError, StoreGoneError
from crew_core.plugin import get_plugin_manager, hookimpl
from crew_core.testing import CrewContract, StoreContract, WorkerContract, jobs

ROOT = "crews/run-1/"  # where the contract's stores live in their bucket


class TestGCSStore(StoreContract):
    @pytest.fixture
    def store(self, bucket, gcs):
        self.gcs = gcs.bucket(bucket)  # the raw helpers' own client: ground truth without the store
        store = GCSStore(bucket, ROOT)
        yield store
        store.close()

    @pytest.fixture
    def small_page_store(self, store):
        paged = GCSStore(store.bucket_name, ROOT, page_size=self.small_page)
        yield paged
        paged.close()

    def raw_put(self, store, key, data):
        self.gcs.blob(ROOT + key).upload_from_string(data)

    def raw_get(self, store, key):
        return self.gcs.blob(ROOT + key).download_as_bytes()

    def raw_list(self, store, prefix):
        return sorted(blob.name[len(ROOT) :] for blob in self.gcs.list_blobs(prefix=ROOT + prefix))


class TestCrewOverGCS(CrewContract):
    """Prefetch, revoke, a long backlog and put objects, every message going through GCS."""

    @pytest.fixture
    def crew_store(self, bucket):
        return f"gs://{bucket}/crews/protocol"


class TestLocalWorkersOverGCS(WorkerContract):
    @pytest.fixture
    def worker_class(self):
        return "subprocess"

    @pytest.fixture
    def crew_store(self, bucket):
        return f"gs://{bucket}/crews/contract"

    @pytest.fixture
    def surviving_options(self):
        return {"detached": True}  # by default a local worker ends with its controller's process


def test_a_crew_runs_over_a_gs_url(bucket):
    with Crew(store=f"gs://{bucket}/crews/run-2", worker_classes=["subprocess"]) as crew:
        assert crew.heartbeat_interval == 30.0
        crew.recruit(workers=2)
        for i in range(10):
            crew.send(jobs.double, args=(i,))
        assert sorted(r.value for r in crew.results(timeout=120)) == [2 * i for i in range(10)]


def test_page_size_is_the_number_of_objects_per_list_request(bucket):
    store = GCSStore(bucket, "paged", page_size=10)
    for n in range(25):
        store.put(f"k/{n:02d}", b"")
    GCSStore.requests.clear()
    assert store.list("k/") == [f"k/{n:02d}" for n in range(25)]
    assert GCSStore.requests == {"objects.list": 3}
    assert GCSStore.from_config(store.config()).page_size == 10  # workers list as the controller does
    with pytest.raises(StoreError, match="page_size must be a positive number"):
        GCSStore(bucket, page_size=0)


def test_deletes_are_counted_one_request_per_object(bucket, gcs):
    store = GCSStore(bucket, "counted")
    store.put("a", b"")
    store.put("b", b"")
    gcs.bucket(bucket).blob("counted/c/.private").upload_from_string(b"")
    GCSStore.requests.clear()
    store.delete(["a", "b", "missing"])
    assert GCSStore.requests == {"objects.delete": 3}
    GCSStore.requests.clear()
    store.delete_prefix("")
    assert GCSStore.requests == {"objects.list": 1, "objects.delete": 1}


def test_put_new_is_one_request(bucket):
    store = GCSStore(bucket, "p")
    GCSStore.requests.clear()
    assert store.put_new("k", b"1") and not store.put_new("k", b"2")
    assert GCSStore.requests == {"objects.insert": 2} and store.get("k") == b"1"


def test_the_emulator_cannot_run_the_libraries_batches(bucket, gcs):
    """Why deletes are not batched: fake-gcs-server drops parts without a Content-ID, which
    google-cloud-storage never sends. If this starts failing, the emulator has caught up: batch."""
    gcs.bucket(bucket).blob("k").upload_from_string(b"")
    with pytest.raises(ValueError, match="not multi-part"), gcs.batch():
        gcs.bucket(bucket).delete_blob("k")
    assert [blob.name for blob in gcs.list_blobs(bucket)] == ["k"]


def test_the_url_names_the_location_over_the_options(bucket):
    """Explicit beats defaults: a URL's bucket and prefix win over the config's or store_options'."""
    store = GCSStore.from_url(f"gs://{bucket}/from-url", bucket="config-bucket", prefix="config/prefix")
    assert (store.bucket_name, store.prefix) == (bucket, "from-url")
    store = GCSStore.from_url(f"gs://{bucket}", prefix="config/prefix")
    assert (store.bucket_name, store.prefix) == (bucket, "")  # the URL names the bucket's top level


def test_a_crew_takes_its_location_from_the_url_not_the_config(bucket):
    class Defaults:
        @hookimpl
        def crew_configure(self, config):
            config["gcs"].update(bucket="no-such-bucket-configured", prefix="from-config")

    plugins = get_plugin_manager([Defaults()])
    with Crew(store=f"gs://{bucket}/from-url", plugins=plugins, worker_classes=["subprocess"]) as crew:
        assert crew.store.describe() == f"gs://{bucket}/from-url"
    with Crew(store="gcs", plugins=plugins, store_options={"bucket": bucket}, worker_classes=["subprocess"]) as crew:
        assert crew.store.describe() == f"gs://{bucket}/from-config"  # no URL: the config's prefix


def test_a_missing_bucket_is_a_clear_error_at_crew_creation(gcs_endpoint):
    with pytest.raises(StoreError, match="does not exist: create it or fix the store URL"):
        Crew(store="gs://no-such-bucket-here/run", worker_classes=["subprocess"])


def test_missing_credentials_are_a_clear_error(monkeypatch, tmp_path, gcs_endpoint):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")  # the real service, with no credentials anywhere
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    with pytest.raises(StoreError, match="credentials"):
        GCSStore("some-bucket")


@pytest.mark.parametrize(
    ("error", "message"),
    [("Forbidden", "need storage.objects.get"), ("NotFound", "does not exist"), ("Unauthorized", "permission denied")],
)
def test_gcs_errors_the_emulator_does_not_produce_become_clear_errors(error, message):
    """The emulator enforces no IAM: the mapping of Google's errors is checked directly."""
    from crew_gcp.gcs_store import _store_error
    from google.api_core import exceptions

    assert message in str(_store_error(getattr(exceptions, error)("from Google"), "read", "gs://b/p/k"))


def test_a_deleted_bucket_is_a_store_gone_for_good(bucket, gcs):
    store = GCSStore(bucket, "p")
    store.put("k", b"v")
    gcs.bucket(bucket).delete(force=True)  # its objects, then the bucket
    for call in (lambda: store.list(""), lambda: store.put("k", b"v"), lambda: store.put_new("n", b"v")):
        with pytest.raises(StoreGoneError, match="does not exist: create it or fix the store URL"):
            call()
    with pytest.raises(StoreGoneError, match="does not exist"):
        GCSStore(bucket, "p")  # as a worker would build it
    store.close()


def test_large_buffers_go_up_in_composed_parts_and_come_back_in_ranges(bucket, gcs):
    """``crew.put``'s arrays: parts uploaded at once and composed (none left behind), ranged reads."""
    import random

    store = GCSStore(bucket, "parts")
    store.part_size = 4 << 20
    data = random.Random(6).randbytes(10 << 20)
    GCSStore.requests.clear()
    store.put_buffer("big", memoryview(data))
    assert (GCSStore.requests["objects.insert"], GCSStore.requests["objects.compose"]) == (3, 1)
    assert [blob.name for blob in gcs.bucket(bucket).list_blobs(prefix="parts/")] == ["parts/big"]
    assert gcs.bucket(bucket).blob("parts/big").download_as_bytes() == data
    GCSStore.requests.clear()
    view = store.get_buffer("big")
    assert GCSStore.requests["objects.get"] == 4 and view.readonly and view.tobytes() == data  # metadata, 3 ranges
    store.close()
