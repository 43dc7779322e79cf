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

from .polling import wait_for
from .store_contract import StoreContract
from .worker_contract import WorkerContract

__all__ = ["StoreContract", "WorkerContract", "wait_for"]
