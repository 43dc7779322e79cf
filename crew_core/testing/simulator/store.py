"""An in-memory store for the simulator, whose failures the simulation turns on and off.

Workers share one :class:`MemoryStore`; each controller reaches it through a
:class:`ControllerLink` of its own, which dies with the controller: at a request the world chose
(a put that may or may not land, a batch delete cut part way, in any order), or between two steps.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterable
from typing import ClassVar

from crew_core.errors import KeyNotFoundError, StoreError, StoreGoneError
from crew_core.plugin.store import Store


class _Objects(dict[str, bytes]):
    """A store's objects by key, with the keys also kept in order (listings bisect them)."""

    def __init__(self) -> None:
        super().__init__()
        self.keys_in_order: list[str] = []

    def __setitem__(self, key: str, data: bytes) -> None:
        if key not in self:
            bisect.insort(self.keys_in_order, key)
        super().__setitem__(key, data)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        del self.keys_in_order[bisect.bisect_left(self.keys_in_order, key)]

    def pop(self, key: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        """As ``delete`` uses it: the object, or ``default`` if there is none."""
        if key not in self:
            return default
        data = self[key]
        del self[key]
        return data


class MemoryStore(Store):
    """Objects in a dict. ``down`` fails every request until it is cleared; ``gone`` for good."""

    name = "simulated"
    notifies = False
    poll_interval: ClassVar[tuple[float, float]] = (0.05, 1.0)
    heartbeat_interval = 1.0
    request_concurrency = 1  # the controller writes inline: one thread, as the simulator needs
    delete_batch = 100

    def __init__(self) -> None:
        self.objects = _Objects()  # faults change it directly
        self.down = False
        self.gone = False
        self.calls = 0
        self.written: Callable[[str], None] | None = None  # hears of every put

    def _request(self) -> None:
        self.calls += 1
        if self.gone:
            raise StoreGoneError("the simulated store is gone for good")
        if self.down:
            raise StoreError("the simulated store is down")

    def put(self, key: str, data: bytes) -> None:
        self._request()
        self.objects[key] = bytes(data)
        if self.written is not None:
            self.written(key)

    def get(self, key: str) -> bytes:
        self._request()
        try:
            return self.objects[key]
        except KeyError:
            raise KeyNotFoundError(key) from None

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        self._request()
        keys = self.objects.keys_in_order
        start = bisect.bisect_left(keys, prefix)
        if start_after is not None and start_after >= prefix:
            start = bisect.bisect_right(keys, start_after, start)
        end = bisect.bisect_left(keys, prefix + "\U0010ffff", start)
        return [key for key in keys[start:end] if key.startswith(prefix)]

    def delete(self, keys: Iterable[str]) -> None:
        self._request()
        for key in list(keys):
            self.objects.pop(key, None)

    def wait(self, channel: str, timeout: float) -> bool:
        """Never blocks: simulated time passes only between steps."""
        return False

    def notify(self, channel: str) -> None:
        """Nobody sleeps in a simulation: every party looks at the store each step."""

    def describe(self) -> str:
        return "simulated memory store"


class ControllerCrashed(BaseException):
    """The controller's process died: raised through whatever it was doing (nothing may catch it,
    as nothing in a killed process runs on), and caught by the world."""


class ControllerLink(Store):
    """One controller's connection to the shared :class:`MemoryStore`; it dies with the controller.

    ``doom(n)`` makes the ``n``-th write from now the last (``deletes``: the ``n``-th batch
    delete): a put lands or not, a batch delete removes some of its keys (in any order: a store
    deletes a batch as it likes); then :class:`ControllerCrashed` is raised, and every later
    request raises it too. (Only writes count: a death in a read is the same as a death just
    before it.) ``written`` hears of every put that landed (the world watches receipts with it).
    """

    name = MemoryStore.name
    notifies = MemoryStore.notifies
    poll_interval: ClassVar[tuple[float, float]] = MemoryStore.poll_interval
    heartbeat_interval = MemoryStore.heartbeat_interval
    request_concurrency = MemoryStore.request_concurrency
    delete_batch = MemoryStore.delete_batch

    def __init__(self, store: MemoryStore, rng: random.Random, written: Callable[[str], None]) -> None:
        self.store = store
        self.rng = rng
        self.written = written
        self.dead = False
        self._left: int | None = None  # writes left before the fatal one
        self._deletes = False  # only deletes count

    def doom(self, writes: int | None, deletes: bool = False) -> None:
        """Die in the ``writes``-th write (or delete) from now (None: live on)."""
        self._left, self._deletes = writes, deletes

    @property
    def doomed(self) -> bool:
        return self._left is not None

    def _check_alive(self) -> None:
        if self.dead:
            raise ControllerCrashed("the controller is dead")

    def _fatal(self, delete: bool = False) -> bool:
        """Whether the controller dies in this write (raises if it died before)."""
        self._check_alive()
        if self._left is None or (self._deletes and not delete):
            return False
        self._left -= 1
        if self._left > 0:
            return False
        self.dead = True
        return True

    def put(self, key: str, data: bytes) -> None:
        if not self._fatal():
            self.store.put(key, data)
            self.written(key)
            return
        if self.rng.random() < 0.5:  # the last put reached the store before the process died, or not
            self._last_words(lambda: self.store.put(key, data))
            self.written(key)
        raise ControllerCrashed(f"the controller died putting {key}")

    def get(self, key: str) -> bytes:
        self._check_alive()
        return self.store.get(key)

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        self._check_alive()
        return self.store.list(prefix, start_after)

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if not self._fatal(delete=True):
            self.store.delete(keys)
            return
        self.rng.shuffle(keys)
        cut = keys[: self.rng.randint(0, len(keys))]
        self._last_words(lambda: self.store.delete(cut))
        raise ControllerCrashed(f"the controller died deleting {len(keys)} key(s), {len(cut)} of them gone")

    @staticmethod
    def _last_words(request: Callable[[], None]) -> None:
        try:
            request()
        except StoreError as exc:  # the store was down as well: the request never landed
            raise ControllerCrashed(f"the controller died in a failed request: {exc}") from None

    def wait(self, channel: str, timeout: float) -> bool:
        return False

    def notify(self, channel: str) -> None:
        """Nobody sleeps in a simulation."""

    def describe(self) -> str:
        return self.store.describe()
