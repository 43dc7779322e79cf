"""Temporary local stores (``Crew()`` on the default ``"local"`` store): one folder in RAM each,
``/dev/shm/crew-*``, and the sweeping of those whose controller died.

A controller killed with SIGKILL never removes its folder, and what a RAM folder holds stays until
the machine restarts. So each folder says who uses it: the process that made it writes
``.owner`` (its pid, start time and pid namespace: a pid given since to another process does not
pass for it, and a folder of another namespace's process, in a ``/dev/shm`` shared with a
container, is never taken for dead), and every other process that opens it (the crew's workers)
adds a file ``.users/<pid>-<start>-<namespace>-<random>``. Every ``Crew()`` opened on the
machine, on any store, first sweeps this user's folders whose owner and users have all ended
(:func:`sweep`, through ``Store.sweep_temporary``). A folder without ``.owner`` (being made, or
made by an older crew-local) is never swept, nor one of another user.

Two sweepers at once are safe: a folder is first renamed to a name of the sweeper's own (only one
rename succeeds), then deleted; a sweeper that dies meanwhile leaves a ``.crew-sweeping-*`` folder
that the next sweep removes once that sweeper's process has ended.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crew_core.plugin import TemporaryStore, process_start, same_process_alive

log = logging.getLogger("crew")

PREFIX = "crew-"
OWNER = ".owner"
USERS = ".users"
SWEEPING = ".crew-sweeping-"


def parent() -> str:
    """Where temporary stores go: ``/dev/shm`` (tmpfs: ~10x faster file creation than ext4) if
    this user can write there, else the system's temporary folder."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return os.path.realpath(tempfile.gettempdir())  # as LocalStore resolves its root (macOS: /private/var/...)


def _me() -> tuple[int, int | None]:
    pid = os.getpid()
    return pid, process_start(pid)


@functools.cache
def _pid_namespace() -> int | None:
    """This process's pid namespace (Linux): a pid means a process only within its namespace, and
    a folder in a ``/dev/shm`` shared with a container may be another namespace's."""
    try:
        return int(os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]"))
    except (OSError, ValueError):
        return None


def _elsewhere(namespace: int | None) -> bool:
    """Whether a record's process lives in another pid namespace: its pid says nothing here."""
    return namespace is not None and namespace != _pid_namespace()


def make() -> str:
    """A new temporary store folder (mode 0700), owned by this process."""
    folder = tempfile.mkdtemp(prefix=PREFIX, dir=parent())
    pid, start = _me()
    temp = os.path.join(folder, f"{OWNER}.{pid}.tmp")
    with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        json.dump({"pid": pid, "start": start, "namespace": _pid_namespace()}, handle)
    os.replace(temp, os.path.join(folder, OWNER))  # whole or absent: a sweeper never reads half of it
    return folder


def join(folder: Path) -> str | None:
    """Note this process as a user of ``folder`` if it is a temporary store (a worker opening its
    crew's store); returns the note's path, which :func:`leave` removes."""
    if str(folder.parent) != parent() or not folder.name.startswith(PREFIX):
        return None
    if not os.path.exists(os.path.join(folder, OWNER)):
        return None
    pid, start = _me()
    users = os.path.join(folder, USERS)
    try:
        os.mkdir(users, 0o700)
    except FileExistsError:
        pass
    namespace = _pid_namespace()
    # One note per store object: another store of this process closing leaves this one's in place.
    note = os.path.join(users, f"{pid}-{start if start is not None else 0}-{namespace or 0}-{secrets.token_hex(4)}")
    os.close(os.open(note, os.O_WRONLY | os.O_CREAT, 0o600))
    return note


def leave(note: str | None) -> None:
    """Remove this process's note from a temporary store it used."""
    if note is not None:
        try:
            os.unlink(note)
        except OSError:
            pass


@dataclass(frozen=True)
class _Owner:
    pid: int
    start: int | None
    namespace: int | None = None

    def ended(self, alive: Callable[[int, int | None], bool] = same_process_alive) -> bool:
        """Surely ended: never for a process of another pid namespace, which cannot be looked at here."""
        return not _elsewhere(self.namespace) and not alive(self.pid, self.start)


def _owner(folder: str) -> _Owner | None:
    """The owner ``.owner`` names; None when it is missing or not what :func:`make` writes."""
    try:
        with open(os.path.join(folder, OWNER), "rb") as handle:
            record = json.loads(handle.read(4096))
        pid, start, namespace = record["pid"], record["start"], record.get("namespace")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    numbers = all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (start, namespace))
    if not _pid(pid) or not numbers:
        return None  # not what make() writes: never swept
    return _Owner(pid, start, namespace)


def _pid(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31


def _live_users(folder: str) -> tuple[int, ...]:
    """The processes noted in ``.users`` that still run (the same processes: start times match)."""
    try:
        names = os.listdir(os.path.join(folder, USERS))
    except OSError:
        return ()
    live = []
    for name in names:
        pid, start, namespace = [*name.split("-"), "0", "0"][:3]
        if not (pid.isdigit() and start.isdigit() and namespace.isdigit()):
            continue
        if _elsewhere(int(namespace) or None) or same_process_alive(int(pid), int(start) or None):
            live.append(int(pid))  # a process of another namespace counts as live: it cannot be looked at
    return tuple(sorted(live))


def _mine(entry: os.DirEntry[str], prefix: str) -> bool:
    """``entry`` is a folder named ``prefix...`` that this user owns."""
    if not entry.name.startswith(prefix):
        return False
    try:
        return entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.geteuid()
    except OSError:
        return False


def _listing() -> list[os.DirEntry[str]]:
    """What the parent folder holds (nothing while it does not exist)."""
    try:
        return list(os.scandir(parent()))
    except OSError:
        return []


def stores() -> list[TemporaryStore]:
    """This user's temporary stores here, live and ended (users are looked for in ended ones only)."""
    found = []
    for entry in _listing():
        if not _mine(entry, PREFIX):
            continue
        owner = _owner(entry.path)
        if owner is None:
            continue
        ended = owner.ended()
        found.append(TemporaryStore(entry.path, owner.pid, ended, _live_users(entry.path) if ended else ()))
    return sorted(found, key=lambda store: store.location)


def remove(location: str) -> bool:
    """Remove the temporary store ``location`` if its owner and users have all ended; True if this
    call did (another sweeper may have been first)."""
    folder = os.path.abspath(location)
    if os.path.dirname(folder) != parent() or not os.path.basename(folder).startswith(PREFIX):
        return False
    owner = _owner(folder)
    if owner is None or not owner.ended() or _live_users(folder):
        return False
    pid, start = _me()
    claimed = os.path.join(parent(), f"{SWEEPING}{pid}-{start or 0}-{secrets.token_hex(4)}")
    try:
        os.rename(folder, claimed)  # atomic: of two sweepers, one moves it
    except OSError:
        return False
    shutil.rmtree(claimed, ignore_errors=True)
    return True


def sweep() -> list[str]:
    """Remove every temporary store of this user here whose owner and users have all ended, and
    what sweepers that died midway left; returns the folders removed.

    It runs each time a crew opens, so it reads little: one listing of the parent
    folder, and per folder of this user its ``.owner`` and its owner's ``/proc/<pid>/stat``
    (once per owner); a folder's users are looked at only once its owner has ended.
    """
    alive = functools.cache(same_process_alive)  # many folders of one owner: one look
    removed = []
    for entry in _listing():
        if _mine(entry, PREFIX):
            owner = _owner(entry.path)
            if owner is not None and owner.ended(alive) and remove(entry.path):
                log.info("removed %s, the temporary store of a controller that ended (process %d)", entry.path,
                         owner.pid)  # fmt: skip
                removed.append(entry.path)
        elif _mine(entry, SWEEPING):
            pid, _, rest = entry.name[len(SWEEPING) :].partition("-")
            start = rest.partition("-")[0]
            if pid.isdigit() and start.isdigit() and not same_process_alive(int(pid), int(start) or None):
                shutil.rmtree(entry.path, ignore_errors=True)
    return removed
