"""A record planted under one worker's prefix with another worker's task number hides no answer.

Someone who can write the store plants a task record for worker B whose number is the task the
crew gave worker A. B refuses it (it is not signed for that key) and says so; whatever B says must
not take the place of A's answer, whether it comes before A's answer (the controller has judged
it by the time A's arrives) or after it (before the controller has looked). Real worker processes;
the controller's reads of the inbox are held while the test puts the answers in that order.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from crew_core import CorruptObjectError, Crew
from crew_core.testing import jobs, wait_for
from crew_core.wire import protocol
from crew_local import LocalStore


class HeldInbox(LocalStore):
    """A local store whose controller waits to read its inbox while the test holds it.

    Only the controller uses this class: workers rebuild the store by its registered name, as a
    plain :class:`LocalStore`.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.open = threading.Event()
        self.open.set()

    def _wait(self, key: str) -> None:
        if "/inbox/" in key:
            self.open.wait(60)  # never for good: a failing test must still close its crew

    def get(self, key: str) -> bytes:
        self._wait(key)
        return super().get(key)

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        self._wait(prefix)
        return super().list(prefix, start_after)


class HeldInboxBatched(HeldInbox):
    """Deletes what it read in batches, as on S3: answers read above the watermark are remembered."""

    delete_batch = 1000


def _answers(store: LocalStore, crew, seq: int) -> set[str]:
    """Who answered task ``seq``, by what is signed in the store's inbox folder now (read as files)."""
    folder = store.root / crew.id / "inbox"
    found = set()
    for name in os.listdir(folder) if folder.is_dir() else []:
        if name.startswith("."):
            continue  # a file being written
        key = f"{crew.id}/inbox/{name}"
        try:
            answer = protocol.decode_result(crew._manager.sealed.unseal(key, (folder / name).read_bytes()), key)
        except (OSError, CorruptObjectError):
            continue  # gone meanwhile, or not an answer (a beat, an exit note)
        if answer.seq == seq:
            found.add(answer.worker)
    return found


@pytest.mark.parametrize("refusal_first", [True, False], ids=["refusal-then-answer", "answer-then-refusal"])
def test_a_record_planted_with_another_workers_task_number_hides_no_answer(make_crew, tmp_path, refusal_first):
    store = (HeldInboxBatched if refusal_first else HeldInbox)(tmp_path / "store")
    crew = make_crew(store=store)
    crew.recruit(workers=2)
    crew.launch()
    gate, runs = tmp_path / "gate", tmp_path / "runs"
    job = crew.send(jobs.mark_once_open, args=(str(gate), str(runs), "real"))
    manager = crew._manager

    def written_task():
        with manager.lock:
            return next((task for task in manager.ledger.tasks.values() if task.written), None)

    task = wait_for(written_task, what="the job's task record")
    with manager.lock:
        other = next(record for name, record in manager.records.items() if name != task.worker)
    try:
        store.open.clear()
        if not refusal_first:
            gate.touch()
            wait_for(lambda: task.worker in _answers(store, crew, task.seq), what=f"{task.worker}'s answer")
        store.put(protocol.task_key(other.prefix, task.seq), b"planted, not signed by the crew")
        store.notify(protocol.worker_channel(other.prefix))
        wait_for(lambda: other.name in _answers(store, crew, task.seq), what=f"{other.name} to refuse the record")
    finally:
        store.open.set()
    if refusal_first:  # the controller has read what the other worker said before the real answer comes
        with manager.lock:
            polls = manager._polls
        wait_for(lambda: manager._polls >= polls + 2, what="the controller to read its inbox")
        gate.touch()
    result = crew.receive(timeout=10)
    assert result is not None, f"{task.worker}'s answer to task {task.seq} was never read"
    assert (result.id, result.value, result.tries) == (job, "real", 1)
    assert jobs.runs_of(runs) == {"real": 1}
    assert crew.receive(timeout=0) is None
    crew.close()
    store.close()


def test_unsigned_refusals_far_ahead_keep_no_task_number_from_the_crew(tmp_path):
    """Found by review: each unsigned inbox key numbered past the crew's tasks was kept for ever."""
    store = LocalStore(tmp_path / "store")
    with Crew(store=store, worker_classes=["subprocess"]) as crew:
        [worker] = crew.recruit(1)
        crew.send(sum, args=([1, 2],))
        assert crew.receive(timeout=60).value == 3
        inbox = protocol.inbox_prefix(crew.id)
        for i in range(300):  # unsigned, numbered far ahead of the crew's tasks
            store.put(f"{inbox}refused.{worker.name}.1.{10**11 + i:012d}.x", b"junk")
        store.put(f"{inbox}refused.{worker.name}.1.{'9' * 200}.x", b"junk")
        store.put(f"{inbox}{'9' * 200}", b"junk")
        store.notify(protocol.controller_channel(crew.id))
        crew.send(sum, args=([2, 2],))
        result = crew.receive(timeout=60)
        wait_for(lambda: not [key for key in store.list(inbox) if "refused" in key], timeout=60,
                 what="the planted keys to be read and dropped")  # fmt: skip
        assert result.value == 4 and result.tries == 1
        assert not crew._manager.ledger.skipped
    store.close()
