"""A store's listings as a backend that cannot list after a key would serve them.

Some backends can only list a prefix from its start (Azure Blob continues from an opaque marker
of its own; a folder is read whole), so ``start_after`` is applied on the client and every key
still under the prefix is paid for at every poll. Mix :class:`ClientFilteredListing` in front of
a store class to see what crew does on such a backend: its :meth:`~ClientFilteredListing.list`
fetches the whole prefix, filters it and records how many keys it had to fetch::

    class FilteredS3Store(ClientFilteredListing, S3Store):
        name = "filtered-s3"

Workers rebuild the class from its import path, so define it in an importable module.
"""

from __future__ import annotations

import builtins
import threading
import time
from dataclasses import dataclass
from typing import ClassVar

from crew_core.plugin.store import Store


@dataclass(frozen=True, slots=True)
class Listing:
    """One :meth:`ClientFilteredListing.list` call: keys fetched from the backend and returned."""

    prefix: str
    fetched: int
    returned: int
    seconds: float


class ClientFilteredListing(Store):
    """Lists the whole prefix and drops what ``start_after`` excludes, as such a backend must.

    Each subclass records the listings of this process in :attr:`listings` (a worker's are its own).
    """

    lists_from_key = False
    #: Every listing this process made through stores of this class, oldest first.
    listings: ClassVar[builtins.list[Listing]] = []
    _listings_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.listings = []

    def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        """Every key under ``prefix`` fetched, those up to ``start_after`` dropped here."""
        started = time.perf_counter()
        keys = super().list(prefix)  # type: ignore[safe-super]  # the concrete store after this mixin
        kept = keys if start_after is None else [key for key in keys if key > start_after]
        listing = Listing(prefix, len(keys), len(kept), time.perf_counter() - started)
        with self._listings_lock:
            type(self).listings.append(listing)
        return kept

    @classmethod
    def listings_under(cls, prefix: str) -> builtins.list[Listing]:
        """The recorded listings of exactly ``prefix`` (e.g. a crew's inbox), oldest first."""
        with cls._listings_lock:
            return [listing for listing in cls.listings if listing.prefix == prefix]
