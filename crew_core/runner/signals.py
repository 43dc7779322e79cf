"""Ctrl-C and interpreter exit, as the crew's loop must see them.

A step of the loop cut in half by ``KeyboardInterrupt`` would lose jobs (taken from the ledger,
not yet written), so steps run :func:`uninterrupted`: the interrupt is held and delivered when the
step ends. At interpreter exit ``concurrent.futures`` stops every pool's threads under a running
loop; :func:`interpreter_exiting` tells the loop that this, not a bug, is why it failed.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # CPython's C module: typeshed has no stub
import concurrent.futures.thread  # noqa: F401  # registers its exit hook first: ours must be registered after it
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_exiting = False


def _mark_exiting() -> None:
    global _exiting
    _exiting = True


# Runs before concurrent.futures stops every pool's threads at interpreter exit (these hooks run
# last-registered first): a loop that then finds its pools gone ends quietly, and the atexit
# handler in crew.py closes the crew.
threading._register_atexit(_mark_exiting)  # type: ignore[attr-defined]


def interpreter_exiting() -> bool:
    """Whether the interpreter is exiting (its thread pools are being stopped)."""
    return _exiting


# The C function: the signal module's wrapper converts enums and costs 10x as much, per step.
_set_handler = getattr(_signal, "signal", signal.signal)
_MAIN = threading.main_thread()


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block ends, then deliver it as it would have been."""
    if threading.current_thread() is not _MAIN:
        yield  # only the main thread gets KeyboardInterrupt
        return
    caught: list[tuple[int, Any]] = []
    try:
        previous = _set_handler(signal.SIGINT, lambda signum, frame: caught.append((signum, frame)))
    except (ValueError, TypeError):
        yield
        return
    try:
        yield
    finally:
        _set_handler(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(*caught[0])
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt
