"""An in-memory store for the simulator, whose failures the simulation turns on and off."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from crew_core.errors import KeyNotFoundError, StoreError, StoreGoneError
from crew_core.plugin.store import Store


class MemoryStore(Store):
    """Objects in a dict. ``down`` fails every request until it is cleared; ``gone`` for good."""

    name = "simulated"
    notifies = False
    poll_interval: ClassVar[tuple[float, float]] = (0.05, 1.0)
    heartbeat_interval = 1.0
    request_concurrency = 1  # the controller writes inline: one thread, as the simulator needs
    delete_batch = 100

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.down = False
        self.gone = False
        self.calls = 0

    def _request(self) -> None:
        self.calls += 1
        if self.gone:
            raise StoreGoneError("the simulated store is gone for good")
        if self.down:
            raise StoreError("the simulated store is down")

    def put(self, key: str, data: bytes) -> None:
        self._request()
        self.objects[key] = bytes(data)

    def get(self, key: str) -> bytes:
        self._request()
        try:
            return self.objects[key]
        except KeyError:
            raise KeyNotFoundError(key) from None

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        self._request()
        return sorted(k for k in self.objects if k.startswith(prefix) and (start_after is None or k > start_after))

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
