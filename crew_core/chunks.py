"""The job that runs a chunk of ``CrewExecutor.map``'s calls on a worker.

It imports nothing: pickled by reference, a function of
``crew_core.api`` would make each worker import the controller's side (about 50 ms) before its
first chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def call_chunk(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    """Runs on a worker: one job for ``chunksize`` calls, their values in order."""
    return [fn(*call) for call in chunk]
