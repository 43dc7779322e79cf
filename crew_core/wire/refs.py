"""Objects put in the store once and passed to many jobs by reference (``Crew.put``).

A :class:`Ref` pickles to a few dozen bytes. When a worker unpickles a job's arguments, each
reference is replaced by its object, fetched once from ``<crew>/data/<digest>`` (and its large
buffers, see ``put_objects.py``) and then served from the worker's memory for every later job;
so a 200 MB array sent to 1,000 jobs crosses the store once per worker, not once per job, and on
a local store not even that: the worker maps the controller's file. Anywhere else (the
controller) a reference unpickles to itself.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from crew_core.errors import CorruptObjectError, KeyNotFoundError, SerializationError
from crew_core.wire import protocol, put_objects
from crew_core.wire.serialize import digest as content_digest
from crew_core.wire.signing import Sealed


class Ref:
    """A reference to an object put in a crew's store with :meth:`Crew.put`.

    Pass it as an argument, or inside one (a list, a dict, an object): the worker gives the job
    the object itself. Treat the object as read-only: jobs on one worker share it.
    """

    __slots__ = ("crew", "digest", "size")

    def __init__(self, crew: str, digest: str, size: int) -> None:
        self.crew = crew
        self.digest = digest
        self.size = size  # pickled bytes

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str, str, int]]:
        return _resolve, (self.crew, self.digest, self.size)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and (other.crew, other.digest) == (self.crew, self.digest)

    def __hash__(self) -> int:
        return hash((self.crew, self.digest))

    def __repr__(self) -> str:
        return f"<Ref {self.digest[:12]} of crew {self.crew}, {self.size:,} bytes>"


def upload(sealed: Sealed, crew: str, packed: put_objects.Packed) -> None:
    """Write a put object: its buffers first, so that a worker that finds the header finds them too."""
    for index, buffer in enumerate(packed.buffers):
        sealed.store.put_buffer(protocol.buffer_key(crew, packed.digest, index), buffer)
    sealed.put(protocol.data_key(crew, packed.digest), packed.header)


# Per thread: executor workers may run as threads of the controller's own process.
_active = threading.local()


def _resolve(crew: str, digest: str, size: int) -> Any:
    """Unpickling hook: the object in a worker, the reference itself anywhere else."""
    resolver = getattr(_active, "cache", None)
    if resolver is None:
        return Ref(crew, digest, size)
    return resolver.get(crew, digest)


class ObjectCache:
    """A worker's put objects, read from the store once each; the least recently used go first.

    A large object's buffers are read with :meth:`Store.get_buffer` (mapped, on a local store)
    and checked against the signed header once, when they are read: later jobs get the same
    object without touching the store. Threads that want the same object at once read it once.
    """

    def __init__(self, sealed: Sealed, max_bytes: int = 2 << 30) -> None:
        self.sealed = sealed
        self.max_bytes = max_bytes
        self._objects: OrderedDict[tuple[str, str], tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}

    def get(self, crew: str, digest: str) -> Any:
        key = (crew, digest)
        with self._lock:
            hit = self._objects.get(key)
            if hit is not None:
                self._objects.move_to_end(key)
                return hit[0]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                hit = self._objects.get(key)
            if hit is not None:  # another thread read it meanwhile
                return hit[0]
            try:
                obj, size = self._load(crew, digest)
                with self._lock:  # kept before the next thread in line looks
                    self._objects[key] = (obj, size)
                    self._bytes += size
                    while self._bytes > self.max_bytes and len(self._objects) > 1:
                        _, (_, dropped) = self._objects.popitem(last=False)
                        self._bytes -= dropped
            finally:
                with self._lock:
                    self._loading.pop(key, None)
        return obj

    def _load(self, crew: str, digest: str) -> tuple[Any, int]:
        name = protocol.data_key(crew, digest)
        try:
            data = self.sealed.get(name)  # signed by the crew: checked before it is unpickled
        except KeyNotFoundError:
            raise SerializationError(
                f"the object put with crew.put() as {digest[:12]} is gone from the store ({name});"
                " was its crew closed before the job ran?"
            ) from None
        if content_digest(data) != digest:
            raise CorruptObjectError(f"store object {name!r} does not match its digest: it was altered")
        header = put_objects.parse(data, name)
        buffers = []
        for index, (size, expected) in enumerate(zip(header.sizes, header.hashes, strict=True)):
            part = protocol.buffer_key(crew, digest, index)
            try:
                view = self.sealed.store.get_buffer(part)
            except KeyNotFoundError:
                raise SerializationError(
                    f"part {index} of the object put with crew.put() as {digest[:12]} is gone from the store"
                    f" ({part}); was its crew closed before the job ran?"
                ) from None
            put_objects.check_buffer(view, size, expected, part)
            buffers.append(view)
        import cloudpickle

        return cloudpickle.loads(header.pickled, buffers=buffers), len(data) + sum(header.sizes)

    def activate(self) -> None:
        """Make references unpickled in this thread resolve through this cache."""
        _active.cache = self

    def deactivate(self) -> None:
        if getattr(_active, "cache", None) is self:
            _active.cache = None
