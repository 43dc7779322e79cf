"""A launch's initializer (``recruit(initializer=, initargs=)``): run once, before its first job.

The controller stores ``(initializer, initargs)`` pickled as one of the crew's data objects,
signed like everything the crew writes, and names its digest on the launch's command line
(``WorkerSettings.initializer``). A failure, to load it or in the call, is returned as its
traceback: the worker then leaves with the exit note ``INIT_FAILED`` and runs nothing.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from crew_core.wire import protocol
from crew_core.wire.serialize import digest as content_digest


def load_initializer(get: Callable[[str], bytes], crew: str, digest: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """``(initializer, initargs)`` from the data object ``digest``, read with ``get`` (a signed
    read that rides out store outages); raises if it is gone, altered or cannot be unpickled."""
    key = protocol.data_key(crew, digest)
    data = get(key)  # signed by the crew: checked before it is unpickled
    if content_digest(data) != digest:
        raise ValueError(f"store object {key!r} does not match its digest: it was altered")
    import cloudpickle

    try:
        initializer, initargs = cloudpickle.loads(data)
    except Exception as exc:
        raise RuntimeError(f"the initializer cannot be unpickled on this worker: {exc}") from exc
    return initializer, tuple(initargs)


def run_initializer(get: Callable[[str], bytes], crew: str, digest: str) -> str | None:
    """Load (see :func:`load_initializer`) and call the initializer; its traceback if it failed.

    ``SystemExit`` counts as a failure; the worker's own termination (another ``BaseException``)
    passes through.
    """
    try:
        initializer, initargs = load_initializer(get, crew, digest)
    except Exception as exc:
        return "".join(traceback.format_exception(exc))
    try:
        initializer(*initargs)
    except (Exception, SystemExit) as exc:
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None  # from the initializer's own frame
        return "".join(traceback.format_exception(type(exc), exc, tb))
    return None
