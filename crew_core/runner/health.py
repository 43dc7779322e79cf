"""How the crew's store is doing: one back-off for every failed request, and the outage the user hears of."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from crew_core.backoff import Backoff
from crew_core.errors import StoreGoneError

if TYPE_CHECKING:
    from crew_core.runner.manager import Manager

log = logging.getLogger("crew")


class StoreHealth:
    """One crew's view of its store: whether it fails, how long to wait, when writes may go again.

    Every store request that failed (writes, inbox reads, the lease, the doorbell) draws on one
    back-off: an outage slows them all alike, and any request that succeeds resets it.
    """

    def __init__(self, manager: Manager) -> None:
        self.m = manager
        self.backoff = Backoff(0.05, 5.0)
        self.failing = False  # the user heard of this outage already
        #: After a failed write, nothing is written (or planned) before this time: the store gets a moment.
        self.write_retry_at = 0.0

    def trouble(self, exc: BaseException) -> None:
        """A store request failed: the user hears of it once per outage, not once per retry.

        A store gone for good (:class:`StoreGoneError`) is no outage: nothing in flight can come
        back, so from now on every call that waits or asks raises it (``Manager.check_store``),
        futures end with it, and the loop does no more store I/O.
        """
        m = self.m
        if isinstance(exc, StoreGoneError) and m.gone is None:
            log.error("crew %s: its store is gone for good; no job in flight can come back: %s", m.crew_id, exc)
            with m.lock:
                m.gone = exc
                m.changed.notify_all()
        if not self.failing:
            self.failing = True
            m.report(exc)

    def recovered(self) -> None:
        """A request (a complete poll, a whole outbox) succeeded: the outage is over."""
        self.failing = False
        self.backoff.reset()

    def write_failed(self) -> None:
        """A write failed (under the lock): writes wait a while before the next try."""
        self.write_retry_at = self.m.clock() + self.backoff.next()
