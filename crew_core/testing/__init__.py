"""Contract test suites for store and worker plugins (in the spirit of fsspec's abstract tests).

A plugin's test module subclasses a suite and provides fixtures::

    from crew_core.testing import StoreContract, WorkerContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self):
            ...  # a fresh, empty store against a real backend (or its protocol server)

    class TestMyWorker(WorkerContract):
        @pytest.fixture
        def worker_class(self):
            return "my-worker"

Every test uses the public API the way a user would; see ``docs/specification.md``.
"""

import pytest

# Plain asserts in the suites show their values when they fail, as in a plugin's own tests.
pytest.register_assert_rewrite(
    "crew_core.testing.crew_contract", "crew_core.testing.store_contract", "crew_core.testing.worker_contract"
)

from crew_core.testing.client_filtered import ClientFilteredListing  # noqa: E402
from crew_core.testing.crew_contract import CrewContract  # noqa: E402
from crew_core.testing.polling import process_gone, wait_for  # noqa: E402
from crew_core.testing.store_contract import StoreContract  # noqa: E402
from crew_core.testing.trust_contract import TrustContract  # noqa: E402
from crew_core.testing.worker_contract import WorkerContract  # noqa: E402

__all__ = [
    "ClientFilteredListing",
    "CrewContract",
    "StoreContract",
    "TrustContract",
    "WorkerContract",
    "process_gone",
    "wait_for",
]
