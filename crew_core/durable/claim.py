"""Claiming a named crew: of the controllers that open it at the same instant, one goes on.

The lease check (``resume.check_no_other_controller``) cannot tell apart two controllers that
open a crew within the same moment: each reads the store before the other has written a lease.
So each controller takes a number, its **epoch** (one more than the last controller's), and
before it changes anything in the store it creates ``<crew>/claim/<epoch>`` with the store's
create-only write (:meth:`~crew_core.plugin.store.Store.put_new`): of those that take the same number,
exactly one creates the key; the others stop. Claims stay until the crew is closed:
:func:`remove_crew` deletes them last, and only what it listed before the lease went, so that a
controller that opens the crew while it is being closed loses none of its objects.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass

from crew_core.errors import CorruptObjectError, CrewError, KeyNotFoundError
from crew_core.plugin.processes import process_alive
from crew_core.plugin.store import Store
from crew_core.wire import protocol
from crew_core.wire.protocol import ControllerClaim

log = logging.getLogger("crew")

#: Seconds for which a claim made on another machine counts as alive: its controller writes a
#: lease (which then speaks for it) a moment after the claim, unless it died in between.
CLAIM_PATIENCE = 60.0
_warned: set[type[Store]] = set()


@dataclass(frozen=True)
class Claimed:
    """A claim this controller made."""

    epoch: int
    #: True when the claim had to go past the number the lease suggested: a controller that
    #: claimed that number died while opening, and may have changed the crew after it was read.
    skipped: bool


def claim_crew(store: Store, crew_id: str, last_epoch: int, lease_timeout: float, open_here: bool) -> Claimed:
    """Claim ``crew_id`` as its controller number ``last_epoch + 1`` (the lease's epoch plus one).

    If another controller holds that number and may be alive (``open_here``: a crew object of
    this process has the crew open), raise :class:`CrewError`; if it died while opening, claim
    the number after the highest claim. One request when nobody else opens the crew.
    """
    if not type(store).atomic_put_new and type(store) not in _warned:
        _warned.add(type(store))
        log.warning("%s cannot create objects atomically (its put_new reads, then writes): two controllers"
                    " opening a named crew at the same instant could both go on", type(store).__name__)  # fmt: skip
    mine = ControllerClaim(socket.gethostname(), os.getpid(), time.time(), lease_timeout, secrets.token_hex(16))
    epoch = last_epoch + 1
    won, holder = _create(store, crew_id, epoch, mine)
    if won:
        return Claimed(epoch, skipped=False)
    # That number is taken: by a controller opening the crew now, or by one that died opening it.
    numbers = [n for n in map(protocol.claim_epoch, store.list(protocol.claim_prefix(crew_id))) if n is not None]
    latest = max([epoch, *numbers])
    if latest != epoch:
        holder = _read(store, crew_id, latest)
    if holder is None:  # deleted since it was listed
        raise CrewError(f"another process is opening or closing crew {crew_id!r} right now: try again in a moment")
    alive = _describe_alive(holder, open_here)
    if alive is not None:
        raise CrewError(
            f"another process is opening crew {crew_id!r} right now ({alive}): one controller at a time."
            " If it fails, open the crew again"
        )
    epoch = latest + 1
    won, _ = _create(store, crew_id, epoch, mine)
    if not won:
        raise CrewError(f"another process is opening crew {crew_id!r} right now: one controller at a time")
    return Claimed(epoch, skipped=True)


def _create(store: Store, crew_id: str, epoch: int, mine: ControllerClaim) -> tuple[bool, ControllerClaim | None]:
    """Create claim ``epoch``: (True, None), or (False, the claim there, None if unreadable)."""
    if store.put_new(protocol.claim_key(crew_id, epoch), protocol.encode_json(mine)):
        return True, None
    holder = _read(store, crew_id, epoch)
    # A write whose answer was lost and that the SDK retried finds our own claim there.
    return (True, None) if holder is not None and holder.token == mine.token else (False, holder)


def _read(store: Store, crew_id: str, epoch: int) -> ControllerClaim | None:
    key = protocol.claim_key(crew_id, epoch)
    try:
        return protocol.decode_claim(store.get(key), key)
    except KeyNotFoundError:
        return None  # deleted meanwhile: the crew is being closed
    except CorruptObjectError as exc:
        log.warning("crew %s: ignoring %s", crew_id, exc)
        return ControllerClaim("", 0, 0.0, 0.0, "")  # an unknown host's claim of long ago: nobody alive


def _describe_alive(holder: ControllerClaim, open_here: bool) -> str | None:
    """Who holds the claim, if it may be alive; None if its controller is gone."""
    if holder.host == socket.gethostname():
        if not (isinstance(holder.pid, int) and 0 < holder.pid < 2**31):
            return None
        alive = open_here if holder.pid == os.getpid() else process_alive(holder.pid)
        return f"process {holder.pid} on this machine" if alive else None
    patience = max(CLAIM_PATIENCE, 2 * protocol.lease_renewal(max(holder.lease_timeout, 0.0)) + 5)
    if time.time() - holder.written < patience:
        return f"process {holder.pid} on {holder.host!r}"
    return None


def clear_crew(store: Store, crew_id: str) -> None:
    """Delete a crew's objects, its claims excepted (a stale run's, before a fresh start)."""
    claims = protocol.claim_prefix(crew_id)
    store.delete([key for key in store.list(protocol.crew_prefix(crew_id)) if not key.startswith(claims)])


def remove_crew(store: Store, crew_id: str) -> None:
    """Delete every object of a named crew: the lease next to last, the claims last.

    A controller on another host may open the crew once the lease is gone; it claims first, and
    writes nothing before. So only objects listed before the lease went are deleted, then the
    claims that existed then, and then the rest (what stopped workers wrote meanwhile, a local
    store's folders) unless a new claim has appeared: a crew opened during the close keeps its
    objects, unless it claimed in the instant between that last listing and the last delete.
    """
    lease, claims = protocol.lease_key(crew_id), protocol.claim_prefix(crew_id)
    keys = store.list(protocol.crew_prefix(crew_id))
    mine = [key for key in keys if key.startswith(claims)]
    store.delete([key for key in keys if key != lease and not key.startswith(claims)])
    store.delete([lease])
    store.delete(mine)
    if not any(key.startswith(claims) for key in store.list(protocol.crew_prefix(crew_id))):
        store.delete_prefix(protocol.crew_prefix(crew_id))  # a stopped worker's last beat, a local store's folders


def release_claim(store: Store, crew_id: str, claimed: Claimed) -> None:
    """Take back a claim whose controller failed to open the crew, so that others need not wait."""
    try:
        store.delete([protocol.claim_key(crew_id, claimed.epoch)])
    except Exception as exc:  # the store may be what failed
        log.warning("crew %s could not take back its claim: %s", crew_id, exc)
