"""The controller's side of ``<crew>/inbox/``: one listing finds every new result, beat and exit.

A poll costs one listing whatever the number of workers, plus one read per new result, refusal or
exit note. Results are listed after a watermark (every task up to it is answered), so a result below
it is never listed again and need not be deleted one by one: it goes with the crew's objects when
the crew closes. Only keys a listing would show again (beats, exit notes, refusals, results above the
watermark) are deleted, in batches (see ``Store.delete_batch``). Where every key left over costs
each later listing (``delete_batch == 1``: local files; ``Store.lists_from_key`` False: a backend
that lists from the start and filters on the client), every key read is deleted promptly instead,
results and answered task records included, so a listing holds the work in flight plus at most
``delete_batch`` keys or two seconds' worth, however long the crew has run.
A named crew keeps each result until the user has received it (``keep_results``): then the
controller discards it here itself. It also deletes each answered task's record, and before the
answer: a next controller takes a task record without an answer for a task its worker still holds,
so an answer gone first would hand that worker jobs it already gave back (or refused) for good.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from crew_core.errors import CorruptObjectError, KeyNotFoundError
from crew_core.wire import protocol
from crew_core.wire.protocol import ExitNote, InboxEntry, ResultBatch
from crew_core.wire.signing import Sealed

log = logging.getLogger("crew")

#: Delete the trash once its oldest key has waited this many seconds (or it holds the store's
#: ``delete_batch`` keys, or the crew has nothing outstanding).
TRASH_SECONDS = 2.0


@dataclass
class Mail:
    """What one poll of the inbox found."""

    results: list[tuple[InboxEntry, ResultBatch | CorruptObjectError]] = field(default_factory=list)
    beats: list[InboxEntry] = field(default_factory=list)
    exits: list[tuple[InboxEntry, ExitNote | None]] = field(default_factory=list)
    handled: list[InboxEntry | str] = field(default_factory=list)  # to mark read once applied
    failed: list[BaseException] = field(default_factory=list)  # reads to try again at the next poll

    def __bool__(self) -> bool:
        return bool(self.results or self.beats or self.exits)


class Inbox:
    """Lists, reads and (in batches) deletes what workers leave for the controller.

    :meth:`poll` changes nothing: what it found is marked read by :meth:`mark` once the
    controller has applied it, so a poll cut short (a failed read, an exception) loses nothing.
    """

    def __init__(
        self,
        sealed: Sealed,
        crew_id: str,
        pool: Executor | None,
        keep_results: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.sealed = sealed
        self.store = store = sealed.store
        self.crew_id = crew_id
        self.prefix = protocol.inbox_prefix(crew_id)
        self.pool = pool  # parallel reads for stores with slow requests
        self.prompt = store.delete_batch <= 1 or not store.lists_from_key  # leftovers cost every listing
        self.keep_results = keep_results
        self._trash: dict[str, None] = {}  # keys read and not yet deleted, in order
        self._trash_since = 0.0
        self._seen: dict[str, int] = {}  # results read above the watermark: key -> task seq

    def poll(self, watermark: int, expected: list[int] | None = None) -> Mail:
        """List past ``watermark`` (every task up to it is answered) and read what is new.

        ``expected``: a few tasks whose answers probably just arrived (a worker rang): read them
        directly, without the listing, if any is there (a local round trip saves a listing).
        """
        if self._seen:
            self._seen = {key: seq for key, seq in self._seen.items() if seq > watermark}
        if expected:
            mail = self._read_expected(expected)
            if mail.results:
                return mail
        start_after = protocol.inbox_after(self.crew_id, watermark) if watermark else None
        keys = self.store.list(self.prefix, start_after)
        mail = Mail()
        reads: list[InboxEntry] = []
        for key in keys:
            if key in self._trash or key in self._seen:
                continue
            entry = protocol.parse_inbox_key(key)
            if entry is None:
                log.warning("ignoring an unknown object in the crew's inbox: %r", key)
                mail.handled.append(key)
            elif entry.kind == "beat":
                mail.beats.append(entry)
                mail.handled.append(entry)
            else:
                reads.append(entry)
        for entry, data in zip(reads, self._read(reads), strict=True):
            if isinstance(data, BaseException) and not isinstance(data, KeyNotFoundError | CorruptObjectError):
                mail.failed.append(data)  # the store failed us: read it again next time
                continue
            mail.handled.append(entry)
            if entry.kind in ("result", "refused"):
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

    def _read_expected(self, seqs: list[int]) -> Mail:
        mail = Mail()
        entries = [InboxEntry(protocol.result_key(self.crew_id, seq), "result", seq=seq) for seq in seqs]
        entries = [entry for entry in entries if entry.key not in self._trash and entry.key not in self._seen]
        for entry, data in zip(entries, self._read(entries), strict=True):
            if isinstance(data, KeyNotFoundError):
                continue  # not there yet
            if isinstance(data, BaseException) and not isinstance(data, CorruptObjectError):
                mail.failed.append(data)
                continue
            mail.handled.append(entry)
            decoded = _as_corrupt(entry, data) if isinstance(data, BaseException) else None
            mail.results.append((entry, decoded or _decode(protocol.decode_result, data, entry)))  # type: ignore[arg-type]
        return mail

    def mark(self, mail: Mail) -> None:
        """What ``mail`` holds has been applied: never read it again, delete what would be listed again."""
        for item in mail.handled:
            if isinstance(item, str):
                self.discard((item,))
            elif item.kind == "result" and (self.keep_results or not self.prompt):
                self._seen[item.key] = item.seq  # listed again only while the watermark is below it
            else:
                self.discard((item.key,))
        if not self.keep_results and len(self._seen) >= self.store.delete_batch:  # a long job holds the watermark back
            self.discard(self._seen)
            self._seen = {}

    def _read(self, entries: list[InboxEntry]) -> list[bytes | BaseException]:
        def get(entry: InboxEntry) -> bytes | BaseException:
            try:
                return self.sealed.get(entry.key)  # checked before anything is unpickled
            except Exception as exc:
                return exc

        if self.pool is None or len(entries) < 2:
            return [get(entry) for entry in entries]
        return list(self.pool.map(get, entries))

    def discard_task(self, key: str) -> None:
        """An answered task: deleted now where leftovers slow listings or a next controller would
        read it (a named crew), else with its worker's keys."""
        if self.prompt or self.keep_results:
            self.discard((key,))

    def discard(self, keys: Iterable[str]) -> None:
        """Keys to delete at the next flush."""
        if not self._trash:
            self._trash_since = self.clock()
        for key in keys:
            self._trash[key] = None

    def flush_due(self, now: float) -> float:
        """When the trash should be deleted next (inf when empty)."""
        if not self._trash:
            return float("inf")
        if len(self._trash) >= self.store.delete_batch:
            return now
        return self._trash_since + TRASH_SECONDS

    def flush(self) -> list[str]:
        """Delete the trash (one batched request per 1,000 keys on S3); return the keys deleted."""
        if not self._trash:
            return []
        keys = list(self._trash)
        if self.keep_results:  # what is outside the inbox (task records) first, in a request of its own
            first = [key for key in keys if not key.startswith(self.prefix)]
            keys = first or keys  # the answers follow at the next flush, once those are surely gone
        self.store.delete(keys)
        for key in keys:
            self._trash.pop(key, None)
        return keys


def _as_corrupt(entry: InboxEntry, exc: BaseException) -> CorruptObjectError:
    if isinstance(exc, CorruptObjectError):
        return exc
    return CorruptObjectError(f"store object {entry.key!r} vanished before it was read")


def _decode(decoder: Callable[[bytes, str], Any], data: bytes, entry: InboxEntry) -> Any:
    try:
        return decoder(data, entry.key)
    except CorruptObjectError as exc:
        return exc
