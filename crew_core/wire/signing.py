"""Signed store objects: anyone who can write the store must not run code on workers or forge results.

Each crew has a secret made by its controller. Every object a worker or the controller reads is
signed with it (keyed BLAKE2b, a MAC by design and about twice as fast here as HMAC-SHA256, over
the object's key and bytes, so an object cannot be moved to another key or to another crew) and
checked, in constant time, before anything is unpickled. The secret never goes
through the store or a command line: workers get it in their environment (``CREW_SECRET``), which
each backend passes on from ``Launch.environment``.
"""

from __future__ import annotations

import hashlib
import hmac  # compare_digest
import os
import secrets
from collections.abc import Mapping

from crew_core.errors import TamperedObjectError
from crew_core.plugin.launches import SECRET_ENV as SECRET_ENV  # the name workers read it from
from crew_core.plugin.secret_files import SECRET_FILE_ENV, read_secret_file
from crew_core.plugin.store import Store

#: The environment variable through which a worker gets its crew's secret (hex).
_TAG = 32  # bytes of a tag


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def secret_from(environment: Mapping[str, str] | None = None) -> bytes:
    """The crew's secret from ``environment`` (else this process's), as the launch passed it."""
    source = os.environ if environment is None else environment
    value = source.get(SECRET_ENV)
    if not value and source.get(SECRET_FILE_ENV):  # a backend that passes secrets in a file (Slurm)
        value = read_secret_file(source[SECRET_FILE_ENV]).get(SECRET_ENV)
    if not value:
        raise RuntimeError(
            f"no {SECRET_ENV} in the worker's environment: the worker backend must pass"
            " Launch.environment to the process it starts (see docs/specification.md)"
        )
    try:
        secret = bytes.fromhex(value)
    except ValueError:
        raise RuntimeError(f"{SECRET_ENV} must be hex digits") from None
    if len(secret) < 16:
        raise RuntimeError(f"{SECRET_ENV} is too short: at least 16 bytes (32 hex digits)")
    return secret


class Sealed:
    """Reads and writes signed objects of one crew through a store."""

    def __init__(self, store: Store, secret: bytes) -> None:
        self.store = store
        self._secret = secret

    def _tag(self, key: str, payload: bytes | memoryview) -> bytes:
        mac = hashlib.blake2b(key.encode(), key=self._secret, digest_size=_TAG, person=b"crew-seal")
        mac.update(b"\0")
        mac.update(payload)
        return mac.digest()

    def seal(self, key: str, payload: bytes) -> bytes:
        return self._tag(key, payload) + payload

    def unseal(self, key: str, data: bytes) -> bytes:
        """The payload of ``data`` read at ``key``; :class:`TamperedObjectError` unless signed for it."""
        payload = memoryview(data)[_TAG:]
        if len(data) < _TAG or not hmac.compare_digest(data[:_TAG], self._tag(key, payload)):
            raise TamperedObjectError(
                f"store object {key!r} is not signed with this crew's secret (forged, altered or"
                " another crew's); nothing in it was used"
            )
        return payload.tobytes()

    def put(self, key: str, payload: bytes) -> None:
        self.store.put(key, self.seal(key, payload))

    def get(self, key: str) -> bytes:
        return self.unseal(key, self.store.get(key))


def unchecked_payload(data: bytes) -> bytes:
    """The payload of a signed object, unchecked: only for plain JSON records that ``crew ps``
    shows and ``crew stop`` hands to worker classes as untrusted places (``Worker.find``), never
    for anything that is unpickled or trusted."""
    return data[_TAG:]
