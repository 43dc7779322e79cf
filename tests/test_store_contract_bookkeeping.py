"""A correct store that keeps private bookkeeping objects of its own passes the store contract.

§3.3 lets a backend keep private dot-name objects beside the keys, provided ``list`` hides them
and ``delete_prefix`` removes them. :class:`IndexedStore` is crew-local's ``LocalStore`` plus a
private journal, ``.index``, in every folder it writes into, as a store that keeps an index or a
lock per folder would. Before issue #24 the suite compared the backend's whole listing with what
the test wrote, and failed this store in five places: ``test_list_orders_keys_by_code_point``,
``test_list_hides_private_dot_names``, ``test_delete_removes_and_ignores_missing_keys`` and
``test_delete_prefix_removes_private_objects_too`` (an ``.index`` in the backend's names), and the
clean-up after ``test_close_is_idempotent_and_keeps_shared_data`` (``.index`` left by a closed store).

The checks that now tolerate a store's own objects must still catch the bugs they guard against:
each broken variant of the store below fails its contract test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from crew_core import KeyNotFoundError, StoreGoneError
from crew_core.plugin import check_key
from crew_core.testing import StoreContract
from crew_local import LocalStore

#: The private journal :class:`IndexedStore` keeps in each folder.
INDEX = ".index"


def files_under(root: Path, prefix: str) -> list[str]:
    """Every file's name under ``root`` that starts with ``prefix``, relative to it, sorted, dot-names included."""
    names = []
    for folder, _, files in os.walk(root):  # nothing when the folder is gone
        relative = os.path.relpath(folder, root).replace(os.sep, "/")
        names += [name if relative == "." else f"{relative}/{name}" for name in files]
    return sorted(name for name in names if name.startswith(prefix))


class IndexedStore(LocalStore):
    """A correct store with private objects of its own: a journal of puts and deletes per folder.

    ``LocalStore.list`` already skips dot-names and its ``delete_prefix`` removes them, journals
    included, so this store meets the contract as it stands.
    """

    index: ClassVar[str] = INDEX  # the journal's name in each folder

    def note(self, key: str, mark: str) -> None:
        """Append ``mark`` and the key's last segment to the journal of the key's folder."""
        folder, _, name = check_key(key).rpartition("/")
        try:
            fd = os.open(os.path.join(self.root, folder, self.index), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except FileNotFoundError:
            return  # the folder is gone, its keys with it: nothing to note
        try:
            os.write(fd, f"{mark}{name}\n".encode())  # one small O_APPEND write: lines never interleave
        finally:
            os.close(fd)

    def put(self, key: str, data: bytes) -> None:
        super().put(key, data)
        self.note(key, "+")

    def put_new(self, key: str, data: bytes) -> bool:
        created = super().put_new(key, data)
        if created:
            self.note(key, "+")
        return created

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            super().delete([key])
            self.note(key, "-")


class Files(StoreContract):
    """The contract with the files under the store's folder as ground truth, read without the store.

    No ``Test`` prefix: pytest collects the subclasses below, not this.
    """

    @pytest.fixture
    def store(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStore]:
        # Some tests rebuild the store from config() in another process, which imports this module.
        monkeypatch.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
        )
        store = IndexedStore(tmp_path / "store")
        yield store
        store.close()

    def raw_put(self, store: LocalStore, key: str, data: bytes) -> None:
        path = store.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def raw_get(self, store: LocalStore, key: str) -> bytes:
        return (store.root / key).read_bytes()

    def raw_list(self, store: LocalStore, prefix: str) -> list[str]:
        return files_under(store.root, prefix)


class TestIndexedStore(Files):
    """The whole contract, on a store whose folders hold its private journals beside the keys."""


# ---------------------------------------------------------------------- broken variants
class LeaksPrivateNames(IndexedStore):
    """Lists every file, its journals and the backend's other dot-names included."""

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        return [name for name in files_under(self.root, prefix) if start_after is None or name > start_after]


class JournalUnderAKeyName(IndexedStore):
    """Names its journals ``_index``, a valid key, and hides that name from ``list``."""

    index = "_index"

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        return [key for key in super().list(prefix, start_after) if key.rpartition("/")[2] != self.index]


class HidesDeletedKeys(IndexedStore):
    """Marks a deleted key in its journal, and hides it, but leaves its object in the backend."""

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.note(key, "-")

    def deleted(self, key: str) -> bool:
        folder, _, name = key.rpartition("/")
        try:
            lines = (self.root / folder / self.index).read_text().splitlines()
        except FileNotFoundError:
            return False
        marks = [line[0] for line in lines if line[1:] == name]
        return bool(marks) and marks[-1] == "-"

    def get(self, key: str) -> bytes:
        if self.deleted(check_key(key)):
            raise KeyNotFoundError(f"{key!r} was deleted")
        return super().get(key)

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        return [key for key in super().list(prefix, start_after) if not self.deleted(key)]


class DeletesOnlyWhatItKnows(IndexedStore):
    """``delete_prefix`` deletes the keys and its own journals, not the backend's other private objects."""

    def delete_prefix(self, prefix: str) -> None:
        self.delete(self.list(prefix))
        for name in files_under(self.root, prefix):
            if name.rpartition("/")[2] == self.index:
                os.unlink(self.root / name)


class KeepsItsJournals(IndexedStore):
    """``delete_prefix`` deletes every file under the prefix but its own journals."""

    def delete_prefix(self, prefix: str) -> None:
        for name in files_under(self.root, prefix):
            if name.rpartition("/")[2] != self.index:
                os.unlink(self.root / name)


class DeletesPastThePrefix(IndexedStore):
    """``delete_prefix('x/')`` deletes whatever starts with ``x``, folder ``xz`` included."""

    def delete_prefix(self, prefix: str) -> None:
        super().delete_prefix(prefix.rstrip("/"))


class WipesTheFolderOnClose(IndexedStore):
    """Removes its folder on ``close()``, as if it had made it, though other parties share it."""

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.root, ignore_errors=True)


class WritesAJournalOnClose(IndexedStore):
    """Writes a journal of its own as it closes (each time: the same file, so harmless twice)."""

    closing_note = ".closed"

    def close(self) -> None:
        super().close()
        (self.root / self.closing_note).write_bytes(b"closed\n")


class WritesAKeyOnClose(WritesAJournalOnClose):
    """Writes its closing note under a key's name, where the crew's keys live."""

    closing_note = "closed"


def run_contract_test(name: str, store_class: type[IndexedStore], folder: Path) -> None:
    """Run the contract test ``name`` and the suite's clean-up, as pytest would, on a fresh store."""
    contract = Files()
    store = store_class(folder)
    try:
        getattr(contract, name)(store=store)
        contract.clean_up(store)
    finally:
        store.close()


CASES = [
    ("test_list_hides_private_dot_names", LeaksPrivateNames, AssertionError, r"list\('p/'\): got .*\.index"),
    ("test_list_orders_keys_by_code_point", LeaksPrivateNames, AssertionError, r"list\(''\): got \['-z', '\.index'"),
    ("test_list_orders_keys_by_code_point", JournalUnderAKeyName, AssertionError, r"names that are keys: .*'_index'"),
    ("test_delete_removes_and_ignores_missing_keys", HidesDeletedKeys, AssertionError, r"got \['d/1', 'd/2'\]"),
    ("test_delete_prefix_removes_private_objects_too", DeletesOnlyWhatItKnows, AssertionError, r"got \['x/\.hidden/z'"),
    ("test_delete_prefix_removes_private_objects_too", KeepsItsJournals, AssertionError, r"got \['x/\.index'"),
    ("test_delete_prefix_removes_private_objects_too", DeletesPastThePrefix, AssertionError, r"outside 'x/': got"),
    ("test_close_is_idempotent_and_keeps_shared_data", WipesTheFolderOnClose, StoreGoneError, "is gone"),
    ("test_close_is_idempotent_and_keeps_shared_data", WritesAKeyOnClose, AssertionError, r"got \['closed'\]"),
]


@pytest.mark.parametrize(
    ("test_name", "broken", "error", "message"), CASES, ids=[f"{case[0][5:]}-{case[1].__name__}" for case in CASES]
)
def test_the_contract_still_fails_a_store_with_the_bug(
    tmp_path: Path, test_name: str, broken: type[IndexedStore], error: type[Exception], message: str
) -> None:
    run_contract_test(test_name, IndexedStore, tmp_path / "correct")  # the harness passes a correct store
    with pytest.raises(error, match=message):
        run_contract_test(test_name, broken, tmp_path / "broken")


def test_a_store_may_write_private_objects_as_it_closes(tmp_path: Path) -> None:
    """The clean-up after a closed store wants no key left, and leaves the store's own objects be."""
    run_contract_test("test_close_is_idempotent_and_keeps_shared_data", WritesAJournalOnClose, tmp_path)
    assert files_under(tmp_path, "") == [".closed"]
