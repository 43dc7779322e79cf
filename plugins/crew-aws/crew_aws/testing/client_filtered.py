"""An S3 store that lists as a backend that cannot list after a key (for benchmarks and tests).

See :class:`crew_core.testing.ClientFilteredListing`; workers rebuild it from its class path.
"""

from __future__ import annotations

from crew_core.testing.client_filtered import ClientFilteredListing

from ..s3_store import S3Store


class ClientFilteredS3Store(ClientFilteredListing, S3Store):
    """An :class:`S3Store` whose listings ignore ``StartAfter`` and are filtered on the client."""

    name = "client-filtered-s3"
