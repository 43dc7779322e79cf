"""Who can forge what, with every object going through GCS (crew_core.testing.TrustContract)."""

from __future__ import annotations

import pytest
from crew_gcp import GCSStore

from crew_core.testing import TrustContract


class TestTrustOverGCS(TrustContract):
    @pytest.fixture
    def store(self, bucket, gcs):
        store = GCSStore(bucket, "crews/trust/")
        yield store
        store.close()

    @pytest.fixture
    def crew_store(self, bucket):
        return f"gs://{bucket}/crews/day1"

    @pytest.fixture
    def other_place(self, bucket):
        return f"gs://{bucket}/crews/day2"
