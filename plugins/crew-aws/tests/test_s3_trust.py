"""Who can forge what, with every object going through S3 (crew_core.testing.TrustContract)."""

from __future__ import annotations

import pytest
from crew_aws import S3Store

from crew_core.testing import TrustContract


class TestTrustOverS3(TrustContract):
    @pytest.fixture
    def store(self, bucket):
        store = S3Store(bucket, "crews/trust/")
        yield store
        store.close()

    @pytest.fixture
    def crew_store(self, bucket):
        return f"s3://{bucket}/crews/day1"

    @pytest.fixture
    def other_place(self, bucket):
        return f"s3://{bucket}/crews/day2"
