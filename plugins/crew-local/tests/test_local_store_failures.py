"""The local store's own failures: folders others could write, a deleted folder, a failed write."""

from __future__ import annotations

import os
import shutil

import pytest

from crew_core import Crew, StoreError, StoreGoneError
from crew_core.testing import jobs
from crew_local import LocalStore


def test_a_folder_other_users_can_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # world-writable, no sticky bit
    with pytest.raises(StoreError, match=r"inside .*shared, which is writable by other users.*chmod go-w"):
        LocalStore(shared / "store")
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    store.chmod(0o770)
    with pytest.raises(StoreError, match=r"store folder .*store is writable by other users"):
        LocalStore(store)
    with pytest.raises(StoreError, match="writable by other users"):
        Crew(store=str(store))
    assert not (shared / "store").exists()  # refused before anything was created


def test_a_sticky_parent_such_as_tmp_is_fine(tmp_path):
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    LocalStore(sticky / "store").close()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_folder_of_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 12345, 12345)
    with pytest.raises(StoreError, match=r"belongs to another user \(uid 12345\)"):
        LocalStore(theirs)
    with pytest.raises(StoreError, match=r"inside .*theirs, which belongs to another user"):
        LocalStore(theirs / "mine")


def test_a_deleted_store_folder_is_an_error_not_silence(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put("a/b", b"1")
    shutil.rmtree(tmp_path / "store")
    with pytest.raises(StoreGoneError, match="is gone"):  # gone for good, not down for a while
        store.list("a/")
    with pytest.raises(StoreGoneError, match="is gone"):
        store.get("a/b")
    with pytest.raises(StoreGoneError, match="is gone"):
        store.put("a/c", b"2")
    with pytest.raises(StoreGoneError, match="is gone"):
        LocalStore(**store.config())  # as a worker builds it
    assert not (tmp_path / "store").exists()  # not silently recreated
    store.close()


def test_a_crew_whose_store_folder_is_deleted_says_so(tmp_path):
    with Crew(store=str(tmp_path / "store"), worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        crew.send(jobs.double, args=(1,))
        assert crew.receive(timeout=60).value == 2
        crew.send(jobs.sleep_then, args=(5,))
        shutil.rmtree(tmp_path / "store")
        with pytest.raises(StoreError, match="is gone"):
            crew.receive(timeout=60)


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put("k/one", b"1")

    real_write = os.write

    def full_disk(fd, data):  # as on a full disk
        raise OSError(28, "No space left on device")

    os.write = full_disk
    try:
        with pytest.raises(StoreError, match=r"cannot write .*k/two: No space left on device \(errno 28\)"):
            store.put("k/two", b"x" * 100)
    finally:
        os.write = real_write
    assert sorted(os.listdir(tmp_path / "store" / "k")) == ["one"]  # no .tmp left behind
    store.close()


def test_a_failed_put_new_leaves_no_temporary_file(tmp_path, monkeypatch):
    store = LocalStore(tmp_path / "store")
    store.put("k/one", b"1")

    def full_disk(fd, data):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", full_disk)
        with pytest.raises(StoreError, match=r"cannot write .*k/two: No space left on device \(errno 28\)"):
            store.put_new("k/two", b"x" * 100)

    def no_hard_links(source, target):  # as on a file system without them
        raise OSError(1, "Operation not permitted")

    with monkeypatch.context() as patch:
        patch.setattr(os, "link", no_hard_links)
        with pytest.raises(StoreError, match=r"cannot write .*k/three: Operation not permitted \(errno 1\)"):
            store.put_new("k/three", b"3")
    assert sorted(os.listdir(tmp_path / "store" / "k")) == ["one"]  # no .tmp left behind
    assert store.put_new("k/one", b"other") is False
    assert sorted(os.listdir(tmp_path / "store" / "k")) == ["one"] and store.get("k/one") == b"1"
    shutil.rmtree(tmp_path / "store")
    with pytest.raises(StoreError, match="is gone"):
        store.put_new("k/four", b"4")
    assert not (tmp_path / "store").exists()  # not silently recreated
    store.close()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/proc/1/crew-store", "cannot create the store directory"),  # a folder no folder can be made in
        (b"/tmp/crew-\xff\xfe".decode("utf-8", "surrogateescape"), "not valid UTF-8"),
    ],
    ids=["proc", "not-utf8"],
)
def test_a_store_path_that_cannot_be_a_store_is_a_clear_error(path, message):
    """Found by a newcomer's trial: these raised RecursionError and UnicodeEncodeError."""
    from crew_core import StoreError

    with pytest.raises(StoreError, match=message):
        LocalStore(path)
