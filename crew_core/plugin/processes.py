"""Local processes: whether one still runs (a worker watching its controller, ``crew stop``, tests),
and which run below one (what a job started)."""

from __future__ import annotations

import contextlib
import os
import signal


def process_alive(pid: int) -> bool:
    """True while process ``pid`` exists and has not exited (a zombie waiting to be reaped has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    try:  # a zombie has exited and only waits to be reaped (Linux tells us so)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc``): with its pid, it
    names one process, where a pid alone may since have been given to another. None if unknown
    (the process has ended, or this is not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rpartition(b")")[2].split()[19])  # field 22, starttime
    except (OSError, ValueError, IndexError):
        return None


def same_process_alive(pid: int, start: int | None) -> bool:
    """True while process ``pid`` runs and is the one that started at ``start`` (from
    :func:`process_start`; None: any process of that pid). When the start cannot be read, a live
    pid counts as the same process: taking a live process for dead is the mistake to avoid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:  # one read: state and start time
            fields = stat.read().rpartition(b")")[2].split()
        if fields[0] == b"Z":
            return False  # a zombie has exited and only waits to be reaped
        return start is None or int(fields[19]) == start
    except FileNotFoundError:
        return False if os.path.isdir("/proc/self") else process_alive(pid)  # no /proc: not Linux
    except (OSError, ValueError, IndexError):  # unreadable: ask the kernel
        return process_alive(pid)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children first (Linux ``/proc``; empty elsewhere)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as handle:
                    below = [int(child) for child in handle.read().split()]
            except OSError:
                continue
            found += below
            queue += below
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL process ``pid`` and every process below it (found first: once ``pid`` is dead its
    children are reparented and no longer show under it). Processes already gone are skipped."""
    for target in (pid, *descendants(pid)):
        with contextlib.suppress(OSError):
            os.kill(target, signal.SIGKILL)


def own_processes() -> dict[int, list[str]]:
    """``{pid: argv}`` of every live process of this user (Linux ``/proc``; empty elsewhere)."""
    found: dict[int, list[str]] = {}
    uid = os.getuid()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().decode(errors="replace").split("\0")
        except OSError:  # it ended while we looked
            continue
        if argv and argv[-1] == "":
            argv.pop()
        if argv and process_alive(int(entry)):
            found[int(entry)] = argv
    return found


def environment_variable(pid: int, name: str) -> str | None:
    """The value ``name`` had in process ``pid``'s environment when it started (Linux ``/proc``;
    readable for this user's own processes), or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            entries = handle.read().split(b"\0")
    except OSError:
        return None
    prefix = name.encode() + b"="
    for entry in entries:
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None
