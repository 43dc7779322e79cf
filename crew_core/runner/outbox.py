"""The outbox: task and control records on their way to workers' prefixes in the store.

The engine asks for records under the crew's lock (:meth:`Outbox.write_batch`, ``write_control``,
``cleanup``); the loop writes them later, outside the lock: in order for each worker, in parallel
across workers on a store with ``request_concurrency`` above one. What fails is written again
after a pause, unless its worker's launch is over by then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crew_core.engine.ledger import Task
from crew_core.engine.orders import Place
from crew_core.wire import protocol
from crew_core.wire.protocol import Batch, Call, TaskRecord

if TYPE_CHECKING:
    from crew_core.runner.manager import Manager

log = logging.getLogger("crew")


@dataclass(slots=True)
class Write:
    """A task record to write for one worker; writes for one worker happen in order."""

    worker: str
    incarnation: int
    key: str
    channel: str
    record: TaskRecord
    task: Task | None = None


@dataclass(slots=True)
class Cleanup:
    """An incarnation that ended: delete its keys; leave a Stop if it may still be running."""

    worker: str
    prefix: str
    stop: protocol.Stop | None


class Outbox:
    """The records planned and not yet written, and how they are written (see the module docstring)."""

    def __init__(self, manager: Manager) -> None:
        self.m = manager
        self.items: list[Write | Cleanup] = []

    # ------------------------------------------------------------------ asks (under the lock)
    def write_batch(self, place: Place, task: Task) -> None:
        m = self.m
        functions = {job.function: m.ledger.functions[job.function] for job in task.jobs}
        if place.nested:  # a forwarder routes jobs by their tags in its inner crew
            calls = tuple(Call(job.id, job.function, job.args, job.timeout, tuple(job.tags), job.args_key)
                          for job in task.jobs)  # fmt: skip
        else:
            calls = tuple(Call(job.id, job.function, job.args, job.timeout, (), job.args_key) for job in task.jobs)
        self.items.append(
            Write(place.worker, place.incarnation, protocol.task_key(place.prefix, task.seq), place.channel,
                  Batch(task.seq, calls, functions), task)
        )  # fmt: skip
        m.poller.after_write()

    def write_control(self, place: Place, control: protocol.Stop | protocol.Revoke | protocol.Cancel) -> None:
        key = protocol.task_key(place.prefix, control.seq)
        self.items.append(Write(place.worker, place.incarnation, key, place.channel, control))
        self.m.poller.soon()

    def cleanup(self, place: Place, stop: protocol.Stop | None) -> None:
        self.items.append(Cleanup(place.worker, place.prefix, stop))

    # ------------------------------------------------------------------ writing (the loop)
    def take(self, now: float) -> list[Write | Cleanup]:
        """What to write now (under the lock): nothing while the store gets a moment after a failed write."""
        if now < self.m.health.write_retry_at:
            return []
        items, self.items = self.items, []
        return items

    def write(self, items: list[Write | Cleanup]) -> None:
        """Write ``items`` (taken by :meth:`take`), outside the lock."""
        if not items:
            return
        try:
            self._execute(items)
        except BaseException:  # cut short: every record is written later (writing one twice is harmless)
            with self.m.lock:
                self.items[:0] = [i for i in items if i not in self.items and self._still_wanted(i)]
            raise

    def _execute(self, outbox: list[Write | Cleanup]) -> None:
        m = self.m
        groups: dict[str, list[Write | Cleanup]] = {}
        for item in outbox:
            groups.setdefault(item.worker, []).append(item)

        def run(items: list[Write | Cleanup]) -> tuple[list[Write | Cleanup], BaseException | None]:
            for index, item in enumerate(items):
                try:
                    if isinstance(item, Write):
                        m.sealed.put(item.key, protocol.encode_task(item.record))
                        if item.task is not None:
                            item.task.written = True
                        m.store.notify(item.channel)
                    else:
                        self._clean(item.prefix)
                        if item.stop is not None:
                            key = protocol.task_key(item.prefix, item.stop.seq)
                            m.sealed.put(key, protocol.encode_task(item.stop))
                except BaseException as exc:  # whatever it was, what is not written is written later
                    return items[index:], exc
            return [], None

        if m.io_pool is not None and len(groups) > 1:
            outcomes = list(m.io_pool.map(run, groups.values()))
        else:
            outcomes = [run(items) for items in groups.values()]
        failed = [(items, exc) for items, exc in outcomes if exc is not None]
        with m.lock:
            if not failed:
                m.health.recovered()
                return
            # Written again later, not taken back: a put that failed may have been stored (a timeout
            # after the write), and the worker may run it; writing the same record twice is harmless.
            m.health.write_failed()
            retry = [item for items, _ in failed for item in items if self._still_wanted(item)]
            self.items[:0] = retry
            for items, exc in failed:
                log.warning("crew %s: a store write failed (%s); %d record(s) will be written again",
                            m.crew_id, exc, len(items))  # fmt: skip
            errors = [exc for _, exc in failed]
            m.health.trouble(errors[0])
        for exc in errors:
            if not isinstance(exc, Exception):
                raise exc  # an interrupt or an exit: after the records were put back

    def _clean(self, prefix: str) -> None:
        """Delete an ended launch's task records, but those a named crew holds while their answers
        are kept: a next controller trusts an answer only for the jobs its record gave the worker."""
        m = self.m
        keeper = m.book.keeper
        with m.lock:
            held = {key for key in keeper.records.values() if key.startswith(prefix)} if keeper is not None else set()
        if held:
            m.store.delete([key for key in m.store.list(prefix) if key not in held])
        else:
            m.store.delete_prefix(prefix)

    def _still_wanted(self, item: Write | Cleanup) -> bool:
        """Whether a record that failed to be written is still worth writing."""
        if isinstance(item, Cleanup):
            return True
        record = self.m.records.get(item.worker)
        if record is None or not record.up or record.incarnation != item.incarnation:
            return False  # that incarnation is over: its tasks went back to the backlog
        return item.task is None or item.task.seq in self.m.ledger.tasks

    # ------------------------------------------------------------------ records that vanished
    def check_presence(self, suspects: dict[str, list[Task]]) -> None:
        """Long-unanswered tasks whose records left the store (deleted by someone else, lost by
        the store) are never found by their worker: their jobs run again, uncharged."""
        m = self.m
        gone: list[tuple[str, Task]] = []
        for prefix, tasks in suspects.items():
            try:
                present = set(m.store.list(prefix))
            except Exception as exc:  # cannot look now: the next check will
                log.warning("crew %s cannot check its task records under %s: %s", m.crew_id, prefix, exc)
                continue
            gone += [(prefix, task) for task in tasks if protocol.task_key(prefix, task.seq) not in present]
        if not gone:
            return
        with m.lock:
            now = m.clock()
            for prefix, task in gone:
                if m.ledger.close_task(task.seq, now) is None:
                    continue  # answered meanwhile
                log.warning("crew %s: task record %s vanished from the store before worker %r read it;"
                            " its %d job(s) run again", m.crew_id, protocol.task_key(prefix, task.seq),
                            task.worker, len(task.jobs))  # fmt: skip
                m.ledger.requeue(task.jobs)
            m.plan(now)
