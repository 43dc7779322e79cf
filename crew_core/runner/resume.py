"""A named crew's new controller takes over what the last one left (read by ``durable.recover``).

Results that finished meanwhile are delivered, and so are those the last controller made itself
(a crash, a cancel: never run again); jobs an adopted worker still holds stay with it; every other
unreceived job waits in the backlog. Workers come back from the roster: a launch
that left no exit note is adopted (it keeps its queue and is known by its beats from now on),
the others are down and launch when work needs them. A launch that ends with its dead controller
(``Worker.ends_with_controller``) is adopted only to finish what it holds: it is asked to stop
(``Supervisor.adopt``) and launched afresh once it has left.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crew_core.engine.ledger import Job
from crew_core.errors import CrewError
from crew_core.plugin.processes import process_alive
from crew_core.plugin.worker import Worker
from crew_core.runner.manager import Manager
from crew_core.wire import protocol
from crew_core.wire.protocol import RosterEntry
from crew_core.wire.serialize import load_outcome, load_result, to_result

if TYPE_CHECKING:
    from crew_core.durable.journal import Recovery

log = logging.getLogger("crew")


def check_no_other_controller(name: str, recovery: Recovery, open_here: bool) -> None:
    """Refuse to open a named crew whose controller is still alive (two would run jobs twice).

    This sees a controller once it has written its lease; controllers opening the crew at the
    same instant are told apart by their claims (``claim.py``).
    """
    lease = recovery.lease
    if lease is None or not lease.pid:
        return
    if lease.host == socket.gethostname():
        alive = open_here if lease.pid == os.getpid() else process_alive(lease.pid)
        if alive:
            raise CrewError(
                f"crew {name!r} is open in process {lease.pid} on this machine: close it there first"
                " (or end that process; a crashed controller's crew can be opened at once)"
            )
        return
    fresh = 2 * protocol.lease_renewal(lease.timeout) + 5
    age = time.time() - lease.written
    if age < fresh:
        raise CrewError(
            f"crew {name!r} may be open on {lease.host!r} (process {lease.pid}): its lease was renewed"
            f" {max(age, 0):.0f} s ago. If that controller is dead, open the crew again after {fresh - age:.0f} s"
        )


def roster_entry(
    cls: type[Worker],
    tags: frozenset[str],
    timeout: float | None,
    options: dict[str, Any],
    lifetime: tuple[int | None, float | None] = (None, None),
    initializer: str = "",
) -> RosterEntry:
    """What a next controller needs to make the worker again; options JSON cannot carry are left out."""
    kept = {}
    for key, value in options.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            log.warning("worker option %s=%r cannot be kept in the store: a resumed crew makes the worker"
                        " without it", key, value)  # fmt: skip
            continue
        kept[key] = value
    return RosterEntry(cls.worker_class, sorted(tags), timeout, kept, 0, tasks_max=lifetime[0],
                       seconds_wall=lifetime[1], initializer=initializer)  # fmt: skip


def take_over(
    manager: Manager,
    recovery: Recovery,
    make_worker: Callable[[str, RosterEntry], Worker | None],
) -> tuple[list[Worker], int]:
    """Fill the manager (before its loop starts) from ``recovery``; return the workers and the last job id."""
    ledger, keeper = manager.ledger, manager.keeper
    assert keeper is not None
    now = manager.clock()
    workers = []
    adopted: dict[str, int] = {}
    for name, entry in sorted(recovery.roster.items()):
        backend = make_worker(name, entry)
        if backend is None:
            continue
        manager.add_worker(backend, (entry.tasks_max, entry.seconds_wall), entry.initializer)
        manager.rosters[name] = entry
        record = manager.records[name]
        record.incarnation = entry.incarnation
        record.launched = max(entry.incarnation, recovery.launched.get(name, 0))  # a relaunch numbers past it
        record.idle_since = now
        if entry.live and entry.incarnation and (name, entry.incarnation) not in recovery.exited:
            record.prefix = protocol.worker_prefix(manager.crew_id, name, entry.incarnation)
            record.channel = protocol.worker_channel(record.prefix)
            manager.supervisor.adopt(record, entry.incarnation, now)
            record.beat = recovery.beats.get((name, entry.incarnation), 0)  # only a newer beat shows it alive
            adopted[name] = entry.incarnation
        workers.append(backend)

    pending: dict[int, Job] = {}
    needed: dict[str, set[int]] = {}
    for job_id, (saved, key) in sorted(recovery.jobs.items()):
        needed.setdefault(key, set())
        if job_id in recovery.received:
            continue
        needed[key].add(job_id)
        keeper.journaled(job_id, key)
        pending[job_id] = Job(job_id, saved.function, saved.args, frozenset(saved.tags), saved.kind,
                              timeout=saved.timeout, crash_tags=tuple(map(frozenset, saved.crash_tags)),
                              args_key=saved.args_key)  # fmt: skip
    for job_id, (data, worker, key) in recovery.results.items():
        job = pending.pop(job_id)
        result = to_result(job.id, job.tags, 0, load_outcome(data, manager.raw), worker)
        ledger.restore(result)
        keeper.answered(job_id, key)
    for job_id, (tags, data, key) in recovery.verdicts.items():
        del pending[job_id]
        ledger.restore(load_result(job_id, tags, data))
        keeper.answered(job_id, key)
    for name, batches in recovery.tasks.items():
        if name not in adopted:
            continue
        for batch in sorted(batches, key=lambda b: b.seq):
            for call in batch.calls:  # ended by the last controller, maybe before it wrote the Cancel
                if call.job_id in recovery.verdicts:
                    manager.write_control(manager.records[name], protocol.Cancel(ledger.next_seq(), call.job_id))
            jobs = [pending.pop(call.job_id) for call in batch.calls if call.job_id in pending]
            if not jobs:
                continue
            for job in jobs:
                ledger.accept(job, recovery.functions[job.function], queue=False)
            ledger.assign(name, adopted[name], jobs, now, seq=batch.seq)
    for job in pending.values():
        ledger.accept(job, recovery.functions[job.function])
    manager.args.restored(ledger.jobs.values())

    keeper.records.update(recovery.kept_records)  # they go with the last answer to them
    garbage = list(recovery.garbage)
    garbage += [key for key, ids in needed.items() if not ids]  # every job in it was received
    manager.inbox.discard(garbage)
    last = max([recovery.lease.jobs if recovery.lease else 0, *recovery.jobs, *recovery.received], default=0)
    if recovery.corrupt:
        log.warning("crew %s: %d object(s) were not signed with its key and were ignored: %s", manager.crew_id,
                    len(recovery.corrupt), ", ".join(recovery.corrupt[:5]))  # fmt: skip
    return workers, last
