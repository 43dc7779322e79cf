"""The store contract catches realistic store bugs: each broken store here fails its contract test.

Every broken store differs in one way from ``MemoryStore``, a correct store over an in-memory
"backend" that pages its listings as S3 and GCS do. Each case runs one contract test (and the
suite's clean-up) on the correct store, which passes, so the harness is sound; then on the broken
store, which must fail with a message that names the bug.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterable

import pytest

from crew_core.errors import KeyNotFoundError
from crew_core.plugin import Store, check_key, is_key
from crew_core.testing import StoreContract

#: The in-memory backends, by name: object name -> bytes, private dot-names included.
BACKENDS: dict[str, dict[str, bytes]] = {}
EIGHT_MIB = 8 * 1024 * 1024


class Connection:
    """Stands in for an SDK client whose ``close()`` must not be called twice."""

    def __init__(self) -> None:
        self.open = True

    def close(self) -> None:
        if not self.open:
            raise RuntimeError("connection already closed")
        self.open = False


class MemoryStore(Store):
    """A correct store: pages of ``page_size`` names, private names hidden, keys checked."""

    name = "memory"
    atomic_put_new = True
    lock = threading.Lock()  # the backend's: one conditional write at a time

    def __init__(self, backend: str, page_size: int = 1000) -> None:
        self.backend = backend
        self.page_size = page_size
        self.objects = BACKENDS.setdefault(backend, {})
        self.connection = Connection()

    def config(self) -> dict[str, object]:
        return {"backend": self.backend, "page_size": self.page_size}

    def put(self, key: str, data: bytes) -> None:
        self.objects[check_key(key)] = bytes(data)

    def put_new(self, key: str, data: bytes) -> bool:
        with self.lock:
            if check_key(key) in self.objects:
                return False
            self.objects[key] = bytes(data)
            return True

    def get(self, key: str) -> bytes:
        try:
            return self.objects[check_key(key)]
        except KeyError:
            raise KeyNotFoundError(key) from None

    def list_page(self, prefix: str, after: str | None) -> list[str]:
        """One list request: the next ``page_size`` names under ``prefix``, private ones too."""
        names = sorted(n for n in self.objects if n.startswith(prefix) and (after is None or n > after))
        return names[: self.page_size]

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        keys: list[str] = []
        after = start_after
        while True:
            page = self.list_page(prefix, after)
            keys += [name for name in page if is_key(name)]
            if len(page) < self.page_size:
                return keys
            after = page[-1]

    def delete(self, keys: Iterable[str]) -> None:
        for key in [check_key(key) for key in keys]:
            self.objects.pop(key, None)

    def delete_prefix(self, prefix: str) -> None:
        for name in [name for name in self.objects if name.startswith(prefix)]:
            del self.objects[name]

    def close(self) -> None:
        if self.connection.open:
            self.connection.close()


# ---------------------------------------------------------------------- 1. paging
class ReadsOnlyTheFirstPage(MemoryStore):
    """Ignores the continuation token: one request, one page."""

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        return [name for name in self.list_page(prefix, start_after) if is_key(name)]


class StopsAtAPageWithoutKeys(MemoryStore):
    """Takes a page holding only private names for the end of the listing."""

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        keys: list[str] = []
        after = start_after
        while page := self.list_page(prefix, after):
            found = [name for name in page if is_key(name)]
            if not found:
                break
            keys += found
            after = page[-1]
        return keys


# ---------------------------------------------------------------------- 2. what list returns
class ShowsPrivateNames(MemoryStore):
    """Returns every name the backend lists, its private dot-names included."""

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        return sorted(n for n in self.objects if n.startswith(prefix) and (start_after is None or n > start_after))


class SortsIgnoringCase(MemoryStore):
    """Sorts as a person would ('a-b' before 'B')."""

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        return sorted(super().list(prefix, start_after), key=str.lower)


class SortsFolderByFolder(MemoryStore):
    """Sorts as a directory walk does: 'a/b' (inside folder 'a') before 'a-b'."""

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        return sorted(super().list(prefix, start_after), key=lambda key: key.split("/"))


class CachesListings(MemoryStore):
    """Answers every listing it has seen before from memory."""

    def __init__(self, backend: str, page_size: int = 1000) -> None:
        super().__init__(backend, page_size)
        self.cache: dict[tuple[str, str | None], list[str]] = {}

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        if (prefix, start_after) not in self.cache:
            self.cache[prefix, start_after] = super().list(prefix, start_after)
        return list(self.cache[prefix, start_after])


class CachesListingsUntilItWrites(CachesListings):
    """Forgets its cached listings on its own writes, but cannot know of other parties'."""

    def put(self, key: str, data: bytes) -> None:
        self.cache.clear()
        super().put(key, data)

    def delete(self, keys: Iterable[str]) -> None:
        self.cache.clear()
        super().delete(keys)

    def delete_prefix(self, prefix: str) -> None:
        self.cache.clear()
        super().delete_prefix(prefix)


# ---------------------------------------------------------------------- 3. key checks
class PutTrustsKeys(MemoryStore):
    def put(self, key: str, data: bytes) -> None:
        self.objects[key] = bytes(data)


class GetTrustsKeys(MemoryStore):
    """Reads whatever name it is given, private objects included."""

    def get(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise KeyNotFoundError(key) from None


class DeleteTrustsKeys(MemoryStore):
    """Deletes whatever name it is given, private objects included."""

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.objects.pop(key, None)


# ---------------------------------------------------------------------- 4. close
class ClosesTwice(MemoryStore):
    """Closes its client again on a second ``close()``."""

    def close(self) -> None:
        self.connection.close()


# ---------------------------------------------------------------------- 5. large objects
class WritesAtMost8MiB(MemoryStore):
    """Sends the first 8 MiB part of a multipart upload and completes it."""

    def put(self, key: str, data: bytes) -> None:
        super().put(key, data[:EIGHT_MIB])


class ReadsAtMost8MiB(MemoryStore):
    """Reads the response body with one ``read(8 MiB)``."""

    def get(self, key: str) -> bytes:
        return super().get(key)[:EIGHT_MIB]


# ---------------------------------------------------------------------- 6. and 7. cleaning up
class DefaultDeletePrefix(MemoryStore):
    """Keeps the base class's ``delete(list(prefix))``, which cannot see private objects."""

    delete_prefix = Store.delete_prefix


class HidesInsteadOfDeleting(MemoryStore):
    """Marks keys deleted in memory and never deletes them in the backend."""

    def __init__(self, backend: str, page_size: int = 1000) -> None:
        super().__init__(backend, page_size)
        self.deleted: set[str] = set()

    def put(self, key: str, data: bytes) -> None:
        self.deleted.discard(key)
        super().put(key, data)

    def get(self, key: str) -> bytes:
        if key in self.deleted:
            raise KeyNotFoundError(key)
        return super().get(key)

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        return [key for key in super().list(prefix, start_after) if key not in self.deleted]

    def delete(self, keys: Iterable[str]) -> None:
        self.deleted.update(check_key(key) for key in keys)


# ---------------------------------------------------------------------- 8. create-only writes
class PutNewReplaces(MemoryStore):
    """Sends the condition in a header the backend ignores (an S3-compatible service without it)."""

    def put_new(self, key: str, data: bytes) -> bool:
        self.put(key, data)
        return True


class ChecksThenWrites(MemoryStore):
    """Reads, then writes, and says it is atomic: racers that all read before any writes all win.

    The barrier makes deterministic what a slow network does now and then.
    """

    everyone_has_looked = threading.Barrier(StoreContract.racers, timeout=30)

    def put_new(self, key: str, data: bytes) -> bool:
        absent = check_key(key) not in self.objects
        self.everyone_has_looked.wait()
        if absent:
            self.put(key, data)
        return absent


class MemoryContract(StoreContract):
    """The contract, with the in-memory backends as ground truth (no ``Test`` prefix: not collected)."""

    def raw_put(self, store: MemoryStore, key: str, data: bytes) -> None:
        BACKENDS[store.backend][key] = bytes(data)

    def raw_get(self, store: MemoryStore, key: str) -> bytes:
        return BACKENDS[store.backend][key]

    def raw_list(self, store: MemoryStore, prefix: str) -> list[str]:
        return sorted(name for name in BACKENDS[store.backend] if name.startswith(prefix))


def run_contract_test(name: str, store_class: type[MemoryStore]) -> None:
    """Run the contract test ``name``, then the suite's clean-up, as pytest would, on a fresh store."""
    contract = MemoryContract()
    backend = uuid.uuid4().hex
    store = store_class(backend)
    test = getattr(contract, name)
    fixtures: dict[str, object] = {"store": store}
    if "small_page_store" in inspect.signature(test).parameters:
        fixtures["small_page_store"] = store_class(backend, page_size=contract.small_page)
    try:
        test(**fixtures)
        contract.clean_up(store)
    finally:
        BACKENDS.pop(backend, None)


CASES = [
    ("test_list_reads_every_page", ReadsOnlyTheFirstPage, AssertionError, r"list\('many/'\)"),
    ("test_list_reads_every_page", StopsAtAPageWithoutKeys, AssertionError, r"list\('many/'\)"),
    ("test_list_hides_private_dot_names", ShowsPrivateNames, AssertionError, r"list\('p/'\): got .*\.tmp"),
    ("test_list_orders_keys_by_code_point", SortsIgnoringCase, AssertionError, r"list\(''\)"),
    ("test_list_orders_keys_by_code_point", SortsFolderByFolder, AssertionError, r"list\(''\)"),
    ("test_list_is_never_stale", CachesListings, AssertionError, r"after put\('c/1'\)"),
    ("test_list_is_never_stale", CachesListingsUntilItWrites, AssertionError, "after another store's put"),
    ("test_put_rejects_invalid_keys", PutTrustsKeys, AssertionError, r"put\(''\) accepted an invalid key"),
    ("test_get_rejects_invalid_keys", GetTrustsKeys, AssertionError, r"get\(''\) raised KeyNotFoundError"),
    ("test_delete_rejects_invalid_keys", DeleteTrustsKeys, AssertionError, r"delete\(''\) accepted an invalid"),
    ("test_close_is_idempotent_and_keeps_shared_data", ClosesTwice, RuntimeError, "already closed"),
    ("test_large_objects_round_trip", WritesAtMost8MiB, AssertionError, f"{EIGHT_MIB} bytes instead of"),
    ("test_large_objects_round_trip", ReadsAtMost8MiB, AssertionError, f"{EIGHT_MIB} bytes instead of"),
    ("test_delete_prefix_removes_private_objects_too", DefaultDeletePrefix, AssertionError, r"under 'x/' after"),
    ("test_delete_removes_and_ignores_missing_keys", HidesInsteadOfDeleting, AssertionError, "the backend's names"),
    ("test_put_new_leaves_a_present_key_alone", PutNewReplaces, AssertionError, r"put_new\('new/b'\) of a key put"),
    ("test_put_new_lets_one_of_many_threads_create_a_key", ChecksThenWrites, AssertionError, r"True \(\[0, 1,"),
    # 7: a test that leaves private objects behind fails in the clean-up unless delete_prefix("")
    # removes them (the test itself passes on this store).
    ("test_list_hides_private_dot_names", DefaultDeletePrefix, AssertionError, "objects left in the backend"),
]


@pytest.mark.parametrize(
    ("test_name", "broken", "error", "message"), CASES, ids=[f"{case[0][5:]}-{case[1].__name__}" for case in CASES]
)
def test_the_contract_test_fails_on_a_store_with_the_bug(test_name, broken, error, message):
    run_contract_test(test_name, MemoryStore)
    with pytest.raises(error, match=message):
        run_contract_test(test_name, broken)


IN_OTHER_PROCESSES = (
    "test_config_rebuilds_a_store_in_another_process",
    "test_put_new_lets_one_of_many_processes_create_a_key",
)


def test_the_correct_store_passes_the_whole_contract():
    """So that every case above fails because of its bug, not because of the harness."""
    names = [name for name in dir(MemoryContract) if name.startswith("test_")]
    for name in names:
        if name in IN_OTHER_PROCESSES:
            continue  # another process cannot see this process's memory
        try:
            run_contract_test(name, MemoryStore)
        except pytest.skip.Exception:
            assert name == "test_notify_wakes_a_waiter"  # the only optional capability
    assert {case[0] for case in CASES} <= set(names)


def test_pytest_runs_the_clean_up_after_every_contract_test(tmp_path):
    """Under pytest, a local store that leaves its doorbells behind errors in the test's teardown."""
    (tmp_path / "test_wiring.py").write_text(
        textwrap.dedent(
            """
            import os

            import pytest

            from crew_core.plugin import Store
            from crew_core.testing import StoreContract
            from crew_local import LocalStore


            class KeepsDoorbells(LocalStore):
                delete_prefix = Store.delete_prefix  # delete(list(prefix)), and list hides doorbells


            class Local(StoreContract):
                store_class = LocalStore

                @pytest.fixture
                def store(self, tmp_path):
                    store = self.store_class(tmp_path / "store")
                    yield store
                    store.close()

                def raw_list(self, store, prefix):
                    found = [os.path.join(folder, name) for folder, _, names in os.walk(store.root) for name in names]
                    names = sorted(os.path.relpath(path, store.root) for path in found)
                    return [name for name in names if name.startswith(prefix)]


            class TestLocalStore(Local):
                pass


            class TestKeepsDoorbells(Local):
                store_class = KeepsDoorbells
            """
        )
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "wait_without", "test_wiring.py"]
    out = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert re.search(r"\b2 passed, \d+ deselected, 1 error\b", out.stdout), out.stdout + out.stderr
    assert "ERROR at teardown of TestKeepsDoorbells.test_wait_without_notification_returns_false" in out.stdout
    assert "objects left in the backend" in out.stdout and ".quiet.channel.bell" in out.stdout
