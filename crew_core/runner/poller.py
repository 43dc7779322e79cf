"""Polling the inbox: when to read it, carrying out what the engine makes of its mail, deleting what was read.

``Inbox`` (``inbox.py``) does the reading; the engine (``engine/answers.py``) decides what each
answer means. This module decides when to poll: soon after news, backing off while quiet, never
faster than the running jobs can end (a store that rings its doorbell is read when it rings).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from crew_core.backoff import Backoff
from crew_core.errors import CorruptObjectError
from crew_core.runner.inbox import Mail
from crew_core.wire import protocol
from crew_core.wire.protocol import Outcome
from crew_core.wire.serialize import load_outcome

if TYPE_CHECKING:
    from crew_core.runner.manager import Manager

log = logging.getLogger("crew")


class Poller:
    """When one crew reads its inbox, and what it does with the mail (see the module docstring)."""

    def __init__(self, manager: Manager, low: float, high: float) -> None:
        self.m = manager
        self.low, self.high = low, high  # the store's poll interval
        self.backoff = Backoff(low, high)
        self.next_poll = math.inf
        self.polls = 0  # complete polls so far: a worker found ended is settled after the next one

    def poll(self, expected: list[int] | None = None) -> bool:
        """Read the inbox and apply what it holds; True if results came."""
        m = self.m
        with m.lock:
            watermark = min(m.ledger.tasks, default=m.ledger.issued + 1) - 1
        try:
            mail = m.inbox.poll(watermark, expected)
        except Exception as exc:
            log.warning("crew %s cannot read its inbox: %s", m.crew_id, exc)
            m.health.trouble(exc)
            with m.lock:
                self.next_poll = m.clock() + m.health.backoff.next()
            return False
        outcomes = {
            entry.key: {job_id: load_outcome(data, m.raw) for job_id, data in batch.outcomes if data}
            for entry, batch in mail.results
            if not isinstance(batch, CorruptObjectError)
        }  # unpickled outside the lock: values may be large
        with m.lock:
            now = m.clock()
            self._apply_mail(mail, outcomes, now)
            m.inbox.mark(mail)  # only now: a poll cut short is read again, nothing is lost
            if mail.failed:  # some reads failed: read those again soon, and say so once
                log.warning("crew %s cannot read %d answer(s) yet: %s", m.crew_id, len(mail.failed),
                            mail.failed[0])  # fmt: skip
                m.health.trouble(mail.failed[0])
                self.next_poll = now + m.health.backoff.next()
            else:
                m.health.recovered()
                self.polls += 1  # a complete poll: workers found ended before it can be settled
                self._schedule(now, found=bool(mail))
            if mail.results:
                m.changed.notify_all()  # results first; the rest of the step can wait
        return bool(mail.results)

    def _apply_mail(self, mail: Mail, outcomes: dict[str, dict[int, Outcome]], now: float) -> None:
        """The engine decides what the mail means (``engine/answers.py``); this carries out its reading."""
        m = self.m
        reading = m.answers.apply(mail.results, mail.beats, mail.exits, outcomes, now)
        keeper = m.book.keeper
        if keeper is not None:
            for job_id, key in reading.answered:
                keeper.answered(job_id, key)  # kept in the store until the user has it
        for key in reading.read_tasks:
            seq = protocol.seq_of(key)
            if keeper is None or seq is None or not keeper.hold_record(seq, key):  # else it goes with its answer
                m.inbox.discard_task(key)
        for key in reading.drop:
            self._drop_result(key)
        m.carry_out()  # what its beats, exit notes and charges made the engine decide

    def _drop_result(self, key: str) -> None:
        """A named crew keeps results until received (see ``Inbox.mark`` for the others): not this one."""
        keeper = self.m.book.keeper
        if keeper is not None and key not in keeper.left:
            self.m.inbox.discard((key,))

    def _schedule(self, now: float, found: bool) -> None:
        """Poll again soon after news; back off while quiet; never faster than jobs can end."""
        m = self.m
        if found:
            self.backoff.reset()
        if not m.ledger.tasks and not any(record.up for record in m.records.values()):
            self.next_poll = math.inf
            return
        gap = self.backoff.next()
        if m.ledger.tasks and not m.store.notifies:
            floor = self.floor()
            soon = m.dispatcher.next_completion()
            if soon is not None:
                gap = min(gap, max(soon - now, 0.0) + self.low)
            gap = max(gap, floor)
        self.next_poll = now + gap

    def soon(self) -> None:
        """Look at the inbox within the shortest poll interval."""
        self.next_poll = min(self.next_poll, self.m.clock() + self.low)

    def after_write(self) -> None:
        """A task went out: news for the inbox soon, but never poll faster than the jobs running can end."""
        m = self.m
        now = m.clock()
        self.backoff.reset()
        self.next_poll = min(self.next_poll, now + (self.low if m.store.notifies else self.floor()))

    def floor(self) -> float:
        """Half the shortest running job: polling faster would find nothing new on average."""
        shortest = self.m.dispatcher.shortest_running()
        if shortest is None:
            return self.low
        return min(self.high, max(self.low, shortest / 2))

    def flush(self) -> None:
        """Delete answered objects from the inbox (a named crew's receipts stay: ``durable/receipts.py``)."""
        try:
            self.m.inbox.flush()
        except Exception as exc:
            log.warning("crew %s cannot delete answered objects yet: %s", self.m.crew_id, exc)
