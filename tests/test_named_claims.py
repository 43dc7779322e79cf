"""The claim a controller creates when it opens a named crew: what it refuses, what it lets through.

Controllers racing from many processes, on every store, are in ``CrewContract``; here are the
cases a race would hit only by chance: a claim whose controller died before it wrote a lease, one
that lives, one from another machine, a claim write whose answer was lost, a failed open.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest

from crew_core import Crew, CrewError, Store, StoreError, protocol
from crew_core.leftovers import find_crews, stop_crew
from crew_core.testing import jobs
from crew_local import LocalStore


@pytest.fixture(autouse=True)
def private_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("CREW_SECRET", raising=False)


def _claim(store: LocalStore, epoch: int, *, host: str | None = None, pid: int, age: float = 0.0) -> None:
    """Leave the claim a controller would have made ``age`` seconds ago."""
    record = protocol.ControllerClaim(host or os.uname().nodename, pid, time.time() - age, 900.0, "theirs")
    store.put(protocol.claim_key("nightly", epoch), protocol.encode_json(record))


def _claims(store: LocalStore) -> list[int]:
    return [int(key.rpartition("/")[2]) for key in store.list("nightly/claim/")]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_each_controller_claims_the_next_number_and_close_removes_the_claims(tmp_path):
    store = LocalStore(tmp_path / "store")
    crew = Crew(store=store, name="nightly", worker_classes=["subprocess"])
    crew.recruit(workers=1)
    crew.send(jobs.double, args=(1,))
    assert _claims(store) == [1] and crew._manager.epoch == 1
    crew._leave()  # as if the controller died: the crew waits for the next one
    with Crew(store=store, name="nightly", worker_classes=["subprocess"]) as again:
        assert again.resumed and _claims(store) == [1, 2] and again._manager.epoch == 2
        assert again.receive(timeout=60).value == 2
    assert store.list("") == []
    with Crew(store=store, name="nightly") as fresh:  # everything went: it starts again at 1
        assert not fresh.resumed and _claims(store) == [1]


def test_a_controller_that_died_between_its_claim_and_its_lease_does_not_block_the_crew(tmp_path):
    store = LocalStore(tmp_path / "store")
    _claim(store, 1, pid=_dead_pid())
    with Crew(store=store, name="nightly") as crew:
        assert _claims(store) == [1, 2] and crew._manager.epoch == 2


def test_a_claim_whose_process_lives_refuses_the_open(tmp_path):
    store = LocalStore(tmp_path / "store")
    opening = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        _claim(store, 1, pid=opening.pid)
        refused = rf"another process is opening crew 'nightly' right now \(process {opening.pid} on this machine\)"
        with pytest.raises(CrewError, match=refused):
            Crew(store=store, name="nightly")
    finally:
        opening.communicate()
    assert _claims(store) == [1]  # refused before it changed anything
    with Crew(store=store, name="nightly"):  # that process has ended
        assert _claims(store) == [1, 2]


def test_a_claim_from_another_machine_counts_until_its_controller_should_have_written_a_lease(tmp_path):
    store = LocalStore(tmp_path / "store")
    _claim(store, 1, host="elsewhere", pid=4242, age=5)
    with pytest.raises(CrewError, match=r"right now \(process 4242 on 'elsewhere'\)"):
        Crew(store=store, name="nightly")
    _claim(store, 2, host="elsewhere", pid=4242, age=3600)  # it died an hour ago, before its lease
    with Crew(store=store, name="nightly"):
        assert _claims(store) == [1, 2, 3]


def test_a_claim_that_is_not_a_claim_does_not_block_the_crew(tmp_path, caplog):
    store = LocalStore(tmp_path / "store")
    store.put(protocol.claim_key("nightly", 1), b"{not json")
    with Crew(store=store, name="nightly"):
        assert _claims(store) == [1, 2]
    assert "is not a claim" in caplog.text


class LostAnswers(LocalStore):
    """Creates the key, but the answer is lost and the retry finds the object there: False."""

    def put_new(self, key: str, data: bytes) -> bool:
        super().put_new(key, data)
        return False


def test_a_claim_write_whose_answer_was_lost_is_still_ours(tmp_path):
    with Crew(store=LostAnswers(tmp_path / "store"), name="nightly"):
        pass


class FailsAtTheNonce(LocalStore):
    def put(self, key: str, data: bytes) -> None:
        if key.endswith("/nonce"):
            raise StoreError("the disk is full")
        super().put(key, data)


def test_a_controller_that_fails_to_open_takes_its_claim_back(tmp_path):
    with pytest.raises(StoreError, match="the disk is full"):
        Crew(store=FailsAtTheNonce(tmp_path / "store"), name="nightly")
    store = LocalStore(tmp_path / "store")
    assert _claims(store) == []  # others need not wait for this process to end
    with Crew(store=store, name="nightly") as crew:
        assert crew._manager.epoch == 1


def test_threads_opening_one_crew_at_once_open_it_once(tmp_path):
    store = str(tmp_path / "store")
    barrier = threading.Barrier(4)
    opened: list[Crew] = []
    refused: list[str] = []

    def open_it() -> None:
        barrier.wait(timeout=60)
        try:
            opened.append(Crew(store=store, name="nightly"))
        except CrewError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(opened) == 1 and len(refused) == 3
    assert all(f"is open in process {os.getpid()}" in message for message in refused)
    opened[0].close()


class ReadsThenWrites(LocalStore):
    """A third party's store that keeps the base class's put_new, which is not atomic."""

    put_new = Store.put_new
    atomic_put_new = False


def test_a_store_without_an_atomic_put_new_works_and_says_what_it_cannot_do(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="crew"), Crew(store=ReadsThenWrites(tmp_path / "a"), name="nightly"):
        pass
    assert "ReadsThenWrites cannot create objects atomically" in caplog.text
    store = ReadsThenWrites(tmp_path / "b")
    assert store.put_new("k", b"1") and not store.put_new("k", b"2") and store.get("k") == b"1"


def test_ps_shows_a_claimed_crew_as_named_and_stop_removes_its_claims(tmp_path):
    store = LocalStore(tmp_path / "store")
    crew = Crew(store=store, name="nightly")
    crew._leave()  # dead before it accepted a job: a claim, a nonce and a lease
    [seen] = find_crews(store)
    assert seen.named and seen.describe()["crew"] == "nightly"
    stop_crew(store, "nightly", force=True)  # force: its lease names this process, which lives
    assert store.list("") == []
    assert json.dumps([c.describe() for c in find_crews(store)]) == "[]"
