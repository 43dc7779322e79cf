"""The key layout of a crew in its store (see ``protocol.py``'s docstring): every key is built here."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

_SEQ_DIGITS = 12
#: Sequence numbers of each controller of a named crew start at ``epoch * EPOCH_SPAN``: a worker
#: adopted from an earlier controller lists its queue after the last key it read, so every new
#: key must sort after every old one.
EPOCH_SPAN = 10**9
_PART_DIGITS = 6

__all__ = [
    "InboxEntry",
    "accepted_key",
    "answer_key",
    "args_key",
    "beat_key",
    "buffer_key",
    "claim_epoch",
    "claim_key",
    "claim_prefix",
    "controller_channel",
    "crew_prefix",
    "data_key",
    "exit_key",
    "inbox_after",
    "inbox_prefix",
    "journal_prefix",
    "lease_key",
    "lease_renewal",
    "nonce_key",
    "numbered_key",
    "parse_inbox_key",
    "place_key",
    "places_prefix",
    "receipt_prefix",
    "refusal_key",
    "result_key",
    "roster_key",
    "roster_prefix",
    "seq_of",
    "task_key",
    "verdict_prefix",
    "worker_channel",
    "worker_prefix",
    "workers_prefix",
]


def worker_prefix(crew_id: str, name: str, incarnation: int) -> str:
    """Key prefix of one launch ("incarnation") of a worker: its task records live here."""
    return f"{crew_id}/workers/{name}/{incarnation}/"


def task_key(prefix: str, seq: int) -> str:
    return f"{prefix}{seq:0{_SEQ_DIGITS}d}"


def seq_of(key: str) -> int | None:
    """The sequence number at the end of a task or result key, or None."""
    tail = key.rpartition("/")[2]
    return int(tail) if tail.isdigit() else None


def inbox_prefix(crew_id: str) -> str:
    """Where workers leave everything for the controller."""
    return f"{crew_id}/inbox/"


def result_key(crew_id: str, seq: int) -> str:
    return f"{crew_id}/inbox/{seq:0{_SEQ_DIGITS}d}"


def answer_key(crew_id: str, seq: int, part: int = 0) -> str:
    """Where the answer to task ``seq`` goes: whole (``part`` 0), or one of its parts (1, 2, ...)."""
    key = result_key(crew_id, seq)
    return f"{key}.{part:0{_PART_DIGITS}d}" if part else key


def inbox_after(crew_id: str, watermark: int) -> str:
    """The ``start_after`` of an inbox listing that skips every answer (and part) up to ``watermark``."""
    return f"{result_key(crew_id, watermark)}.~"  # "~" sorts after the digits of any part


def refusal_key(crew_id: str, name: str, incarnation: int, seq: int, nonce: str) -> str:
    """Where a worker says it refused (or could not find) the record at ``seq`` under its prefix."""
    return f"{crew_id}/inbox/refused.{name}.{incarnation}.{seq:0{_SEQ_DIGITS}d}.{nonce}"


def beat_key(crew_id: str, name: str, incarnation: int, beat: int) -> str:
    return f"{crew_id}/inbox/beat.{name}.{incarnation}.{beat:0{_SEQ_DIGITS}d}"


def exit_key(crew_id: str, name: str, incarnation: int) -> str:
    return f"{crew_id}/inbox/exit.{name}.{incarnation}"


def data_key(crew_id: str, digest: str) -> str:
    return f"{crew_id}/data/{digest}"


def buffer_key(crew_id: str, digest: str, index: int) -> str:
    """Where the ``index``-th out-of-band buffer of the put object ``digest`` lives (``put_objects.py``)."""
    return f"{crew_id}/data/{digest}.{index}"


def args_key(crew_id: str, name: str) -> str:
    """A job's pickled arguments, written apart from its task record (large ones: ``runner/spill.py``)."""
    return f"{crew_id}/args/{name}"


def lease_key(crew_id: str) -> str:
    """The crew's lease, renewed by its controller; workers leave once it stops moving."""
    return f"{crew_id}/lease"


def crew_prefix(crew_id: str) -> str:
    """Everything of one crew lies under this prefix."""
    return f"{crew_id}/"


def journal_prefix(crew_id: str) -> str:
    return f"{crew_id}/journal/"


def numbered_key(prefix: str, seq: int) -> str:
    """A journal, receipt or verdicts object: numbered so that a listing returns them in order."""
    return f"{prefix}{seq:0{_SEQ_DIGITS}d}"


def roster_key(crew_id: str, worker: str) -> str:
    """A named crew's :class:`RosterEntry` for one worker."""
    return f"{roster_prefix(crew_id)}{worker}"


def nonce_key(crew_id: str) -> str:
    """A named crew's run nonce (see ``durable/journal.py``)."""
    return f"{crew_id}/nonce"


def accepted_key(crew_id: str) -> str:
    """Present once a named crew has accepted its first job (an empty object)."""
    return f"{crew_id}/accepted"


def receipt_prefix(crew_id: str) -> str:
    return f"{crew_id}/received/"


def verdict_prefix(crew_id: str) -> str:
    return f"{crew_id}/verdicts/"


def roster_prefix(crew_id: str) -> str:
    return f"{crew_id}/roster/"


def places_prefix(crew_id: str) -> str:
    """Where the crew notes the places its workers run (``Worker.place``), for ``crew stop``."""
    return f"{crew_id}/places/"


def place_key(crew_id: str, worker_class: str, place: dict[str, Any]) -> str:
    """One key per distinct place of a worker class: recruiting there again writes nothing new."""
    digest = hashlib.sha256(json.dumps(place, sort_keys=True).encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in worker_class) or "worker"
    return f"{places_prefix(crew_id)}{safe}.{digest}"


def claim_prefix(crew_id: str) -> str:
    return f"{crew_id}/claim/"


def claim_key(crew_id: str, epoch: int) -> str:
    """The claim of the controller that opens a named crew as its ``epoch``-th."""
    return f"{crew_id}/claim/{epoch:010d}"


def claim_epoch(key: str) -> int | None:
    """The epoch of a claim key, or None for a key that is not one."""
    number = key.rpartition("/")[2]
    return int(number) if len(number) == 10 and number.isdigit() else None


def workers_prefix(crew_id: str) -> str:
    return f"{crew_id}/workers/"


def lease_renewal(lease_timeout: float) -> float:
    """Seconds between renewals of a lease (and between workers' looks at it)."""
    return max(0.05, min(60.0, lease_timeout / 4))


# Channels are shaped like keys under the crew's prefix, so a store that keeps something per
# channel (the local store's named pipes) can keep it beside the keys and clean both together.
def controller_channel(crew_id: str) -> str:
    """Notification channel on which workers (and the user's threads) wake the controller."""
    return f"{crew_id}/controller"


def worker_channel(prefix: str) -> str:
    """Notification channel on which the controller wakes the incarnation at ``prefix``."""
    return f"{prefix}wake"


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """What an inbox key says by its name alone."""

    key: str
    kind: str  # "result", "refused", "beat" or "exit"
    seq: int = 0  # result: the task it answers; refused: the number of the record refused
    part: int = 0  # result: 0 for a whole answer, else the number of this part of it
    worker: str = ""  # refused, beat, exit
    incarnation: int = 0
    beat: int = 0


def parse_inbox_key(key: str) -> InboxEntry | None:
    """Read an inbox key's name; None for a key this protocol does not know."""
    tail = key.rpartition("/")[2]
    if tail.isdigit():
        return InboxEntry(key, "result", seq=int(tail))
    kind, _, rest = tail.partition(".")
    if kind.isdigit() and rest.isdigit():
        return InboxEntry(key, "result", seq=int(kind), part=int(rest))
    try:
        if kind == "beat":
            name, incarnation, beat = rest.rsplit(".", 2)
            return InboxEntry(key, "beat", worker=name, incarnation=int(incarnation), beat=int(beat))
        if kind == "exit":
            name, incarnation = rest.rsplit(".", 1)
            return InboxEntry(key, "exit", worker=name, incarnation=int(incarnation))
        if kind == "refused":
            name, incarnation, seq, _nonce = rest.rsplit(".", 3)
            return InboxEntry(key, "refused", seq=int(seq), worker=name, incarnation=int(incarnation))
    except ValueError:
        return None
    return None
