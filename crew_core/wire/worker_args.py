"""A worker's command line (``crew worker ...``): what a launch tells the process it starts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crew_core.settings import DEFAULTS
from crew_core.wire import records
from crew_core.wire.keys import worker_prefix

__all__ = [
    "WorkerSettings",
]


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker needs, as passed on its command line (encoded and parsed here only)."""

    store: dict[str, Any]
    crew: str
    name: str
    incarnation: int
    timeout: float | None = None
    heartbeat: float = 2.0
    lease_timeout: float = DEFAULTS["lease_timeout"]
    parent_pid: int | None = None
    capture: bool = True  # jobs' output is captured and sent back with their results
    tasks_max: int | None = None  # leave after this many jobs
    seconds_wall: float | None = None  # leave after this many seconds (between jobs)
    inner: dict[str, Any] | None = None  # a forwarder: the inner crew it runs (see inner.py)
    task_key: str = ""  # the public half of the crew's signing key (hex): no secret
    tasks_mac: bool = False  # its tasks are signed with its launch key (it runs beside the controller)
    # Digest of the data object ``<crew>/data/<digest>`` holding the pickled (initializer, initargs)
    # that the launch runs before its first job ("": none).
    initializer: str = ""

    @property
    def prefix(self) -> str:
        return worker_prefix(self.crew, self.name, self.incarnation)

    def to_args(self) -> tuple[str, ...]:
        """The arguments of ``python -m crew_core worker``."""
        args = [
            "--store", json.dumps(self.store, separators=(",", ":")),
            "--crew", self.crew,
            "--name", self.name,
            "--incarnation", str(self.incarnation),
            "--heartbeat", repr(float(self.heartbeat)),
            "--lease-timeout", repr(float(self.lease_timeout)),
            "--protocol", str(records.PROTOCOL),
        ]  # fmt: skip
        if self.timeout is not None:
            args += ["--timeout", repr(float(self.timeout))]
        if self.parent_pid is not None:
            args += ["--parent-pid", str(self.parent_pid)]
        if not self.capture:
            args += ["--no-capture"]
        if self.tasks_max is not None:
            args += ["--tasks-max", str(self.tasks_max)]
        if self.seconds_wall is not None:
            args += ["--seconds-wall", repr(float(self.seconds_wall))]
        if self.inner is not None:
            args += ["--inner", json.dumps(self.inner, separators=(",", ":"))]
        if self.task_key:
            args += ["--task-key", self.task_key]
        if self.tasks_mac:
            args += ["--tasks-mac"]
        if self.initializer:
            args += ["--initializer", self.initializer]
        return tuple(args)

    @classmethod
    def from_args(cls, args: Sequence[str]) -> WorkerSettings:
        """Parse :meth:`to_args`; exit with status 2 and a message on bad arguments (argparse)."""
        ns = _worker_parser().parse_args(list(args))
        if ns.protocol != records.PROTOCOL:
            from importlib.metadata import version

            raise SystemExit(
                f"crew worker: the controller speaks crew protocol {ns.protocol}, this worker's crew-core"
                f" {version('crew-core')} speaks protocol {records.PROTOCOL};"
                " install the same crew-core version on both"
            )
        return cls(
            store=json.loads(ns.store),
            crew=ns.crew,
            name=ns.name,
            incarnation=ns.incarnation,
            timeout=ns.timeout,
            heartbeat=ns.heartbeat,
            lease_timeout=ns.lease_timeout,
            parent_pid=ns.parent_pid,
            capture=not ns.no_capture,
            tasks_max=ns.tasks_max,
            seconds_wall=ns.seconds_wall,
            inner=json.loads(ns.inner) if ns.inner is not None else None,
            task_key=ns.task_key,
            tasks_mac=ns.tasks_mac,
            initializer=ns.initializer,
        )


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be a positive number of seconds, got {text!r}")
    return value


def _worker_parser() -> Any:
    import argparse  # only workers parse arguments: importing it costs every controller time

    parser = argparse.ArgumentParser(prog="crew worker", description="Run one crew worker (started by a crew).")
    parser.add_argument("--store", required=True, help="store spec as JSON: {name, class, config}")
    parser.add_argument("--crew", required=True, help="id of the crew the worker serves")
    parser.add_argument("--name", required=True, help="worker name")
    parser.add_argument("--incarnation", type=int, required=True, help="launch number")
    parser.add_argument("--timeout", type=_positive, default=None, help="idle timeout in seconds")
    parser.add_argument("--heartbeat", type=_positive, default=2.0, help="seconds between heartbeats")
    parser.add_argument("--lease-timeout", type=_positive, default=DEFAULTS["lease_timeout"],
                        help="leave once the lease stands still")  # fmt: skip
    parser.add_argument("--protocol", type=int, default=records.PROTOCOL, help="protocol version of the controller")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process ends")
    parser.add_argument("--no-capture", action="store_true", help="leave jobs' output on the worker's own")
    parser.add_argument("--tasks-max", type=int, default=None, help="leave after this many jobs")
    parser.add_argument("--seconds-wall", type=_positive, default=None, help="leave after this many seconds")
    parser.add_argument("--inner", default=None, help="forward to an inner crew: its spec as JSON")
    parser.add_argument("--task-key", default="", help="the crew's public key (hex) that signs tasks")
    parser.add_argument("--tasks-mac", action="store_true", help="tasks are signed with the launch's own key")
    parser.add_argument("--initializer", default="", help="digest of the crew data object to run before the first job")
    return parser
