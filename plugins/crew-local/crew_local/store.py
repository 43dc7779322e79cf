"""A store in a local (or shared) directory: one file per key, written atomically by rename.

Wake-ups are named pipes (FIFOs) beside the keys, named ``.<channel>.bell`` so that listing skips
them and deleting a prefix removes them. A waiter blocks on its pipe and
:meth:`LocalStore.notify` writes one byte into it, so an idle worker sleeps without polling and
still starts a job within microseconds. On a file system shared between machines (NFS, Lustre) a
FIFO only wakes processes on the same machine; the poll fallback covers the rest.
"""

from __future__ import annotations

import builtins
import errno
import itertools
import mmap
import os
import select
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from crew_core.plugin import KeyNotFoundError, Store, StoreError, StoreGoneError, TemporaryStore, check_key

from . import temporary

_counter = itertools.count()
_MAX_BELLS = 64  # open write ends of other parties' pipes kept per store object
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux only
_ABSENT = (FileNotFoundError, IsADirectoryError, NotADirectoryError)  # a key with no object file


def _make_dirs(path: str, root: str | None = None) -> None:
    """``os.makedirs`` with mode 0700 for every level it creates, not just the last; never ``root``
    itself (a store folder deleted while a party writes into it stays deleted)."""
    if path == root:
        if not os.path.isdir(path):
            raise FileNotFoundError(errno.ENOENT, "the store folder is gone", path)
        return
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if parent in (root, path) or os.path.isdir(parent):
            raise  # the parent is there and still no folder can be made in it (/proc): say so
        _make_dirs(parent, root)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass


def _remove(path: str) -> None:
    """Remove a file of ours if it is still there."""
    try:
        os.unlink(path)
    except OSError:
        pass


def _gone(root: str) -> bool:
    """Whether the store folder no longer exists: not when it merely cannot be looked at (a parent
    made unreadable for a while), since a store gone is gone for good (StoreGoneError)."""
    try:
        return not stat.S_ISDIR(os.stat(root).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False


def _check_folder(root: Path) -> None:
    """Refuse a folder others could write into, or swap for their own (see the class docstring)."""
    uid = os.geteuid()
    folder = root
    while True:
        try:
            info = os.stat(folder)
        except FileNotFoundError:
            info = None  # created later, mode 0700
        if info is not None:
            mine = info.st_uid == uid
            if folder == root and not mine:
                raise StoreError(
                    f"the store folder {root} belongs to another user (uid {info.st_uid}): its owner could"
                    " read and forge what the crew exchanges; use a folder of your own"
                )
            if not mine and info.st_uid != 0:
                raise StoreError(
                    f"the store folder {root} lies inside {folder}, which belongs to another user (uid"
                    f" {info.st_uid}), who could swap it for a folder of their own; use a folder whose"
                    " parents belong to you or to root"
                )
            others_write = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            sticky = info.st_mode & stat.S_ISVTX and folder != root
            if others_write and not sticky:
                raise StoreError(
                    f"the store folder {root} {'is' if folder == root else 'lies inside ' + str(folder) + ', which is'}"
                    f" writable by other users (mode {stat.filemode(info.st_mode)}): they could plant or swap"
                    f" objects. Run `chmod go-w {folder}` or use another folder"
                )
        if folder.parent == folder:
            return
        folder = folder.parent


def _read_file(path: str) -> bytes:
    """A whole file, in half the system calls of ``open().read()`` (this is on every round trip)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)
        if len(data) <= size:  # short read, or it grew: read on to the end
            chunks = [data]
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data
    finally:
        os.close(fd)


class LocalStore(Store):
    """Keys are files under ``path`` (a private temporary directory if none is given).

    The folder must belong to the user, and neither it nor a folder above it may be writable by
    other users (a sticky folder such as ``/tmp`` is fine above it) or belong to another user
    than root: whoever could write there could delete or swap the crew's objects.
    """

    name = "local"
    schemes = ("file",)
    notifies = hasattr(os, "mkfifo")
    poll_interval = (0.001, 0.25)
    request_concurrency = 1  # file operations take microseconds: threads would only add cost
    atomic_put_new = True  # a hard link never replaces a file
    delete_batch = 1  # a file left over would slow every listing of its folder
    lists_from_key = False  # a directory is read whole, then filtered
    long_jobs_per_task = 1  # requests cost microseconds: each result comes as its job ends

    def __init__(self, path: str | os.PathLike[str] | None = None, create: bool = True) -> None:
        """``create=False`` (how workers rebuild it, see :meth:`config`): the folder must exist."""
        self._temporary = self.temporary = path is None
        if path is None:
            path = temporary.make()  # in RAM, mode 0700 (Crew() swept those of ended controllers first)
        self.root = Path(path).expanduser().resolve()  # one name per folder: symlinks and ".." resolved
        try:
            str(self.root).encode()
        except UnicodeEncodeError:  # its name goes into labels, JSON and workers' command lines
            raise StoreError(f"the store path {str(self.root)!r} is not valid UTF-8: use another folder") from None
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"the store path {self.root} exists and is not a directory")
        _check_folder(self.root)
        if not create and _gone(str(self.root)):  # a worker: never recreate a store deleted under it
            raise StoreGoneError(f"the store folder {self.root} is gone (deleted?)")
        try:
            _make_dirs(str(self.root))
        except OSError as exc:
            raise StoreError(f"cannot create the store directory {self.root}: {exc}") from exc
        self._root = str(self.root)
        self._user_note = None if self._temporary else temporary.join(self.root)  # a worker of a temporary store
        self._listeners: dict[str, tuple[int, Any]] = {}
        self._bells: dict[str, int] = {}  # channel -> open write end, most recently used last
        self._closed = False

    @classmethod
    def temporary_stores(cls) -> builtins.list[TemporaryStore]:
        """This user's temporary stores (``Crew()`` on ``"local"``): folders in ``/dev/shm``."""
        return temporary.stores()

    @classmethod
    def remove_temporary(cls, location: str) -> bool:
        return temporary.remove(location)

    @classmethod
    def sweep_temporary(cls) -> builtins.list[str]:
        return temporary.sweep()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> LocalStore:
        """``file:///abs/path`` or a plain path."""
        if url.startswith("file://"):
            url = url[len("file://") :]
        return cls(url, **options)

    def config(self) -> dict[str, Any]:
        return {"path": self._root, "create": False}

    def describe(self) -> str:
        return self._root

    # ------------------------------------------------------------------ the four verbs
    def _path(self, key: str) -> str:
        return f"{self._root}/{check_key(key)}"

    def _missing(self, key: str, path: str) -> StoreError:
        """What it means that ``key``'s file ``path`` is not there: the store is gone, or no such object."""
        if _gone(self._root):
            return StoreGoneError(f"the store folder {self._root} is gone (deleted?): cannot read {path}")
        return KeyNotFoundError(f"no object {key!r} in {self._root}")

    def _failed(self, what: str, path: str, exc: OSError) -> StoreError:
        if _gone(self._root):
            return StoreGoneError(f"the store folder {self._root} is gone (deleted?): cannot {what} {path}")
        return StoreError(f"cannot {what} {path}: {exc.strerror or exc} (errno {exc.errno})")

    def put(self, key: str, data: bytes | memoryview) -> None:
        path = self._path(key)
        temp = self._write_temp(path, data)
        try:
            os.replace(temp, path)  # atomic: readers see the old file or the whole new one
        except OSError as exc:  # a read-only disk, a folder deleted meanwhile: leave nothing behind
            _remove(temp)
            raise self._failed("write", path, exc) from exc

    def put_new(self, key: str, data: bytes) -> bool:
        """Create ``key`` unless it exists: the whole file is written under a temporary name, then
        hard-linked to the key's name, which fails if that name exists (also on NFS)."""
        path = self._path(key)
        temp = self._write_temp(path, data)
        try:
            os.link(temp, path)
            return True
        except FileExistsError:
            # NFS may retry a link whose reply was lost and report EEXIST for our own link: then
            # the temporary file has two names.
            try:
                return os.stat(temp).st_nlink == 2
            except OSError:
                return False
        except OSError as exc:
            raise self._failed("write", path, exc) from exc
        finally:
            _remove(temp)

    def _write_temp(self, path: str, data: bytes | memoryview) -> str:
        """Write ``data`` to a new temporary file beside ``path`` and return its name."""
        folder, base = os.path.split(path)
        temp = os.path.join(folder, f".{base}.{os.getpid()}.{next(_counter)}.tmp")
        try:
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileNotFoundError:
                if not os.path.isdir(self._root):  # never recreate a store folder deleted under us
                    raise
                _make_dirs(folder, self._root)
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise self._failed("write", path, exc) from exc
        try:
            try:
                view = memoryview(data).cast("B")  # os.write counts bytes, not items
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        except OSError as exc:  # a full disk: leave nothing behind
            _remove(temp)
            raise self._failed("write", path, exc) from exc
        return temp

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return _read_file(path)
        except _ABSENT:
            raise self._missing(key, path) from None
        except OSError as exc:
            raise self._failed("read", path, exc) from exc

    def put_buffer(self, key: str, buffer: memoryview) -> None:
        """Written from the buffer itself: no copy into ``bytes`` first."""
        self.put(key, buffer)

    def get_buffer(self, key: str) -> memoryview:
        """The file mapped read-only: pages are shared with every process that maps it (in
        ``/dev/shm`` they are the store's own memory), and nothing is copied. The mapping ends
        when the last buffer made from it is released; the file may be deleted meanwhile."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except _ABSENT:
            raise self._missing(key, path) from None
        except OSError as exc:
            raise self._failed("read", path, exc) from exc
        try:
            if os.fstat(fd).st_size == 0:  # an empty file cannot be mapped
                return memoryview(b"")
            # Populated at once: one call maps every page, instead of a fault per page as it is read.
            return memoryview(mmap.mmap(fd, 0, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ))
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot map {path}: {exc}") from exc
        finally:
            os.close(fd)

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        folder, _, _ = prefix.rpartition("/")
        base = os.path.join(self._root, folder) if folder else self._root
        keys: list[str] = []
        try:
            self._walk(base, f"{folder}/" if folder else "", prefix, keys)
        except OSError as exc:
            raise self._failed("list", base, exc) from exc
        if not keys and _gone(self._root):  # an empty answer must not hide a lost store
            raise StoreGoneError(f"the store folder {self._root} is gone (deleted?): cannot list {prefix!r}")
        if start_after is not None:
            keys = [key for key in keys if key > start_after]
        keys.sort()
        return keys

    def _walk(self, directory: str, key_prefix: str, prefix: str, out: list[str]) -> None:
        try:
            entries = os.scandir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return
        with entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue  # temporary files and doorbells are not keys
                key = key_prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    if key.startswith(prefix) or prefix.startswith(key + "/"):
                        self._walk(entry.path, key + "/", prefix, out)
                elif key.startswith(prefix):
                    out.append(key)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self._path(key)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise self._failed("delete", path, exc) from exc

    def delete_prefix(self, prefix: str) -> None:
        """Delete every file whose name under the root starts with ``prefix``, dot-names included.

        The base class's ``delete(list(prefix))`` would leave temporary files and doorbells
        behind, since :meth:`list` hides them.
        """
        if prefix.endswith("/"):  # the folder goes, doorbells of channels under it included
            shutil.rmtree(self._path(prefix[:-1]), ignore_errors=True)
            return
        folder, _, start = prefix.rpartition("/")
        try:
            entries = list(os.scandir(self._path(folder) if folder else self._root))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if not entry.name.startswith(start):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    pass

    # ------------------------------------------------------------------ wake-ups
    def _doorbell(self, channel: str) -> str:
        folder, _, name = check_key(channel).rpartition("/")
        return os.path.join(self._root, folder, f".{name}.bell")

    def wait(self, channel: str, timeout: float) -> bool:
        if not self.notifies:
            return super().wait(channel, timeout)
        listener = self._listeners.get(channel)
        if listener is None:
            listener = self._listen(channel)
        fd, poller = listener
        if timeout > 0 and not poller.poll(timeout * 1000.0):
            return False
        try:
            while len(os.read(fd, 65536)) == 65536:
                pass
        except BlockingIOError:
            return False
        return True

    def _listen(self, channel: str) -> tuple[int, Any]:
        path = self._doorbell(channel)
        try:
            os.mkfifo(path, 0o600)
        except FileNotFoundError:
            if _gone(self._root):  # never recreate a store folder deleted under us
                raise StoreGoneError(f"the store folder {self._root} is gone (deleted?)") from None
            _make_dirs(os.path.dirname(path), self._root)
            os.mkfifo(path, 0o600)
        except FileExistsError:
            if not stat.S_ISFIFO(os.stat(path).st_mode):
                raise StoreError(f"{path} exists and is not a named pipe") from None
        # Opened read-write so the pipe always has a writer: poll() then never reports EOF.
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        self._listeners[channel] = (fd, poller)
        return fd, poller

    def notify(self, channel: str) -> None:
        if not self.notifies or self._closed:
            return
        fd = self._bells.pop(channel, None)
        if fd is None:
            try:
                fd = os.open(self._doorbell(channel), os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # nobody listens (ENOENT, ENXIO): the listener will poll anyway
                return
        try:
            os.write(fd, b"!")
        except BlockingIOError:
            pass  # a full pipe is a rung bell
        except OSError as exc:  # EPIPE: the listener is gone; forget its pipe
            os.close(fd)
            if exc.errno != errno.EPIPE:
                raise
            return
        self._bells[channel] = fd  # kept open: opening costs more than the write
        if len(self._bells) > _MAX_BELLS:
            os.close(self._bells.pop(next(iter(self._bells))))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Snapshots: a crew still using the store may ring or listen from its own thread meanwhile.
        for channel, (fd, _) in list(self._listeners.items()):
            os.close(fd)
            try:
                os.unlink(self._doorbell(channel))
            except OSError:
                pass
        self._listeners.clear()
        for fd in list(self._bells.values()):
            os.close(fd)
        self._bells.clear()
        temporary.leave(self._user_note)
        if self._temporary:
            shutil.rmtree(self._root, ignore_errors=True)
