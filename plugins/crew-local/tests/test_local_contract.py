"""crew-local runs the contract suites of crew_core.testing against itself."""

from __future__ import annotations

import os

import pytest

from crew_core.testing import CrewContract, StoreContract, WorkerContract
from crew_local import LocalStore


class LocalBackend:
    """Ground truth for the store contract: the files under the store's root, read without it."""

    def raw_put(self, store, key, data):
        path = store.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def raw_get(self, store, key):
        return (store.root / key).read_bytes()

    def raw_list(self, store, prefix):
        names = []
        for folder, _, files in os.walk(store.root):  # nothing when the root is gone
            relative = os.path.relpath(folder, store.root).replace(os.sep, "/")
            names += [name if relative == "." else f"{relative}/{name}" for name in files]
        return sorted(name for name in names if name.startswith(prefix))


class TestLocalStore(LocalBackend, StoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        store = LocalStore(tmp_path / "store")
        yield store
        store.close()


class TestPrivateLocalStore(LocalBackend, StoreContract):
    """The default store of ``Crew()``: a private folder in RAM where the system has one."""

    @pytest.fixture
    def store(self):
        store = LocalStore()
        yield store
        store.close()
        assert not store.root.exists()


class TestSubprocessWorker(WorkerContract):
    @pytest.fixture
    def worker_class(self):
        return "subprocess"

    @pytest.fixture
    def refused_options(self):
        return {"python": "/nonexistent/python3"}

    @pytest.fixture
    def surviving_options(self):
        return {"detached": True}  # by default a worker ends with its controller's process


class TestExecutorWorker(WorkerContract):
    @pytest.fixture
    def worker_class(self):
        return "executor"

    @pytest.fixture
    def crash_cause(self):
        return None  # a pool's worker process: the pool does not say how it ended


def test_the_local_store_is_private_to_its_user(tmp_path):
    store = LocalStore(tmp_path / "private")
    store.put("crew/workers/w/1/tasks/000000000001", b"payload")
    store.wait("crew/controller", 0)
    for path in [store.root, *store.root.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{path} is open to others ({oct(mode)})"
    store.close()


def test_a_store_path_that_is_a_file_is_a_clear_error(tmp_path):
    from crew_core import StoreError

    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        LocalStore(tmp_path / "file")


class TestCrewOverLocalStore(CrewContract):
    @pytest.fixture
    def crew_store(self, tmp_path):
        return str(tmp_path / "crew-store")
