"""Secrets through a file of mode 600: for backends whose own environment is shown to others.

A Slurm job's environment is exported to the job record (``scontrol``, ``sacct --env-vars``); a
backend on a shared file system writes the launch's secrets (:attr:`Launch.secrets`) to a file
only the user can read, in a folder only the user can write, and passes its path in the plain
environment (``CREW_SECRET_FILE``). The worker reads the file at start, checks that it is the
user's own and private, and deletes it: the key then lives only in the worker's memory.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

#: The environment variable that names the file holding a launch's secrets.
SECRET_FILE_ENV = "CREW_SECRET_FILE"


def secrets_folder() -> Path:
    """Where launches' secret files go: ``$XDG_STATE_HOME/crew/launch-secrets`` (else
    ``~/.local/state/crew/launch-secrets``): under the user's home, which a cluster's nodes share."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "crew" / "launch-secrets"


def check_private_folder(folder: Path, what: str) -> None:
    """Refuse ``folder`` unless it and every folder above it are owned by this user or root and
    writable by nobody else (a sticky folder such as ``/tmp`` counts only above the last of ours):
    another local user who can rename entries in one of them can swap the file we trust."""
    folder = folder.absolute()
    uid = os.getuid()
    for place in [folder, *folder.parents]:
        try:
            info = place.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            place = place.resolve()
            info = place.stat()
        if info.st_uid not in (uid, 0):
            raise PermissionError(f"{what}: {place} belongs to another user (uid {info.st_uid})")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
            raise PermissionError(f"{what}: others can write {place} (mode {stat.S_IMODE(info.st_mode):o})")


def check_private_file(path: Path, what: str) -> os.stat_result:
    """Refuse ``path`` unless it is a regular file of this user's that nobody else can read or write."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise PermissionError(f"{what}: {path} is not a regular file")
    if info.st_uid != os.getuid():
        raise PermissionError(f"{what}: {path} belongs to another user (uid {info.st_uid})")
    if info.st_mode & 0o077:
        raise PermissionError(f"{what}: others can read or write {path} (mode {stat.S_IMODE(info.st_mode):o}, not 600)")
    check_private_folder(path.parent, what)
    return info


def write_secret_file(values: Mapping[str, str], folder: Path | None = None) -> Path:
    """Write ``values`` (a launch's :attr:`~crew_core.plugin.Launch.secrets`) to a new file of mode
    600 in ``folder`` (default :func:`secrets_folder`, made with mode 700); return its path."""
    folder = secrets_folder() if folder is None else folder
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private_folder(folder, "cannot keep a launch's secret there")
    path = folder / f"launch-{secrets.token_hex(12)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(dict(values), handle)
    return path


def read_secret_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """The secrets in a file :func:`write_secret_file` wrote, after checking that it is private;
    the file is deleted (a launch reads its secrets once)."""
    path = Path(path)
    what = f"refusing the launch's secret file (${SECRET_FILE_ENV})"
    try:
        check_private_file(path, what)
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{what}: {exc}") from None
    finally:
        remove_secret_file(path)
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise RuntimeError(f"{what}: {path} does not hold a launch's secrets")
    return values


def remove_secret_file(path: str | os.PathLike[str]) -> None:
    """Delete a launch's secret file if it is still there (the backend's cleanup, once the launch ended)."""
    try:
        os.unlink(path)
    except OSError:
        pass
