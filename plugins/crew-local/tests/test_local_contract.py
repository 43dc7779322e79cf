"""crew-local runs the contract suites of crew_core.testing against itself."""

from __future__ import annotations

import os

import pytest

from crew_core.testing import CrewContract, StoreContract, WorkerContract
from crew_local import LocalStore
from crew_local.client_filtered import ClientFilteredLocalStore


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


class TestClientFilteredLocalStore(LocalBackend, StoreContract):
    """The listings of a backend that cannot list after a key keep the contract."""

    @pytest.fixture
    def store(self, tmp_path):
        store = ClientFilteredLocalStore(tmp_path / "store")
        yield store
        store.close()


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


_POOL_CONTROLLER = """
import sys, time
from crew_core import Crew
from crew_core.testing import jobs
crew = Crew(store=sys.argv[1], worker_classes=["executor"], heartbeat_interval=0.2)
crew.recruit(workers=1)
crew.send(jobs.double, args=(1,))
assert crew.receive(timeout=60).value == 2
print("ready", flush=True)
time.sleep(600)
"""


def test_an_executor_workers_own_pool_ends_with_its_killed_controller(tmp_path):
    """Its pool's process, forkserver and resource tracker outlived a controller killed with
    SIGKILL, for ever: nobody would shut that pool down (found by the worker suite's leak check)."""
    import subprocess
    import sys

    psutil = pytest.importorskip("psutil")
    controller = subprocess.Popen([sys.executable, "-c", _POOL_CONTROLLER, str(tmp_path / "store")],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert controller.stdout.readline().strip() == "ready"
        helpers = psutil.Process(controller.pid).children(recursive=True)
        assert helpers, "the executor worker's pool runs in processes of its own"
    finally:
        controller.kill()
        controller.wait()
        controller.stdout.close()
    _, alive = psutil.wait_procs(helpers, timeout=60)
    for process in alive:
        process.kill()
    assert not alive, f"left running after their controller was killed: {[p.cmdline() for p in alive]}"
