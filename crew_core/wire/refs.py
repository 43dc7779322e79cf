"""Objects put in the store once and passed to many jobs by reference (``Crew.put``).

A :class:`Ref` pickles to a few dozen bytes. When a worker unpickles a job's arguments, each
reference is replaced by its object, fetched once from ``<crew>/data/<digest>`` and then served
from the worker's memory for every later job; so a 200 MB array sent to 1,000 jobs crosses the
store once per worker, not once per job. Anywhere else (the controller) a reference unpickles to
itself.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from crew_core.errors import CorruptObjectError, KeyNotFoundError, SerializationError
from crew_core.wire import protocol
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


# Per thread: executor workers may run as threads of the controller's own process.
_active = threading.local()


def _resolve(crew: str, digest: str, size: int) -> Any:
    """Unpickling hook: the object in a worker, the reference itself anywhere else."""
    resolver = getattr(_active, "cache", None)
    if resolver is None:
        return Ref(crew, digest, size)
    return resolver.get(crew, digest)


class ObjectCache:
    """A worker's copies of put objects, fetched on first use; the least recently used go first."""

    def __init__(self, sealed: Sealed, max_bytes: int = 2 << 30) -> None:
        self.sealed = sealed
        self.max_bytes = max_bytes
        self._objects: OrderedDict[tuple[str, str], tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, crew: str, digest: str) -> Any:
        key = (crew, digest)
        with self._lock:
            hit = self._objects.get(key)
            if hit is not None:
                self._objects.move_to_end(key)
                return hit[0]
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
        import cloudpickle

        obj = cloudpickle.loads(data)
        with self._lock:
            self._objects[key] = (obj, len(data))
            self._bytes += len(data)
            while self._bytes > self.max_bytes and len(self._objects) > 1:
                _, (_, size) = self._objects.popitem(last=False)
                self._bytes -= size
        return obj

    def activate(self) -> None:
        """Make references unpickled in this thread resolve through this cache."""
        _active.cache = self

    def deactivate(self) -> None:
        if getattr(_active, "cache", None) is self:
            _active.cache = None
