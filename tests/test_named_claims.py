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

from crew_core import Crew, CrewError, StoreError
from crew_core.durable.leftovers import find_crews, stop_crew
from crew_core.plugin import Store
from crew_core.testing import jobs
from crew_core.wire import protocol
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


def test_a_thread_opening_the_crew_while_another_closes_it_waits_and_starts_afresh(tmp_path, monkeypatch):
    """Found by review: the opener resumed the closing crew, whose close then deleted its objects."""
    store = str(tmp_path / "store")
    first = Crew(store=store, name="nightly", worker_classes=["subprocess"])
    first.recruit(workers=1)
    assert first.send(jobs.double, args=(1,)) and first.receive(timeout=60).value == 2
    manager_close = type(first._manager).close
    closing = threading.Event()

    def slow_close(manager):
        closing.set()
        time.sleep(1.0)  # a close that takes a while (stopping workers, a big store)
        manager_close(manager)

    monkeypatch.setattr(type(first._manager), "close", slow_close)
    closer = threading.Thread(target=first.close)
    closer.start()
    assert closing.wait(30)
    second = Crew(store=store, name="nightly", worker_classes=["subprocess"])  # waits for the close
    closer.join()
    monkeypatch.setattr(type(first._manager), "close", manager_close)
    try:
        assert not second.resumed  # the first crew was closed: a new run
        second.recruit(workers=1)
        assert second.send(jobs.double, args=(21,)) and second.receive(timeout=60).value == 42
        assert LocalStore(store).list("nightly/nonce")  # its objects were not removed by the other's close
    finally:
        second.close()


class OpensWhenTheLeaseGoes(LocalStore):
    """When the closing crew deletes its lease, a controller on another host claims the crew and
    writes its first objects (that is when one may: no lease, and the closing one's claim is old)."""

    def delete(self, keys):
        keys = list(keys)
        super().delete(keys)
        if "nightly/lease" in keys:
            self.put("nightly/claim/0000000002", b"{}")
            self.put("nightly/nonce", b"theirs")
            self.put("nightly/lease", b"theirs")


def test_removing_a_named_crew_spares_a_controller_that_opens_it_meanwhile(tmp_path):
    from crew_core.durable.claim import remove_crew

    store = OpensWhenTheLeaseGoes(tmp_path / "store")
    for key in ("nightly/claim/0000000001", "nightly/lease", "nightly/nonce", "nightly/journal/1", "nightly/roster/w"):
        store.put(key, b"ours")
    remove_crew(store, "nightly")
    assert {key: store.get(key) for key in store.list("")} == {
        "nightly/claim/0000000002": b"{}", "nightly/lease": b"theirs", "nightly/nonce": b"theirs"}  # fmt: skip
    plain = LocalStore(tmp_path / "plain")
    for key in ("nightly/claim/0000000001", "nightly/lease", "nightly/nonce", "nightly/journal/1"):
        plain.put(key, b"ours")
    remove_crew(plain, "nightly")
    assert plain.list("") == []  # nobody opened it: everything goes


def test_a_closed_run_put_back_from_a_copy_is_refused(tmp_path, monkeypatch):
    """Found by review: with one CREW_SECRET for every run, a store writer who saved a whole run
    could put it back after it ended, and its stored results (a cancel) came back as tonight's."""
    import shutil

    monkeypatch.setenv("CREW_SECRET", "ab" * 32)
    store = tmp_path / "store"
    crew = Crew(store=str(store), name="nightly", worker_classes=["subprocess"])
    crew.recruit(workers=1)
    job = crew.send(jobs.sleep_then, args=(600, "never"))
    crew.cancel(job)  # a result the controller made, stored
    shutil.copytree(store, tmp_path / "saved", ignore=shutil.ignore_patterns(".*"))  # what the attacker keeps
    crew.close()
    shutil.rmtree(store)
    shutil.copytree(tmp_path / "saved", store)
    os.chmod(store, 0o700)
    with pytest.raises(CrewError, match="put back from a copy"):
        Crew(store=str(store), name="nightly", worker_classes=["subprocess"])
