"""The crew's loop: what one step does, and the drivers that run it.

Each step: apply what the backend pool reported, accept new jobs, plan (dispatcher), write the
outbox and start launches, poll the inbox if due (always after a worker was found ended, so its
last results count), then housekeeping: renew the lease, settle dead workers, kill hung ones,
restart, ask backends, delete what was read.

Three drivers run the same step, one at a time (``io``, the loop's lock on store I/O, keeps the
writes in order): the manager thread (:meth:`Loop.run`); a user's thread waiting in ``receive()``
on a store whose requests take microseconds (:meth:`Loop.drive`), which saves two thread
hand-offs per round trip; and the simulator (:meth:`Loop.step`), with no thread at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from crew_core.backoff import Backoff
from crew_core.runner.signals import interpreter_exiting, uninterrupted

if TYPE_CHECKING:
    from crew_core.runner.manager import Manager

log = logging.getLogger("crew")

#: The manager never sleeps longer than this, whatever its deadlines say.
MAX_SLEEP = 1.0
#: While a user's thread drives the loop, the manager thread checks this often whether it still does.
PARK = 0.05


class Loop:
    """One crew's loop and its drivers (see the module docstring)."""

    def __init__(self, manager: Manager, inline: bool) -> None:
        self.m = manager
        #: Requests take microseconds (``request_concurrency == 1``): users' threads may do the I/O.
        self.inline = inline
        self.io = threading.Lock()  # one thread does the store I/O at a time: writes stay in order
        self.io_holder: int | None = None  # the thread that holds self.io, if any
        self.user_turn = -float("inf")  # when a user's thread last ran (or asked to run) the loop
        self.parked = threading.Condition(manager.lock)
        self.step_failures = Backoff(0.05, 5.0)  # a step that raised (a bug, not the store): report, pause
        self.housekeeping_due = False
        self.wake_pending = False
        self.stopping = False
        self.thread = threading.Thread(target=self.run, name=f"crew-manager-{manager.crew_id}", daemon=True)

    def nudge(self) -> None:
        """Wake the loop for news, once until its next step."""
        if not self.wake_pending:  # set after the news: a wake-up is never lost
            self.wake_pending = True
            self.m.wake()

    def user_driving(self) -> bool:
        """A user's thread waiting in receive() runs the loop (or asked to, within PARK seconds)."""
        return self.inline and self.m.clock() - self.user_turn < PARK

    def write_here(self, write: Callable[[], None]) -> bool:
        """Run ``write`` in the calling thread if requests take microseconds and no other thread
        does the store I/O now; False if it did not."""
        if not (self.inline and self.io.acquire(blocking=False)):
            return False
        try:
            with uninterrupted():
                write()
        finally:
            self.io.release()
        return True

    # ------------------------------------------------------------------ the drivers
    def run(self) -> None:
        """The manager thread's body."""
        m = self.m
        try:
            self._loop()
        except BaseException:  # not even SystemExit may end the crew's loop unnoticed
            if self.stopping or interpreter_exiting():
                return  # closed under it, or the interpreter is exiting: its pools are gone
            log.exception("crew %s: its loop ended", m.crew_id)
            raise

    def _loop(self) -> None:
        m = self.m
        while not self.stopping:
            if self.user_driving():
                with m.lock:
                    self.parked.wait(PARK)
                m.hand_over()
                continue
            if not self.io.acquire(timeout=PARK):
                continue
            self.io_holder = threading.get_ident()
            try:
                if not self.user_driving():
                    self._turn(MAX_SLEEP)
            finally:
                self.io_holder = None
                self.io.release()
            m.hand_over()

    def step(self, rung: bool = False) -> None:
        """One turn of the loop in the calling thread, without waiting (the simulator's driver)."""
        if self.m.gone is not None:
            self._step_gone()
        else:
            if self.housekeeping_due:
                self.housekeeping()
            self._step_io(rung)
        self.m.hand_over()

    def drive(self, limit: float) -> None:
        """Called by a user's thread that would otherwise block: run the loop here for a while.

        On a store whose requests take microseconds this saves two thread hand-offs per round
        trip (the manager's and back); elsewhere, and while another thread drives, just wait.
        """
        m = self.m
        if not self.inline or self.stopping or not m.drive_from_user_threads:
            with m.lock:
                m.changed.wait(limit)
            return
        self.user_turn = m.clock()  # before trying: the manager thread parks
        limit = min(limit, PARK / 2)  # turn often enough that the manager stays parked
        if self.io.acquire(blocking=False):
            self.io_holder = threading.get_ident()
            try:
                self._turn(limit, hurry=True)
            finally:
                self.io_holder = None
                self.io.release()
            m.hand_over()
            return
        if self.io_holder == self.thread.ident:
            m.wake()  # the manager thread sits in a long wait: it steps once more and parks
        with m.lock:
            m.changed.wait(limit)

    def _turn(self, limit: float, hurry: bool = False) -> None:
        """One turn of the loop (holding ``self.io``): wait for a wake-up or a deadline, then step."""
        m = self.m
        if m.gone is not None:
            self._turn_gone(limit)
            return
        if self.housekeeping_due:  # left over by a hurried turn: done while workers work
            with uninterrupted():
                self.housekeeping()
        with m.lock:
            timeout = self._next_deadline(m.clock()) - m.clock()
        try:
            rung = m.store.wait(m.channel, min(max(timeout, 0.0), limit))
        except Exception as exc:  # the store broke under the doorbell: keep polling slowly
            log.warning("crew %s cannot wait for wake-ups: %s", m.crew_id, exc)
            time.sleep(min(limit, m.health.backoff.next()))
            rung = False
        if self.stopping:
            return
        try:
            with uninterrupted():  # a step cut in half by Ctrl-C would lose jobs: it finishes first
                self._step_io(rung, hurry=hurry)
            self.step_failures.reset()
        except Exception as exc:  # never die: report, pause, go on (an interrupt goes to the user)
            log.exception("crew %s: a step of the crew's loop failed", m.crew_id)
            m.report(exc)
            time.sleep(min(limit, self.step_failures.next()))

    def _turn_gone(self, limit: float) -> None:
        """A turn once the store is gone for good: no store I/O, which could only fail. Backend
        reports are still applied (``close()`` waits for starts in flight), and jobs sent meanwhile
        are taken in so that their futures, like every other, end with the store's error."""
        m = self.m
        self._step_gone()
        with m.lock:
            if not m.pool.events and not m.incoming and not self.stopping:
                m.changed.wait(limit)  # no doorbell rings any more

    def _step_gone(self) -> None:
        m = self.m
        assert m.gone is not None
        m.fail_claims(m.gone, heard=False)
        with m.lock:
            m.pool.apply_events(m.clock())

    # ------------------------------------------------------------------ the step
    def write_out(self) -> None:
        """Write the outbox and start the launches planned so far (holding ``self.io``)."""
        m = self.m
        if m.gone is not None:  # nothing can be written, and a worker launched now could never get a task
            with m.lock:
                launches = m.pool.take_planned()
                for items in launches.values():  # planned in the turn that found the store gone: refused
                    m.supervisor.launched([(r, r.incarnation) for r, _ in items], m.gone, m.clock())
                m.carry_out()
            return
        with m.lock:
            m.carry_out()  # the engine's last orders go out with this write
            outbox = m.outbox.take(m.clock()) if m.outbox.items else []  # none after a failed write, a while
            launches = m.pool.take_planned() if m.pool.planned else {}
        if launches:
            m.pool.start(launches)
        m.book.write_out()
        if outbox:
            m.outbox.write(outbox)

    def _step_io(self, rung: bool, hurry: bool = False) -> None:
        """New work out, then the inbox, then housekeeping.

        ``hurry`` (a user's thread waiting for a result) leaves the housekeeping for the start of
        its next turn, once the result is in the user's hands.
        """
        m = self.m
        self.wake_pending = False
        now = m.clock()
        news = m.orders or m.pool.events or m.incoming or m.outbox.items or m.pool.planned or m.ledger.unsaved
        if news or m.book.receipts_due():
            with m.lock:
                m.pool.apply_events(now)
                m._accept()
                m.plan(now)
            self.write_out()  # new work goes out before the inbox is read
        with m.lock:
            rang = rung and m.store.notifies and bool(m.ledger.tasks)  # else: a send rang
            scheduled = now >= m.poller.next_poll or any(record.down_pending for record in m.records.values())
            poll = rang or scheduled
            # A worker rang about one of a few tasks: read their answers without listing first (the
            # listing, for beats and exit notes too, comes at the next poll).
            expected = list(m.ledger.tasks) if rang and len(m.ledger.tasks) <= 4 else None
        if poll and m.poller.poll(expected) and hurry:
            self.housekeeping_due = True
            return
        self.housekeeping()

    def housekeeping(self) -> None:
        """Renew the lease, settle dead workers, kill hung ones, restart, ask backends, plan, delete trash."""
        m = self.m
        self.housekeeping_due = False
        m.book.renew_lease_if_due()
        with m.lock:
            now = m.clock()
            for record in m.records.values():
                if record.down_pending and record.down_poll < m.poller.polls:  # its last results are in
                    m.supervisor.down(record, now)
            doomed = m.supervisor.check(now)
            for record in m.supervisor.restarts_due(now):
                for item in m.supervisor.restart(record, now):
                    m.pool.plan(type(item[0].backend), [item])
            statuses = m.supervisor.due_status_checks(now)
            suspects = m.supervisor.due_presence_checks(now)
            m.plan(now)
            m.changed.notify_all()
        for record in doomed:
            m.pool.kill(record)
        for cls, group in statuses:
            m.pool.check_status(cls, group)
        if suspects:
            m.outbox.check_presence(suspects)
        self.write_out()
        now = m.clock()
        if m.inbox.flush_due(now) <= now:
            m.poller.flush()

    def _next_deadline(self, now: float) -> float:
        m = self.m
        retry_at = m.health.write_retry_at
        if m.orders or m.incoming or m.pool.events or m.pool.planned or (m.outbox.items and now >= retry_at):
            return now
        if (m.book.receipts_due() or m.ledger.unsaved) and now >= retry_at:
            return now
        deadline = min(
            m.poller.next_poll,
            m.book.lease_due,
            m.supervisor.next_deadline(now),
            m.dispatcher.next_deadline(now),
            m.inbox.flush_due(now),
        )
        if (m.ledger.backlog or m.outbox.items or m.ledger.unsaved) and retry_at > now:
            deadline = min(deadline, retry_at)
        return deadline
