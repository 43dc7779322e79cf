"""The key layout and object encodings that controller and workers share through a store.

Every object has exactly one writer:

``<crew>/workers/<name>/<incarnation>/``
    ``tasks/<seq>``    a batch of jobs, written by the controller (seq is 1, 2, 3, ... per incarnation)
    ``tasks/stop``     the controller's request to stop (sorts after every numbered task)
    ``results/<seq>``  the results of ``tasks/<seq>``, written by the worker
    ``heartbeat``      overwritten by the worker every few seconds: a counter that moves while alive
    ``exit``           written by the worker as it leaves: why, and the last task it processed

A worker lists ``tasks/`` starting after the last task it processed, so each poll is one listing.
The controller deletes a task and its result once the result is delivered.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

from .errors import CorruptObjectError

VERSION = 1
STOP = "stop"
_SEQ_DIGITS = 12


def worker_prefix(crew_id: str, name: str, incarnation: int) -> str:
    """Key prefix of one launch ("incarnation") of a worker."""
    return f"{crew_id}/workers/{name}/{incarnation}/"


def task_key(prefix: str, seq: int) -> str:
    return f"{prefix}tasks/{seq:0{_SEQ_DIGITS}d}"


def result_key(prefix: str, seq: int) -> str:
    return f"{prefix}results/{seq:0{_SEQ_DIGITS}d}"


def stop_key(prefix: str) -> str:
    return f"{prefix}tasks/{STOP}"


def heartbeat_key(prefix: str) -> str:
    return f"{prefix}heartbeat"


def exit_key(prefix: str) -> str:
    return f"{prefix}exit"


def seq_of(key: str) -> int | None:
    """The sequence number at the end of a task or result key, or None (``stop``, junk)."""
    tail = key.rpartition("/")[2]
    return int(tail) if tail.isdigit() else None


# Channels are shaped like keys under the crew's prefix, so a store that keeps something per
# channel (the local store's named pipes) can keep it beside the keys and clean both together.
def controller_channel(crew_id: str) -> str:
    """Notification channel on which workers wake the controller."""
    return f"{crew_id}/controller"


def worker_channel(crew_id: str, name: str, incarnation: int) -> str:
    """Notification channel on which the controller wakes one worker incarnation."""
    return f"{worker_prefix(crew_id, name, incarnation)}wake"


# ----------------------------------------------------------------------------- batches of bytes
def encode_batch(items: list[tuple[int, bytes]]) -> bytes:
    """Encode ``[(job_id, payload), ...]``: a batch of tasks or of results."""
    return pickle.dumps((VERSION, items), protocol=5)


def decode_batch(data: bytes, key: str) -> list[tuple[int, bytes]]:
    """Decode :func:`encode_batch`; raise :class:`CorruptObjectError` naming ``key``."""
    try:
        version, items = pickle.loads(data)
        if version != VERSION or not isinstance(items, list):
            raise ValueError(f"unexpected protocol version {version!r}")
        for job_id, payload in items:
            if not isinstance(job_id, int) or not isinstance(payload, bytes):
                raise ValueError("batch items must be (int, bytes)")
    except Exception as exc:
        raise CorruptObjectError(
            f"store object {key!r} is corrupt ({type(exc).__name__}: {exc}); the jobs it held will be retried"
        ) from exc
    return items


def encode_json(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def decode_json(data: bytes, key: str) -> dict[str, Any]:
    try:
        record = json.loads(data)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except Exception as exc:
        raise CorruptObjectError(f"store object {key!r} is corrupt: {exc}") from exc
    return record
