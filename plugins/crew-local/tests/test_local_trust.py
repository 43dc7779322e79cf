"""Who can forge what, over the local store (crew_core.testing.TrustContract)."""

from __future__ import annotations

import pytest

from crew_core.testing import TrustContract
from crew_local import LocalStore


class TestTrustOverLocalStore(TrustContract):
    @pytest.fixture
    def store(self, tmp_path):
        store = LocalStore(tmp_path / "store")
        yield store
        store.close()

    @pytest.fixture
    def crew_store(self, tmp_path):
        return str(tmp_path / "crew-store")

    @pytest.fixture
    def other_place(self, tmp_path):
        return str(tmp_path / "elsewhere")
