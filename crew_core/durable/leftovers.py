"""Finding the crews a store holds and stopping those whose controller is gone (``crew ps``/``crew stop``).

Two ways reach a crew's workers. Through the backends: the crew notes each place its workers run
(``Worker.place``), and each worker class finds the jobs it launched for the crew there by their
labels (``Worker.find``) and ends them at once (``Worker.end``), including jobs still queued.
Through the store: every worker that has started looks at the crew's lease every
``min(60, lease_timeout / 4)`` seconds and leaves once it has not seen it renewed for
``lease_timeout`` (stopping the job it runs), whether it stood still or vanished: anyone who can
write the store can delete it, so a lease that is gone proves nothing. A worker no backend ended
leaves within that time of the dead controller's last renewal, on any backend.

A crew whose lease was renewed within its ``lease_timeout`` may have a live controller, on this
machine or another: ``crew stop`` refuses it unless forced, since deleting a live crew's objects
stalls it and loses its journal. Stopping a named crew ends its run for good, as ``close()``
does: the run is noted as closed on this machine, so its objects put back later are refused here.

Records are read without their signature checked (the key is not needed to look): what is shown
comes from whoever could write the store. A place is only handed to its worker class, which
treats it as untrusted (it narrows where to look; endpoints and credentials never come from it).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crew_core.durable.claim import remove_crew
from crew_core.durable.journal import read_nonce
from crew_core.durable.keyfile import forget_secret, run_closed
from crew_core.errors import CrewError
from crew_core.plugin.processes import process_alive
from crew_core.plugin.store import Store
from crew_core.plugin.worker import BackendJob, Worker
from crew_core.wire import protocol
from crew_core.wire.signing import unchecked_payload


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
    places: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (worker class, place)
    verdicts: int = 0  # objects of results a named crew's controller made itself (crashes, cancels, ...)

    @property
    def controller_dead_here(self) -> bool:
        """The lease names a process of this machine that has ended: its controller is surely gone."""
        lease = self.lease or {}
        pid = _number(lease.get("pid"))
        if lease.get("host") != socket.gethostname() or not isinstance(pid, int) or not 0 < pid < 2**31:
            return False
        return not process_alive(pid)

    @property
    def controller_alive_here(self) -> bool:
        """The lease names a live process on this machine."""
        lease = self.lease or {}
        pid = _number(lease.get("pid"))
        if lease.get("host") != socket.gethostname() or not isinstance(pid, int) or not 0 < pid < 2**31:
            return False
        return process_alive(pid)

    def controller_may_live(self) -> str | None:
        """Why the crew's controller may still be alive, or None once it surely is not: the lease
        names a live process on this machine, or one elsewhere, and was renewed within its
        ``lease_timeout`` (until then its workers, too, take the controller for alive)."""
        lease = self.lease or {}
        pid = _number(lease.get("pid"))
        if lease.get("host") == socket.gethostname() and isinstance(pid, int) and 0 < pid < 2**31:
            return f"has a live controller here (process {pid}): close it there" if process_alive(pid) else None
        written, timeout = _number(lease.get("written")), _number(lease.get("timeout"))
        if written is None or timeout is None or timeout <= 0:
            return None
        age = time.time() - written
        if age >= timeout:
            return None
        where = f"{lease.get('host', '?')}:{lease.get('pid', '?')}"
        return (
            f"may have a live controller ({where}): its lease was renewed {max(age, 0.0):.0f} s ago, within its"
            f" lease_timeout of {timeout:g} s. Close it where it runs, or try again in {timeout - age:.0f} s"
        )

    def describe(self) -> dict[str, Any]:
        lease = self.lease or {}
        written = _number(lease.get("written"))
        age = time.time() - written if written else None
        return {
            "crew": self.id,
            "named": self.named,
            "controller": f"{lease.get('host', '?')}:{lease.get('pid', '?')}" if lease else None,
            "controller_dead": self.controller_dead_here,  # known here; False: alive, or on another machine
            "lease_age_seconds": None if age is None else round(age, 1),
            "lease_timeout": _number(lease.get("timeout")),
            "workers": [vars(worker) for worker in self.workers],
            "journal_objects": self.journaled,
            "answers_waiting": self.answers,
            "places": [{"worker_class": cls, "place": place} for cls, place in self.places],
            "verdict_objects": self.verdicts,
        }


def _number(value: Any) -> int | float | None:
    """A number from a record anyone could have written, or None (records here are only shown)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return value


def _json(store: Store, key: str) -> dict[str, Any] | None:
    try:
        value = json.loads(unchecked_payload(store.get(key), key))
    except Exception:  # gone, or junk anyone could plant (bad UTF-8, nesting that overflows the parser)
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
    named = any(key.startswith(("journal/", "roster/", "received/", "verdicts/", "claim/")) for key in keys)
    seen = CrewSeen(crew_id, named, _json(store, protocol.lease_key(crew_id)) if "lease" in keys else None)
    workers: dict[tuple[str, int], WorkerSeen] = {}

    def worker(name: str, incarnation: int) -> WorkerSeen:
        return workers.setdefault((name, incarnation), WorkerSeen(name, incarnation))

    for key in keys:
        kind, _, rest = key.partition("/")
        if kind == "journal":
            seen.journaled += 1
        elif kind == "places":
            record = _json(store, protocol.crew_prefix(crew_id) + key) or {}
            cls, place = record.get("worker_class"), record.get("place")
            if isinstance(cls, str) and isinstance(place, dict) and (cls, place) not in seen.places:
                seen.places.append((cls, place))
        elif kind == "verdicts":
            seen.verdicts += 1
        elif kind == "workers":
            parts = rest.split("/")
            if len(parts) == 3 and parts[1].isdigit():
                worker(parts[0], int(parts[1])).tasks += 1
        elif kind == "inbox":
            entry = protocol.parse_inbox_key(protocol.crew_prefix(crew_id) + key)
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


#: Places searched per crew at most: a crew notes one per worker class and location, so more were
#: planted by someone who can write the store, and each search may take a backend's retries.
MAX_PLACES = 16


@dataclass
class BackendSearch:
    """What the worker classes found of one crew on their backends, and what they could not do."""

    jobs: list[BackendJob] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line each: a class missing, a backend down
    ended: int = 0  # jobs ended by end_backend_jobs


def find_backend_jobs(crew: CrewSeen, store: Store, worker_class: Callable[[str], type[Worker]]) -> BackendSearch:
    """Ask each worker class, at each place the crew noted, for the jobs it launched *from this
    store* (by its label: its id and this store's location) still queued or running."""
    search = BackendSearch()
    label = protocol.crew_label(store.describe(), crew.id)
    if len(crew.places) > MAX_PLACES:
        search.problems.append(f"the crew notes {len(crew.places)} places; only the first {MAX_PLACES} were searched"
                               " (a crew of this tool notes one per worker class and location)")  # fmt: skip
    for name, place in crew.places[:MAX_PLACES]:
        try:
            cls = worker_class(name)
        except Exception as exc:
            search.problems.append(f"worker class {name!r} is not installed here ({exc}): its jobs at {place} were"
                                   " not looked for")  # fmt: skip
            continue
        try:
            search.jobs += cls.find(label, place)
        except Exception as exc:
            search.problems.append(f"{name}: cannot look for the crew's jobs at {place}: {exc}")
    return search


def end_backend_jobs(search: BackendSearch, worker_class: Callable[[str], type[Worker]]) -> None:
    """End what :func:`find_backend_jobs` found, one :meth:`Worker.end` call per class and place."""
    groups: dict[tuple[str, str], list[BackendJob]] = {}
    for job in search.jobs:
        groups.setdefault((job.worker_class, json.dumps(dict(job.place), sort_keys=True)), []).append(job)
    for (name, _), jobs in groups.items():
        try:
            worker_class(name).end(jobs)
            search.ended += len(jobs)  # end() raises naming any it could not end
        except Exception as exc:
            search.problems.append(f"{name}: cannot end {', '.join(job.id for job in jobs)}: {exc}")


def forget_launches(crew_id: str, places: list[tuple[str, dict[str, Any]]], store_description: str,
                    worker_class: Callable[[str], type[Worker]], problems: list[str]) -> None:
    """Have each worker class delete what its backend keeps for the crew's ended launches (their
    secrets: :meth:`Worker.forget`) at every place the crew noted; say what failed in ``problems``."""
    label = protocol.crew_label(store_description, crew_id)
    for name, place in places[:MAX_PLACES]:
        try:
            cls = worker_class(name)
        except Exception:
            continue  # find_backend_jobs said so
        try:
            cls.forget(label, place)
        except Exception as exc:
            problems.append(f"{name}: cannot delete what the crew's launches left at {place}: {exc}")


def stop_crew(
    store: Store, crew_id: str, force: bool = False, worker_class: Callable[[str], type[Worker]] | None = None
) -> tuple[CrewSeen, BackendSearch]:
    """End a crew whose controller is gone: its jobs on every backend, then its objects.

    With ``worker_class`` (a name to class lookup), the crew's jobs are found on their backends
    and ended first, queued ones included. A worker not found leaves once the lease has not
    been renewed for its ``lease_timeout``. Refused, unless ``force``, while the controller may
    be alive (:meth:`CrewSeen.controller_may_live`). A named crew's run ends for good, as at
    ``close()``: it is noted as closed on this machine, and its key file here is removed.
    """
    crews = {crew.id: crew for crew in find_crews(store)}
    crew = crews.get(crew_id)
    if crew is None:
        known = ", ".join(sorted(crews)) or "none"
        raise CrewError(f"no crew {crew_id!r} in {store.describe()} (crews there: {known})")
    alive = None if force else crew.controller_may_live()
    if alive is not None:
        raise CrewError(f"crew {crew_id!r} {alive}; or pass --force (a live controller then stalls and loses its"
                        " journal)")  # fmt: skip
    if crew.named:
        try:
            nonce = read_nonce(store, crew_id)
        except CrewError:  # not a run's nonce: there is no run to note
            nonce = None
        if nonce is not None:  # before anything goes: a stop cut short still ends the run here
            run_closed(store.describe(), crew_id, nonce)
    search = BackendSearch()
    if worker_class is not None:
        search = find_backend_jobs(crew, store, worker_class)
        end_backend_jobs(search, worker_class)
        forget_launches(crew.id, crew.places, store.describe(), worker_class, search.problems)
    if crew.named:
        remove_crew(store, crew_id)  # its claims last, as close() does
        forget_secret(store.describe(), crew_id)
    else:
        store.delete_prefix(protocol.crew_prefix(crew_id))
    return crew, search
