"""A named crew's key on this machine (``CREW_SECRET``, or a key file of this user's) and the record
of the runs closed here.

Both live under ``$XDG_STATE_HOME/crew/`` (else ``~/.local/state/crew/``): ``keys/<digest>`` holds
the key of one named crew in one store, ``closed/<digest>`` the nonces of its runs closed here.
A key file signs tasks that run as this user, so it is used only if it is a regular file of this
user's, mode 600, in folders that only this user (or root) can write: another local user who
could plant it, or rename one in, would sign tasks of their own. Folders crew makes are made
with mode 700, one at a time, whatever the umask.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from pathlib import Path

from crew_core.errors import CrewError
from crew_core.plugin.secret_files import check_private_file, check_private_folder
from crew_core.wire.signing import SECRET_ENV, new_secret, secret_from

log = logging.getLogger("crew")

#: The latest runs of a named crew whose nonces the closed-runs record keeps.
CLOSED_RUNS_KEPT = 100


def state_folder() -> Path:
    """``$XDG_STATE_HOME/crew``, else ``~/.local/state/crew``: this user's crew state on this machine."""
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "crew"


def secret_for(store_description: str, name: str) -> bytes:
    """The secret of a named crew: ``CREW_SECRET`` if set, else a key file of this user's.

    The secret never goes through the store, so a controller resuming a crew on another machine
    needs ``CREW_SECRET`` (hex) set to the same value as the first one's. A key file that another
    user could have planted or swapped is refused with a :class:`CrewError` naming it and why.
    """
    if os.environ.get(SECRET_ENV):
        try:
            return secret_from()
        except RuntimeError as exc:
            raise CrewError(str(exc)) from None
    path = _key_path(store_description, name)
    _private_folder(path.parent, name)
    try:
        return _read_key(path, name)
    except FileNotFoundError:
        pass
    secret = new_secret()
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secret.hex())
        # Whole or not at all: a controller opening the crew at the same instant must never read
        # a key file that is still empty.
        os.link(temp, path)
    except FileExistsError:  # another process made it first: use theirs
        return _read_key(path, name)
    except OSError as exc:
        raise CrewError(f"cannot keep the key of crew {name!r} at {path}: {exc}") from exc
    finally:
        temp.unlink(missing_ok=True)
    return secret


def _read_key(path: Path, name: str) -> bytes:
    """The key in ``path`` once it passed the checks; FileNotFoundError if there is none."""
    try:
        check_private_file(path, f"refusing the key file of crew {name!r}")
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        raise
    except PermissionError as exc:
        raise CrewError(
            f"{exc}. A key file must be your own, of mode 600, in folders only you can write: another"
            f" local user may have planted it. Remove it if you did not make it (a new key is made), fix"
            f" its owner or mode, or set {SECRET_ENV}"
        ) from None
    except (OSError, ValueError) as exc:
        raise CrewError(f"cannot read the key of crew {name!r} at {path}: {exc}") from exc


def _private_folder(folder: Path, name: str) -> None:
    """Make ``folder`` if it is missing (each missing level with mode 700, whatever the umask) and
    refuse it unless only this user (or root) can write it and every folder above it."""
    missing = []
    for place in [folder, *folder.parents]:
        if place.exists():
            break
        missing.append(place)
    what = f"refusing the state of crew {name!r} in {folder}"
    try:
        if missing:  # nothing is made where another user could swap it
            check_private_folder(missing[-1].parent, what)
        for place in reversed(missing):
            try:
                place.mkdir(mode=0o700)
            except FileExistsError:  # made meanwhile (by another controller): checked below
                pass
        check_private_folder(folder, what)
    except PermissionError as exc:
        raise CrewError(
            f"{exc}: another local user could plant or swap the crew's key there. Make it writable by you only"
            f" (chmod go-w), point XDG_STATE_HOME at a private folder, or set {SECRET_ENV}"
        ) from None
    except OSError as exc:
        raise CrewError(f"cannot keep the state of crew {name!r} in {folder}: {exc}") from exc


def _key_path(store_description: str, name: str) -> Path:
    """This user's key file for a named crew in a store."""
    return state_folder() / "keys" / hashlib.sha256(f"{store_description}\0{name}".encode()).hexdigest()[:32]


def forget_secret(store_description: str, name: str) -> None:
    """Remove the key file of a named crew that has ended."""
    try:
        _key_path(store_description, name).unlink()
    except OSError:
        pass


def _closed_runs_path(store_description: str, name: str) -> Path:
    """This user's record of the runs of a named crew closed on this machine (their nonces)."""
    key = _key_path(store_description, name)
    return key.parent.parent / "closed" / key.name


def run_closed(store_description: str, name: str, nonce: bytes) -> None:
    """Note that this run of a named crew ended here, so that a copy of it restored later is refused.

    A store writer who saved every object of a run could put them all back after it ended: each
    checks, since it is that run's own. Only state outside the store can tell (the latest
    :data:`CLOSED_RUNS_KEPT` runs). ``close()`` and ``crew stop`` call it.
    """
    path = _closed_runs_path(store_description, name)
    try:
        _private_folder(path.parent, name)
        earlier = path.read_text().split() if path.exists() else []
        if nonce.hex() in earlier:
            return
        temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join([*earlier[-(CLOSED_RUNS_KEPT - 1) :], nonce.hex()]) + "\n")
        os.replace(temp, path)  # whole: a reader never sees half a record
    except (OSError, CrewError) as exc:
        log.warning("cannot note that crew %r was closed (a copy of this run restored later would not be"
                    " refused): %s", name, exc)  # fmt: skip


def check_not_closed(store_description: str, name: str, nonce: bytes) -> None:
    """Refuse a run of a named crew that ended on this machine: its objects were restored from a copy."""
    path = _closed_runs_path(store_description, name)
    if path.parent.exists():  # a record in a folder others can write may have lost the run's line
        _private_folder(path.parent, name)
    try:
        closed = path.read_text().split()
    except OSError:
        return
    if nonce.hex() in closed:
        raise CrewError(
            f"crew {name!r} in {store_description} holds a run that was closed on this machine: its objects"
            " were put back from a copy. Remove them with `crew stop` (nothing of that run is used)"
        )
