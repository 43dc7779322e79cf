"""Finding the crews a store holds and stopping those whose controller is gone (``crew ps``/``crew stop``).

This needs no backend: every worker of a crew, on any backend, looks at the crew's lease every
``min(60, lease_timeout / 4)`` seconds and leaves once it is gone (stopping the job it runs), so
deleting a crew's objects ends its workers within that time. Records are read without their
signature checked (the key is not needed to look): what is shown comes from whoever could write
the store, and is only shown.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from . import protocol
from .claim import remove_crew
from .errors import CrewError, KeyNotFoundError
from .processes import process_alive
from .signing import unchecked_payload
from .store import Store


@dataclass
class WorkerSeen:
    """One worker launch as its objects show it."""

    name: str
    incarnation: int
    beats: int = 0  # the highest heartbeat number still in the store
    host: str = ""
    pid: int = 0
    exit: str | None = None  # the exit note's reason, once it left one
    tasks: int = 0  # task records in its queue


@dataclass
class CrewSeen:
    """One crew in a store: its lease, its workers and its pending work."""

    id: str
    named: bool
    lease: dict[str, Any] | None
    workers: list[WorkerSeen] = field(default_factory=list)
    journaled: int = 0  # journal objects of a named crew (batches of accepted jobs)
    answers: int = 0  # results waiting in the inbox

    @property
    def controller_alive_here(self) -> bool:
        """The lease names a live process on this machine."""
        lease = self.lease or {}
        pid = _number(lease.get("pid"))
        if lease.get("host") != socket.gethostname() or not isinstance(pid, int) or not 0 < pid < 2**31:
            return False
        return process_alive(pid)

    def describe(self) -> dict[str, Any]:
        lease = self.lease or {}
        written = _number(lease.get("written"))
        age = time.time() - written if written else None
        return {
            "crew": self.id,
            "named": self.named,
            "controller": f"{lease.get('host', '?')}:{lease.get('pid', '?')}" if lease else None,
            "lease_age_seconds": None if age is None else round(age, 1),
            "lease_timeout": _number(lease.get("timeout")),
            "workers": [vars(worker) for worker in self.workers],
            "journal_objects": self.journaled,
            "answers_waiting": self.answers,
        }


def _number(value: Any) -> int | float | None:
    """A number from a record anyone could have written, or None (records here are only shown)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return value


def _json(store: Store, key: str) -> dict[str, Any] | None:
    try:
        value = json.loads(unchecked_payload(store.get(key)))
    except (KeyNotFoundError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def find_crews(store: Store) -> list[CrewSeen]:
    """Every crew with objects in ``store`` (one listing of the whole store, plus a few reads)."""
    by_crew: dict[str, list[str]] = {}
    for key in store.list(""):
        crew, _, rest = key.partition("/")
        if rest:
            by_crew.setdefault(crew, []).append(rest)
    return [_crew(store, crew, keys) for crew, keys in sorted(by_crew.items())]


def _crew(store: Store, crew_id: str, keys: list[str]) -> CrewSeen:
    named = any(key.startswith(("journal/", "roster/", "received/", "claim/")) for key in keys)
    seen = CrewSeen(crew_id, named, _json(store, protocol.lease_key(crew_id)) if "lease" in keys else None)
    workers: dict[tuple[str, int], WorkerSeen] = {}

    def worker(name: str, incarnation: int) -> WorkerSeen:
        return workers.setdefault((name, incarnation), WorkerSeen(name, incarnation))

    for key in keys:
        kind, _, rest = key.partition("/")
        if kind == "journal":
            seen.journaled += 1
        elif kind == "workers":
            parts = rest.split("/")
            if len(parts) == 3 and parts[1].isdigit():
                worker(parts[0], int(parts[1])).tasks += 1
        elif kind == "inbox":
            entry = protocol.parse_inbox_key(f"{crew_id}/{key}")
            if entry is None:
                continue
            if entry.kind == "result":
                seen.answers += 1
            elif entry.kind == "beat":
                found = worker(entry.worker, entry.incarnation)
                found.beats = max(found.beats, entry.beat)
            else:
                note = _json(store, entry.key) or {}
                worker(entry.worker, entry.incarnation).exit = str(note.get("reason", "?"))
    for found in workers.values():
        if found.beats:
            beat = _json(store, protocol.beat_key(crew_id, found.name, found.incarnation, found.beats)) or {}
            pid = _number(beat.get("pid"))
            found.host, found.pid = str(beat.get("host", "")), pid if isinstance(pid, int) and pid > 0 else 0
    seen.workers = sorted(workers.values(), key=lambda w: (w.name, w.incarnation))
    return seen


def stop_crew(store: Store, crew_id: str, force: bool = False) -> CrewSeen:
    """Delete a crew's objects, which ends its workers on every backend within a lease period.

    Refused while the lease names a live controller on this machine (close it instead), unless
    ``force``.
    """
    crews = {crew.id: crew for crew in find_crews(store)}
    crew = crews.get(crew_id)
    if crew is None:
        known = ", ".join(sorted(crews)) or "none"
        raise CrewError(f"no crew {crew_id!r} in {store.describe()} (crews there: {known})")
    if crew.controller_alive_here and not force:
        raise CrewError(
            f"crew {crew_id!r} has a live controller here (process {crew.lease['pid']}): close it there,"  # type: ignore[index]
            " or pass --force"
        )
    if crew.named:
        remove_crew(store, crew_id)  # its claims last, as close() does
    else:
        store.delete_prefix(f"{crew_id}/")
    return crew
