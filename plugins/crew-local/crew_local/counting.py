"""A local store that counts the bytes every party reads and writes (for tests and benchmarks).

Workers rebuild it from its class path, so their reads count too: each ``get``, ``get_buffer``,
``put`` and ``put_buffer`` appends one line, ``<op> <bytes> <pid> <key>``, to a tally file in the
store folder (a dot-name: :meth:`LocalStore.list` hides it; appends of one short line are atomic).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

from .store import LocalStore

_TALLY = ".tally"


@dataclass(frozen=True, slots=True)
class Access:
    """One counted request: ``op`` is get, get_buffer, put or put_buffer."""

    op: str
    size: int
    pid: int
    key: str


class CountingStore(LocalStore):
    """A :class:`LocalStore` whose requests from every process are counted in its folder."""

    name = "counting-local"

    def _count(self, op: str, size: int, key: str) -> None:
        line = f"{op} {size} {os.getpid()} {key}\n".encode()
        fd = os.open(os.path.join(self._root, _TALLY), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def put(self, key: str, data: bytes | memoryview) -> None:
        super().put(key, data)
        self._count("put", memoryview(data).nbytes, key)

    def put_buffer(self, key: str, buffer: memoryview) -> None:
        super().put(key, buffer)
        self._count("put_buffer", buffer.nbytes, key)

    def get(self, key: str) -> bytes:
        data = super().get(key)
        self._count("get", len(data), key)
        return data

    def get_buffer(self, key: str) -> memoryview:
        view = super().get_buffer(key)
        self._count("get_buffer", view.nbytes, key)
        return view

    def accesses(self) -> list[Access]:
        """Every counted request so far, by every process, oldest first."""
        try:
            with open(os.path.join(self._root, _TALLY)) as tally:
                lines = tally.read().splitlines()
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            op, size, pid, key = line.split(" ", 3)
            found.append(Access(op, int(size), int(pid), key))
        return found

    def totals(self) -> Counter[str]:
        """Bytes by operation, every process together."""
        counts: Counter[str] = Counter()
        for access in self.accesses():
            counts[access.op] += access.size
        return counts

    def reset(self) -> None:
        """Forget what was counted so far."""
        try:
            os.unlink(os.path.join(self._root, _TALLY))
        except FileNotFoundError:
            pass
