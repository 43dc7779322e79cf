"""One back-off helper for every wait that grows while nothing happens."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Backoff:
    """Pauses that start at ``low`` and grow by ``factor`` up to ``high`` until :meth:`reset`.

    >>> pause = Backoff(0.05, 0.2)
    >>> [pause.next() for _ in range(4)]
    [0.05, 0.1, 0.2, 0.2]
    """

    __slots__ = ("factor", "high", "low", "pause")

    def __init__(self, low: float, high: float, factor: float = 2.0) -> None:
        if not 0 < low <= high:
            raise ValueError(f"a back-off needs 0 < low <= high, got {low!r}, {high!r}")
        self.low, self.high, self.factor = low, high, factor
        self.pause = low

    def next(self) -> float:
        """The pause to take now; the one after it is longer."""
        pause = self.pause
        self.pause = min(self.pause * self.factor, self.high)
        return pause

    def peek(self) -> float:
        """The pause :meth:`next` would return, without growing it."""
        return self.pause

    def reset(self) -> None:
        """Something happened: start again from the shortest pause."""
        self.pause = self.low


def retry(
    call: Callable[[], T],
    *,
    patience: float,
    retry_on: tuple[type[BaseException], ...],
    give_up_on: tuple[type[BaseException], ...] = (),
    on_first_failure: Callable[[BaseException], None] | None = None,
    pause: Backoff | None = None,
) -> T:
    """Call ``call()`` until it succeeds, retrying ``retry_on`` errors for up to ``patience`` seconds.

    Errors in ``give_up_on`` (checked first) and any other exception propagate at once; the last
    retried error propagates once patience runs out.
    """
    deadline: float | None = None
    while True:
        try:
            return call()
        except give_up_on:
            raise
        except retry_on as exc:
            now = time.monotonic()
            if deadline is None:
                deadline = now + patience
                pause = pause or Backoff(0.05, 5.0)  # made on the first failure: calls that succeed cost nothing
                if on_first_failure is not None:
                    on_first_failure(exc)
            if now >= deadline:
                raise
            time.sleep(min(pause.next(), deadline - now))  # type: ignore[union-attr]
