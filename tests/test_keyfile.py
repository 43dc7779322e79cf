"""A named crew's key file is used only if another local user can neither have planted it nor swap it.

Issue #20: with ``XDG_STATE_HOME`` (or ``HOME``) in a folder another user can write, that user
planted the key of a crew and signed tasks that ran as its owner. The process runs as root in
CI; "another user" is an unused uid the file or folder is given (root may chown), or this
process's uid made to look like another's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from crew_core import Crew, CrewError
from crew_core.durable import keyfile
from crew_core.durable.journal import secret_for  # where it was: it still imports from there
from crew_local import LocalStore

STORE = "/nowhere/store"  # only named: the key file's name is a digest of the store and the crew
OTHER_UID = 4242  # nobody's


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "home" / "state"))
    monkeypatch.delenv("CREW_SECRET", raising=False)
    yield tmp_path / "home" / "state"
    for folder, _, _ in os.walk(tmp_path):  # a test may leave a folder pytest cannot clean
        os.chmod(folder, 0o700)


def _key_file() -> Path:
    return keyfile._key_path(STORE, "nightly")


def _as_root_give_to_another_user(path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("only root can give a file to another user")
    os.chown(path, OTHER_UID, -1)


def test_a_fresh_machine_gets_private_folders_and_a_key_whatever_the_umask(state: Path) -> None:
    old = os.umask(0o002)  # a user-private-group umask: plain mkdir -p would make group-writable folders
    try:
        key = secret_for(STORE, "nightly")
    finally:
        os.umask(old)
    assert secret_for(STORE, "nightly") == key and len(key) == 32  # read back, checked
    for folder in (state.parent, state, state / "crew", state / "crew" / "keys"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    assert _key_file().stat().st_mode & 0o777 == 0o600


def test_a_key_file_another_user_owns_is_refused() -> None:
    secret_for(STORE, "nightly")
    _as_root_give_to_another_user(_key_file())
    with pytest.raises(CrewError, match=f"{_key_file()} belongs to another user \\(uid {OTHER_UID}\\)"):
        secret_for(STORE, "nightly")


def test_a_key_file_of_another_uid_than_this_process_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    secret_for(STORE, "nightly")
    real = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real + 1)  # the file is now someone else's
    with pytest.raises(CrewError, match=f"belongs to another user \\(uid {real}\\)"):
        secret_for(STORE, "nightly")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_can_read_or_write_is_refused(mode: int) -> None:
    secret_for(STORE, "nightly")
    _key_file().chmod(mode)
    with pytest.raises(CrewError, match=f"others can read or write {_key_file()} \\(mode {mode:o}, not 600\\)"):
        secret_for(STORE, "nightly")


def test_a_key_file_that_is_a_link_is_refused(tmp_path: Path) -> None:
    secret_for(STORE, "nightly")
    planted = tmp_path / "planted"
    planted.write_text("ab" * 32)
    planted.chmod(0o600)
    _key_file().unlink()
    _key_file().symlink_to(planted)
    with pytest.raises(CrewError, match="is not a regular file"):
        secret_for(STORE, "nightly")


@pytest.mark.parametrize("mode", [0o770, 0o777, 0o757])
@pytest.mark.parametrize("which", ["home", "state", "keys"])
def test_a_key_file_in_a_folder_others_can_write_is_refused(state: Path, mode: int, which: str) -> None:
    secret_for(STORE, "nightly")
    folder = {"home": state.parent, "state": state, "keys": state / "crew" / "keys"}[which]
    folder.chmod(mode)
    with pytest.raises(CrewError, match=f"others can write {folder} \\(mode {mode:o}\\)"):
        secret_for(STORE, "nightly")


def test_a_new_key_is_not_made_in_a_folder_others_can_write(state: Path) -> None:
    state.parent.mkdir(mode=0o777)
    state.parent.chmod(0o777)
    with pytest.raises(CrewError, match="chmod go-w"):
        secret_for(STORE, "nightly")
    assert not state.exists()  # nothing was made there


def test_a_key_folder_another_user_owns_is_refused(state: Path) -> None:
    secret_for(STORE, "nightly")
    folder = state / "crew"
    _as_root_give_to_another_user(folder)
    with pytest.raises(CrewError, match=f"{folder} belongs to another user"):
        secret_for(STORE, "nightly")


def test_crew_secret_needs_no_key_file(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state.parent.mkdir(mode=0o777)
    state.parent.chmod(0o777)
    monkeypatch.setenv("CREW_SECRET", "cd" * 32)
    assert secret_for(STORE, "nightly") == bytes.fromhex("cd" * 32)


def test_a_named_crew_refuses_a_planted_key(tmp_path: Path) -> None:
    """Another user, who could write the state folder, planted the key of crew "nightly" (a key
    they know, so that they can sign its tasks): opening the crew says which file and why, and
    writes nothing to the store."""
    store = LocalStore(tmp_path / "store")
    path = keyfile._key_path(store.describe(), "nightly")
    path.parent.mkdir(mode=0o700, parents=True)
    path.write_text("ab" * 32)
    if os.getuid() == 0:
        os.chown(path, OTHER_UID, -1)
        path.chmod(0o600)
    else:
        path.chmod(0o644)  # as a planter's umask leaves it
    with pytest.raises(CrewError, match=f"refusing the key file of crew 'nightly': .*{path}"):
        Crew(store=store, name="nightly")
    assert store.list("") == []
    store.close()


def test_a_closed_runs_record_others_can_write_is_refused(state: Path) -> None:
    """A run's line removed from it by another user would let a copy of that run resume."""
    keyfile.run_closed(STORE, "nightly", b"\1" * 16)
    with pytest.raises(CrewError, match="holds a run that was closed on this machine"):
        keyfile.check_not_closed(STORE, "nightly", b"\1" * 16)
    closed = state / "crew" / "closed"
    assert closed.stat().st_mode & 0o777 == 0o700
    assert next(closed.iterdir()).stat().st_mode & 0o777 == 0o600
    closed.chmod(0o777)
    with pytest.raises(CrewError, match=f"others can write {closed}"):
        keyfile.check_not_closed(STORE, "nightly", b"\2" * 16)
