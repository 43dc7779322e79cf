"""How ``crew.put`` lays out an object in the store: a signed header and its large buffers apart.

An object is pickled with protocol 5, and each large contiguous buffer it holds (a numpy array's
data, a ``bytes`` of a megabyte or more) is taken out of band: it is written as an object of its
own, ``<crew>/data/<digest>.<n>``, unsealed, and only its size and BLAKE3 hash are in the
header, ``<crew>/data/<digest>``, which the controller signs. A worker checks the header's signature,
reads each buffer through :meth:`Store.get_buffer` (a local store maps the file, so the bytes are
not copied), checks its hash once and unpickles the object over those buffers: a numpy array in
the job is backed by the mapping, read-only. An object with no large buffer is a plain pickle, as
before this format.

Header layout: ``MAGIC``, the number of buffers (4 bytes), then per buffer its size (8 bytes)
and BLAKE3 hash (32 bytes), then the pickle. The reference's digest is the header's, so equal
objects still have equal digests.

BLAKE3 rather than SHA-256 (``crew-put/1``): hashing is most of what a shared object costs on a
local store (the controller hashes each buffer once, each worker once more), and BLAKE3 hashes a
100 MB buffer in about a quarter of SHA-256's time on one core. It is hashed on one thread: the
workers of a machine check at the same moment, so threads would only contend, and the library's
thread pool would be one more thing a process must not fork with.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

from crew_core.errors import CorruptObjectError, SerializationError, TamperedObjectError
from crew_core.wire.serialize import digest, dumps

MAGIC = b"crew-put/2\n"
#: What every version's header starts with: one of another version is refused, not unpickled.
_FAMILY = b"crew-put/"
#: Buffers smaller than this stay inside the pickle: a store object each would cost more than it saves.
OUT_OF_BAND_BYTES = 1 << 20
_ENTRY = 8 + 32


@dataclass(frozen=True, slots=True)
class Packed:
    """A put object ready to write: ``header`` (signed, at ``data/<digest>``) and its ``buffers``."""

    digest: str
    header: bytes
    buffers: tuple[memoryview, ...]

    @property
    def size(self) -> int:
        return len(self.header) + sum(view.nbytes for view in self.buffers)


def pack(obj: Any) -> Packed:
    """Pickle ``obj`` for ``crew.put``; :class:`SerializationError` if it cannot be pickled."""
    taken: list[memoryview] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        try:
            view = buffer.raw()
        except BufferError:  # not contiguous: pickled in band
            return True
        if view.nbytes < OUT_OF_BAND_BYTES:
            return True
        taken.append(view)
        return False

    try:
        data = dumps(obj, buffer_callback=out_of_band, taken=taken)
    except Exception as exc:
        raise SerializationError(f"crew.put() cannot pickle the {type(obj).__name__}: {exc}") from exc
    if not taken:
        return Packed(digest(data), data, ())
    entries = b"".join(view.nbytes.to_bytes(8, "big") + buffer_hash(view) for view in taken)
    header = b"".join((MAGIC, len(taken).to_bytes(4, "big"), entries, data))
    return Packed(digest(header), header, tuple(taken))


@dataclass(frozen=True, slots=True)
class Header:
    """A header read back: the pickle and what each out-of-band buffer must be."""

    pickled: memoryview
    sizes: tuple[int, ...]
    hashes: tuple[bytes, ...]


def parse(data: bytes, name: str) -> Header:
    """The header stored (and checked) at ``name``; a plain pickle has no buffers."""
    view = memoryview(data)
    if not data.startswith(MAGIC):
        if data.startswith(_FAMILY):  # a pickle starts with its protocol's opcode, never with this
            version = data[: data.find(b"\n")].decode(errors="replace")
            raise CorruptObjectError(
                f"store object {name!r} is a put object of another crew-core version ({version});"
                " put it again with this one"
            )
        return Header(view, (), ())
    start = len(MAGIC) + 4
    count = int.from_bytes(data[len(MAGIC) : start], "big")
    end = start + count * _ENTRY
    if count == 0 or len(data) < end:
        raise CorruptObjectError(f"store object {name!r} is not a well-formed put object")
    entries = [data[at : at + _ENTRY] for at in range(start, end, _ENTRY)]
    return Header(view[end:], tuple(int.from_bytes(e[:8], "big") for e in entries), tuple(e[8:] for e in entries))


def check_buffer(view: memoryview, size: int, expected: bytes, name: str) -> None:
    """Refuse a buffer object that is not the one the signed header names (once, when it is read)."""
    if view.nbytes != size or buffer_hash(view) != expected:
        raise TamperedObjectError(
            f"store object {name!r} is not the buffer its signed put object names (altered or"
            " replaced); nothing in it was used"
        )


def buffer_hash(view: memoryview) -> bytes:
    """The BLAKE3 hash (32 bytes) of the buffer's bytes."""
    import blake3  # here, not at the top: only a put object with large buffers needs it

    view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
    return blake3.blake3(view).digest()
