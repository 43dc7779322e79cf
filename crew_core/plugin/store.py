"""The :class:`Store` base class: the small, bytes-level interface every data store implements.

All coordination between a crew's controller and its workers goes through a store. A store maps
string keys to immutable byte objects; the core decides the key layout (see ``protocol.py``) and
does all serialisation, so a backend only moves bytes.
"""

from __future__ import annotations

import builtins
import math
import re
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from crew_core.errors import KeyNotFoundError
from crew_core.settings import seconds

# Keys are slash-separated segments of safe characters. No segment may start with a dot, so
# backends are free to keep temporary or private files under dot-names next to the keys.
_KEY = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*$")


def check_key(key: str) -> str:
    """Return ``key`` unchanged, or raise :class:`ValueError` if it is not a valid store key."""
    if not is_key(key):
        raise ValueError(
            f"invalid store key {key!r}: use '/'-separated segments of letters, digits, '_', '-'"
            " and '.', none starting with '.'"
        )
    return key


def is_key(name: str) -> bool:
    """Whether a backend's object name is a key (what ``list`` returns), not a private object or
    a folder marker (what it must hide)."""
    return bool(_KEY.match(name))


@dataclass(frozen=True)
class TemporaryStore:
    """One of this user's temporary stores on this machine (:meth:`Store.temporary_stores`)."""

    location: str  # what ``Crew(store=...)`` and ``crew ps --store`` take to open it as it is
    owner: int  # the process that made it (its crew's controller)
    ended: bool  # that process has ended: the store is left over
    users: tuple[int, ...] = ()  # live processes that still use it (workers): it stays while any runs


class Store(ABC):
    """A place where the controller and workers leave each other byte objects under string keys.

    Subclasses must implement :meth:`put`, :meth:`get`, :meth:`list` and :meth:`delete`, and
    :meth:`config` if their constructor takes arguments. Everything else has a working default
    that a backend may override for speed (:meth:`delete_prefix`, :meth:`put_buffer` and
    :meth:`get_buffer` for large objects), to offer cheap wake-ups
    (:meth:`notify` / :meth:`wait`, with :attr:`notifies` set to ``True``) or to create objects
    atomically (:meth:`put_new`, with :attr:`atomic_put_new` set to ``True``).

    Guarantees a store must give (``crew_core.testing.StoreContract`` checks them):

    - :meth:`put` is atomic: a reader sees the old object, the new one or none, never a part.
    - After :meth:`put` returns, :meth:`get` and :meth:`list` in any process see the object
      (read-after-write consistency, which S3 and GCS both give today).
    - :meth:`list` returns every key under the prefix, sorted, with no duplicates.
    - With :attr:`atomic_put_new`, of many :meth:`put_new` calls on one absent key, made at once
      from any processes and machines, exactly one returns True.
    """

    #: Name under which the store class is registered (``Crew(store="local")``).
    name: ClassVar[str] = ""
    #: URL schemes this store accepts (``Crew(store="s3://bucket/prefix")`` looks up ``"s3"``).
    schemes: ClassVar[tuple[str, ...]] = ()
    #: True when :meth:`wait` really sleeps until :meth:`notify` (not just for the timeout).
    notifies: ClassVar[bool] = False
    #: Shortest and longest pause (seconds) between polls of an idle party when the store does not
    #: notify. Polls back off from the first to the second; each request may cost money.
    poll_interval: ClassVar[tuple[float, float]] = (0.05, 2.0)
    #: Seconds between a worker's heartbeats (one ``put`` each) unless the crew sets its own.
    heartbeat_interval: ClassVar[float] = 2.0
    #: How many requests the controller makes at once (reads of results, writes for different
    #: workers). Remote stores gain from several; a local one is faster with 1.
    request_concurrency: ClassVar[int] = 8
    #: How many keys the controller gathers before deleting them in one :meth:`delete` call (S3
    #: deletes 1,000 per request). 1: delete at once, where a key left over slows later listings.
    delete_batch: ClassVar[int] = 1000
    #: How many jobs of one steady kind, too long to share a batch by time and shorter than a
    #: heartbeat interval, go to one task while every worker's share of the backlog is twice as
    #: deep: a task and its answer cost four requests whatever they hold. The price: a job's result comes
    #: with the last of its task's. 1 where a request costs microseconds (local files).
    long_jobs_per_task: ClassVar[int] = 2
    #: False when the backend cannot begin a listing after a key, so :meth:`list` fetches every key
    #: under the prefix and drops those up to ``start_after`` itself (Azure Blob's opaque markers,
    #: a folder's directory read). The core then deletes every key it has read within
    #: ``delete_batch`` keys or two seconds, so that a listing's cost follows the work in flight,
    #: not the crew's history (docs/specification.md §3.7).
    lists_from_key: ClassVar[bool] = True
    #: True when :meth:`put_new` is one conditional write of the backend, so that of many parties
    #: creating the same key at once exactly one succeeds. The default :meth:`put_new` is not.
    atomic_put_new: ClassVar[bool] = False
    #: True for a store whose objects go when the store object is closed (crew-local's default
    #: folder in memory): a named crew there could never be resumed, so it is refused.
    temporary: bool = False
    #: Backend requests made by every store of this class in this process, by operation, for
    #: stores whose requests cost money (they call :meth:`count`); each subclass has its own.
    requests: ClassVar[Counter[str]] = Counter()
    _requests_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.requests = Counter()

    def count(self, operation: str) -> None:
        """Count one backend request (thread-safe), e.g. ``self.count("PutObject")``."""
        with self._requests_lock:
            type(self).requests[operation] += 1

    # ----------------------------------------------------------------- construction and config
    @classmethod
    def from_url(cls, url: str, **options: Any) -> Store:
        """Build a store from a URL such as ``s3://bucket/prefix``; override for URL stores."""
        raise NotImplementedError(f"store {cls.name!r} cannot be built from a URL ({url!r})")

    def config(self) -> dict[str, Any]:
        """Keyword arguments (JSON-serialisable) that rebuild an equivalent store in a worker.

        ``type(self)(**self.config())`` must reach the same objects from another process.
        """
        return {}

    @classmethod
    def temporary_stores(cls) -> builtins.list[TemporaryStore]:
        """This user's temporary stores of this class on this machine, live ones and those whose
        controller has ended (``crew ps --store <name>``); a class that makes none has none."""
        return []

    @classmethod
    def sweep_temporary(cls) -> builtins.list[str]:
        """Remove this user's temporary stores here whose controller and users have all ended;
        returns their locations. ``Crew()`` calls it for every registered store class as it opens
        (so it must be cheap: crew-local's costs ~15 µs, plus ~20 µs per live temporary store)."""
        return [store.location for store in cls.temporary_stores()
                if store.ended and not store.users and cls.remove_temporary(store.location)]  # fmt: skip

    @classmethod
    def remove_temporary(cls, location: str) -> bool:
        """Remove the temporary store at ``location`` (one of :meth:`temporary_stores`) if its
        controller and every user have ended; True if this call removed it (``crew stop``)."""
        return False

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Store:
        """Rebuild a store from the output of :meth:`config`."""
        return cls(**config)

    # ----------------------------------------------------------------- the four required verbs
    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically, replacing any previous object."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Return the object under ``key``; raise :class:`~crew_core.errors.KeyNotFoundError`."""

    @abstractmethod
    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        """Return the sorted keys that start with ``prefix`` (at any depth).

        With ``start_after``, return only keys that sort strictly after it (S3's ``StartAfter``,
        GCS's ``start_offset``): the protocol uses it to skip what it has already read.
        """

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete the given keys; keys that do not exist are ignored."""

    # ----------------------------------------------------------------- optional, with defaults
    def put_new(self, key: str, data: bytes) -> bool:
        """Store ``data`` under ``key`` only if no object is there: True if it was created.

        An object that is there is left as it is (False). Atomic where :attr:`atomic_put_new` is
        True. This default is **not**: it reads, then writes, so two parties that call it at
        the same instant may both get True; a store whose backend has a conditional write (S3's
        ``If-None-Match``, GCS's ``ifGenerationMatch=0``, a hard link) should override it.
        """
        try:
            self.get(key)
        except KeyNotFoundError:
            self.put(key, data)
            return True
        return False

    def put_buffer(self, key: str, buffer: memoryview) -> None:
        """Store the bytes of ``buffer`` (a large object: ``crew.put``'s arrays) under ``key``, as :meth:`put`.

        The default copies them into ``bytes`` and calls :meth:`put`. A backend may write the
        buffer without that copy, or in parallel parts (S3's multipart upload).
        """
        self.put(key, buffer.tobytes())

    def get_buffer(self, key: str) -> memoryview:
        """The object under ``key`` as a read-only buffer, as :meth:`get` (a large object).

        The default wraps :meth:`get`'s bytes. A store whose objects are files on this machine
        may map the file instead (no copy; the mapping lives as long as the buffer is used),
        and a remote one may read it in parallel ranges. Objects read this way are never
        replaced in place by crew (each is written once), so a mapping stays valid.
        """
        return memoryview(self.get(key))

    def delete_prefix(self, prefix: str) -> None:
        """Delete every key under ``prefix`` (used to clean up after a worker or a crew)."""
        self.delete(self.list(prefix))

    def notify(self, channel: str) -> None:
        """Wake whoever waits on ``channel``. A hint only: it may be lost.

        The default wakes waiters in this process only (the controller's own threads); a store
        with :attr:`notifies` set wakes other processes too.
        """
        event = self._channels().get(channel)
        if event is not None:
            event.set()

    def wait(self, channel: str, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds or until ``channel`` is notified; True if notified.

        The first call on a channel starts listening; a caller must look at the store after it,
        since notifications sent before it are lost. The default hears notifications sent in
        this process and otherwise just sleeps.
        """
        event = self._channels().setdefault(channel, threading.Event())
        rung = event.wait(timeout) if timeout > 0 else event.is_set()
        event.clear()
        return rung

    def _channels(self) -> dict[str, threading.Event]:
        # Created on first use: subclasses need not call Store.__init__.
        channels: dict[str, threading.Event] | None = self.__dict__.get("_in_process_channels")
        if channels is None:
            channels = self.__dict__.setdefault("_in_process_channels", {})
        return channels

    def set_poll_interval(self, value: tuple[float, float] | builtins.list[float] | str | None) -> None:
        """Override :attr:`poll_interval` for this instance (a store option); None keeps the default,
        a string is ``"shortest,longest"`` as ``CREW_<STORE>_POLL_INTERVAL`` gives it.

        Stores that take a ``poll_interval`` option call this from ``__init__`` and return
        :meth:`poll_interval_config` in :meth:`config`, so workers poll as the controller does.
        """
        if value is None:
            return
        variable = f"CREW_{type(self).name.upper()}_POLL_INTERVAL"
        accepts = (f"two numbers of seconds, the shortest and the longest pause between polls: (0.05, 6), or"
                   f" '0.05,6' or '50ms,6s' in {variable}")  # fmt: skip
        try:
            if isinstance(value, str):  # read as every CREW_* value is (units allowed)
                low, high = (seconds(part, variable) for part in value.split(","))
            else:
                low, high = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"poll_interval must be {accepts}; not {value!r}") from None
        if not 0 < low <= high < math.inf:
            raise ValueError(f"poll_interval must be 0 < shortest <= longest, got {value!r}")
        self.poll_interval = (low, high)  # type: ignore[misc]

    def poll_interval_config(self) -> dict[str, Any]:
        """``{"poll_interval": [low, high]}`` when this instance overrides the default, else ``{}``."""
        if self.poll_interval == type(self).poll_interval:
            return {}
        return {"poll_interval": list(self.poll_interval)}

    def close(self) -> None:
        """Release connections, file descriptors or temporary space held by this object."""

    def describe(self) -> str:
        """A short human-readable location, used in messages and ``repr``."""
        return f"{self.name} store"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
