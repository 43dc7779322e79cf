"""The controller's side of ``<crew>/inbox/``: one listing finds every new result, beat and exit.

Keys are read once, then kept in a trash that is deleted in batches (one request per 1,000 keys
on S3), so a poll costs one listing whatever the number of workers, plus one read per new result
or exit note. Results are listed after a watermark: every task below it has been answered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from . import protocol
from .errors import CorruptObjectError, KeyNotFoundError
from .protocol import ExitNote, InboxEntry, ResultBatch
from .store import Store

log = logging.getLogger("crew")

#: Delete the trash once it holds this many keys...
TRASH_KEYS = 1000
#: ... or once its oldest key has waited this many seconds.
TRASH_SECONDS = 2.0


@dataclass
class Mail:
    """What one poll of the inbox found."""

    results: list[tuple[InboxEntry, ResultBatch | CorruptObjectError]] = field(default_factory=list)
    beats: list[InboxEntry] = field(default_factory=list)
    exits: list[tuple[InboxEntry, ExitNote | None]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.results or self.beats or self.exits)


class Inbox:
    """Lists, reads and (in batches) deletes what workers leave for the controller."""

    def __init__(self, store: Store, crew_id: str, pool: Executor | None) -> None:
        self.store = store
        self.crew_id = crew_id
        self.prefix = protocol.inbox_prefix(crew_id)
        self.pool = pool  # parallel reads for stores with slow requests
        self._trash: dict[str, None] = {}  # keys read and not yet deleted, in order
        self._trash_since = 0.0

    def poll(self, watermark: int) -> Mail:
        """List past ``watermark`` (every task up to it is answered) and read what is new."""
        start_after = protocol.result_key(self.crew_id, watermark) if watermark else None
        keys = self.store.list(self.prefix, start_after)
        mail = Mail()
        reads: list[InboxEntry] = []
        for key in keys:
            if key in self._trash:
                continue
            entry = protocol.parse_inbox_key(key)
            if entry is None:
                log.warning("ignoring an unknown object in the crew's inbox: %r", key)
            elif entry.kind == "beat":
                mail.beats.append(entry)
            else:
                reads.append(entry)
            self.discard((key,))
        for entry, data in zip(reads, self._read(reads), strict=True):
            if entry.kind == "result":
                if isinstance(data, BaseException):
                    mail.results.append((entry, _as_corrupt(entry, data)))
                else:
                    mail.results.append((entry, _decode(protocol.decode_result, data, entry)))
            else:
                note = None
                if not isinstance(data, BaseException):
                    decoded = _decode(protocol.decode_exit, data, entry)
                    note = None if isinstance(decoded, CorruptObjectError) else decoded
                mail.exits.append((entry, note))
        return mail

    def _read(self, entries: list[InboxEntry]) -> list[bytes | BaseException]:
        def get(entry: InboxEntry) -> bytes | BaseException:
            try:
                return self.store.get(entry.key)
            except (KeyNotFoundError, CorruptObjectError) as exc:
                return exc

        if self.pool is None or len(entries) < 2:
            return [get(entry) for entry in entries]
        return list(self.pool.map(get, entries))

    def discard(self, keys: Iterable[str]) -> None:
        """Keys to delete at the next flush (read results, answered tasks)."""
        if not self._trash:
            self._trash_since = time.monotonic()
        for key in keys:
            self._trash[key] = None

    def flush_due(self, now: float) -> float:
        """When the trash should be deleted next (inf when empty)."""
        if not self._trash:
            return float("inf")
        if len(self._trash) >= TRASH_KEYS:
            return now
        return self._trash_since + TRASH_SECONDS

    def flush(self) -> None:
        """Delete the trash (one batched request per 1,000 keys on S3)."""
        if not self._trash:
            return
        keys = list(self._trash)
        self.store.delete(keys)
        for key in keys:
            self._trash.pop(key, None)


def _as_corrupt(entry: InboxEntry, exc: BaseException) -> CorruptObjectError:
    if isinstance(exc, CorruptObjectError):
        return exc
    return CorruptObjectError(f"store object {entry.key!r} vanished before it was read")


def _decode(decoder: Callable[[bytes, str], Any], data: bytes, entry: InboxEntry) -> Any:
    try:
        return decoder(data, entry.key)
    except CorruptObjectError as exc:
        return exc
