"""A local store that deletes in batches, has no doorbells and lists as a backend that cannot list after a key.

For tests and benchmarks of crew on such backends (Azure Blob's listings continue only from an
opaque marker): see :class:`crew_core.testing.ClientFilteredListing`. Workers rebuild it from its
class path.
"""

from __future__ import annotations

from crew_core.testing.client_filtered import ClientFilteredListing

from .store import LocalStore


class ClientFilteredLocalStore(ClientFilteredListing, LocalStore):
    """A :class:`LocalStore` that behaves as a remote backend: batched deletes, no notifications,
    listings filtered on the client."""

    name = "client-filtered-local"
    delete_batch = 100  # a remote store's batch; the local store deletes each key at once
    notifies = False  # no doorbells: every answer is found by a listing, as on a remote store
