"""Signed store objects: a key per party, so that no one holds more than their own part.

Anyone who can write the store must not run code on workers or forge results, and a worker (or
whoever reads one worker's environment) must not speak for the controller or for another worker.
Every object is signed before it is written and checked, in constant time, before anything in
it is unpickled; the signature covers the object's key too, so that an object cannot be moved.

The controller holds its run's **root** key (:class:`RunKeys`; a named crew's depends on the
user's key, the run, the store's location and the crew's name, so a copy of a run in another
place checks nowhere). From it come:

- the crew's **Ed25519 key pair**: the controller signs task records, ``crew.put`` objects,
  large arguments written apart from their tasks, and the lease with the private half, which no
  worker holds; workers check with the public half (``--task-key`` on their command line: it is
  no secret);
- one **launch key** per launch of a worker (keyed BLAKE2b, a MAC): the only secret a worker
  gets (``CREW_SECRET``, through its backend's secret mechanism, see ``Launch.secrets``). The
  worker signs what it writes (answers, refusals, beats, exit notes) with it, and names itself
  in the object; the controller derives the key back and checks that the task answered was
  addressed to that launch. Tasks for a worker that runs beside the controller (the same user on
  the same machine, :attr:`Worker.beside_controller`) are signed with a key derived from its
  launch key instead of Ed25519: whoever can read that process's environment can read the
  controller's memory too, and a MAC is checked 30 times faster than a signature;
- a key of the controller's own, for what only controllers read (journal, receipts, verdicts,
  roster).
"""

from __future__ import annotations

import hashlib
import hmac  # compare_digest
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from crew_core.errors import TamperedObjectError
from crew_core.plugin.launches import SECRET_ENV as SECRET_ENV  # the name workers read it from
from crew_core.plugin.secret_files import SECRET_FILE_ENV, read_secret_file
from crew_core.plugin.store import Store
from crew_core.wire.keys import parse_inbox_key

#: The launch secret that a forwarder (a worker running an inner crew) makes its inner crew's key
#: from: one per worker, not per launch, so that its next launch resumes the same inner crew.
INNER_SECRET_ENV = "CREW_INNER_SECRET"
_TAG = 32  # bytes of a MAC
_SIGNATURE = 64  # bytes of an Ed25519 signature


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def derive(key: bytes, *parts: str) -> bytes:
    """A key made from ``key`` for one purpose (``parts``): knowing it tells nothing of ``key``."""
    mac = hashlib.blake2b(key=key, digest_size=32, person=b"crew-derive")
    for part in parts:
        data = part.encode()
        mac.update(len(data).to_bytes(4, "big") + data)
    return mac.digest()


def secret_from(environment: Mapping[str, str] | None = None, name: str = SECRET_ENV) -> bytes:
    """A launch's secret from ``environment`` (else this process's), as its backend passed it:
    in the variable itself or in the private file ``CREW_SECRET_FILE`` names."""
    source = os.environ if environment is None else environment
    value = source.get(name)
    if source.get(SECRET_FILE_ENV):  # a backend that passes secrets in a file (Slurm): it wins
        value = read_secret_file(source[SECRET_FILE_ENV]).get(name)
    if not value:
        raise RuntimeError(
            f"no {name} in the worker's environment: the worker backend must pass Launch.secrets"
            " to the process it starts (see docs/specification.md)"
        )
    try:
        secret = bytes.fromhex(value)
    except ValueError:
        raise RuntimeError(f"{name} must be hex digits") from None
    if len(secret) < 16:
        raise RuntimeError(f"{name} is too short: at least 16 bytes (32 hex digits)")
    return secret


# ----------------------------------------------------------------------------- seals
class Seal(Protocol):
    """One way of signing objects: who can make it, who can check it."""

    def close(self, key: str, payload: bytes) -> bytes:
        """``payload`` signed for ``key``, as stored."""

    def open(self, key: str, data: bytes) -> tuple[bytes, str] | None:
        """(payload, signer) of ``data`` stored at ``key`` if it checks, else None."""


class Mac:
    """Keyed BLAKE2b over the key and the payload: whoever checks it could have made it."""

    def __init__(self, secret: bytes, signer: str = "") -> None:
        self._secret = secret
        self.signer = signer

    def _tag(self, key: str, payload: bytes | memoryview) -> bytes:
        mac = hashlib.blake2b(key.encode(), key=self._secret, digest_size=_TAG, person=b"crew-seal")
        mac.update(b"\0")
        mac.update(payload)
        return mac.digest()

    def close(self, key: str, payload: bytes) -> bytes:
        return self._tag(key, payload) + payload

    def open(self, key: str, data: bytes) -> tuple[bytes, str] | None:
        payload = memoryview(data)[_TAG:]
        if len(data) >= _TAG and hmac.compare_digest(data[:_TAG], self._tag(key, payload)):
            return payload.tobytes(), self.signer
        return None


class Signature:
    """Ed25519 over a BLAKE2b digest of the key and the payload (one fast pass over large objects):
    only the holder of the private half signs; anyone with the public half checks."""

    def __init__(self, public: bytes, private: bytes | None = None) -> None:
        from cryptography.hazmat.primitives.asymmetric import ed25519  # only where keys are used

        self._private = ed25519.Ed25519PrivateKey.from_private_bytes(private) if private is not None else None
        self._public = ed25519.Ed25519PublicKey.from_public_bytes(public)

    @classmethod
    def generate(cls, seed: bytes) -> Signature:
        from cryptography.hazmat.primitives.asymmetric import ed25519

        public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
        return cls(public, seed)

    @property
    def public(self) -> bytes:
        return self._public.public_bytes_raw()

    @staticmethod
    def _digest(key: str, payload: bytes | memoryview) -> bytes:
        digest = hashlib.blake2b(key.encode(), digest_size=64, person=b"crew-signed")
        digest.update(b"\0")
        digest.update(payload)
        return digest.digest()

    def close(self, key: str, payload: bytes) -> bytes:
        if self._private is None:
            raise PermissionError(f"cannot sign {key!r}: only the crew's controller holds its signing key")
        return self._private.sign(self._digest(key, payload)) + payload

    def open(self, key: str, data: bytes) -> tuple[bytes, str] | None:
        from cryptography.exceptions import InvalidSignature

        payload = memoryview(data)[_SIGNATURE:]
        if len(data) < _SIGNATURE:
            return None
        try:
            self._public.verify(data[:_SIGNATURE], self._digest(key, payload))
        except InvalidSignature:
            return None
        return payload.tobytes(), ""


class Signed:
    """A worker's MAC that names its signer in the object (``<worker>/<launch>``), for answers:
    their key (``inbox/<seq>``) does not say who wrote them, and the reader must know whose key
    to check with. ``signers`` gives the key of a signer the reader accepts (None: refused)."""

    def __init__(self, signers: Callable[[str], bytes | None], me: str = "") -> None:
        self._signers = signers
        self._me = me

    def close(self, key: str, payload: bytes) -> bytes:
        secret = self._signers(self._me)
        if secret is None:
            raise PermissionError(f"cannot sign {key!r}: not this launch's to write")
        name = self._me.encode()
        if len(name) > 255:
            raise ValueError(f"a worker's name and launch number take at most 255 bytes, not {len(name)}")
        return bytes([len(name)]) + name + Mac(secret).close(key, name + b"\0" + payload)

    def open(self, key: str, data: bytes) -> tuple[bytes, str] | None:
        if not data:
            return None
        size = data[0]
        signer = data[1 : 1 + size].decode(errors="replace")
        secret = self._signers(signer)
        if secret is None:
            return None
        opened = Mac(secret).open(key, data[1 + size :])
        if opened is None or not opened[0].startswith(signer.encode() + b"\0"):
            return None
        return opened[0][size + 1 :], signer


def signer_of(worker: str, incarnation: int) -> str:
    """How a launch names itself in what it signs."""
    return f"{worker}/{incarnation}"


# ----------------------------------------------------------------------------- parties
@dataclass(frozen=True, slots=True)
class _Place:
    """What a key is, by its place in the crew's layout (``protocol.py``)."""

    kind: str  # "task", "inbox", "shared" (data, lease) or "own" (the controller's alone)
    worker: str = ""  # task: the launch it is for; beat, exit and refusal keys: their writer
    incarnation: int = 0
    seq: int | None = None  # an answer's task (None: a beat, exit or refusal, which name their writer)


_SHARED, _OWN, _NOBODYS = _Place("shared"), _Place("own"), _Place("inbox", "?", -1)


def _place(key: str) -> _Place:
    """What ``key`` is (on every read and write: kept to a few string operations)."""
    _, _, rest = key.partition("/")
    kind, _, tail = rest.partition("/")
    if kind == "workers":
        name, _, rest = tail.partition("/")
        number, _, seq = rest.partition("/")
        return _Place("task", name, int(number)) if number.isdigit() and seq.isdigit() else _OWN
    if kind == "inbox":
        head = tail.partition(".")[0]
        if head.isdigit() and "/" not in tail:
            return _Place("inbox", seq=int(head))
        entry = parse_inbox_key(key) if "/" not in tail else None
        if entry is None or entry.kind == "result":
            return _NOBODYS  # nobody's: nothing checks
        return _Place("inbox", entry.worker, entry.incarnation)
    if kind in ("data", "args") or (kind == "lease" and not tail):
        return _SHARED
    return _OWN


class RunKeys:
    """The controller's keys for one run of a crew (see the module docstring)."""

    def __init__(self, root: bytes) -> None:
        self.root = root
        self._own = Mac(derive(root, "controller"))
        self._signature: Signature | None = None
        self._launch: dict[str, bytes] = {}
        self._task_macs: dict[tuple[str, int], Mac] = {}

    @classmethod
    def of_run(cls, user_key: bytes, nonce: bytes, store_description: str, name: str) -> RunKeys:
        """A named crew's run: bound to the user's key, the run's nonce, the store's location and
        the crew's name, so that objects copied to another prefix or store, or to another crew, never check."""
        return cls(derive(user_key, "run", nonce.hex(), store_description, name))

    @property
    def signature(self) -> Signature:
        if self._signature is None:  # made when first needed: the cryptography import costs ~6 ms
            self._signature = Signature.generate(derive(self.root, "tasks"))
        return self._signature

    @property
    def public(self) -> bytes:
        """The public half of the crew's signing key, which workers check tasks with."""
        return self.signature.public

    def launch_key(self, worker: str, incarnation: int) -> bytes:
        signer = signer_of(worker, incarnation)
        key = self._launch.get(signer)
        if key is None:
            key = self._launch[signer] = derive(self.root, "launch", signer)
        return key

    def forwarder_key(self, worker: str) -> bytes:
        """A forwarder's key for its inner crew: the same at each of its launches."""
        return derive(self.root, "forwarder", worker)

    def launch_secrets(self, worker: str, incarnation: int, forwarder: bool = False) -> dict[str, str]:
        """What a launch gets through its backend's secret mechanism (``Launch.secrets``)."""
        secrets_ = {SECRET_ENV: self.launch_key(worker, incarnation).hex()}
        if forwarder:
            secrets_[INNER_SECRET_ENV] = self.forwarder_key(worker).hex()
        return secrets_

    def worker_keys(self, worker: str, incarnation: int, tasks_by_mac: bool = False) -> LaunchKeys:
        """The keys one launch holds (for tests and the simulator: a real worker reads its own)."""
        return LaunchKeys(worker, incarnation, self.launch_key(worker, incarnation), self.public, tasks_by_mac)

    def signer_key(self, signer: str) -> bytes | None:
        key = self._launch.get(signer)
        if key is not None:
            return key
        worker, _, number = signer.rpartition("/")
        return self.launch_key(worker, int(number)) if worker and number.isdigit() else None

    def task_mac(self, worker: str, incarnation: int) -> Mac:
        mac = self._task_macs.get((worker, incarnation))
        if mac is None:
            mac = self._task_macs[(worker, incarnation)] = Mac(derive(self.launch_key(worker, incarnation), "tasks"))
        return mac


@dataclass(frozen=True)
class LaunchKeys:
    """What one launch of a worker holds: its own key, and the public half of the crew's."""

    worker: str
    incarnation: int
    key: bytes = b""
    public: bytes = b""
    tasks_by_mac: bool = False  # its tasks are signed with its own key (it runs beside the controller)

    @property
    def signer(self) -> str:
        return signer_of(self.worker, self.incarnation)


class _Party(Protocol):
    def writing(self, place: _Place, key: str) -> Seal: ...

    def reading(self, place: _Place, key: str) -> list[Seal]: ...


class _Controller:
    """How a controller seals and checks each kind of object."""

    def __init__(
        self,
        keys: RunKeys,
        addressee: Callable[[int], tuple[str, int] | None] | None = None,
        tasks_by_mac: Callable[[str, int], bool] | None = None,
    ) -> None:
        self.keys = keys
        self.addressee = addressee
        self.tasks_by_mac = tasks_by_mac or (lambda worker, incarnation: False)

    def writing(self, place: _Place, key: str) -> Seal:
        if place.kind == "task":
            if self.tasks_by_mac(place.worker, place.incarnation):
                return self.keys.task_mac(place.worker, place.incarnation)
            return self.keys.signature
        if place.kind == "shared":
            return self.keys.signature
        if place.kind == "inbox":
            raise PermissionError(f"cannot sign {key!r}: the crew's inbox holds only what workers write")
        return self.keys._own

    def reading(self, place: _Place, key: str) -> list[Seal]:
        if place.kind == "task":  # its own records, read back by a resuming controller
            return [self.keys.task_mac(place.worker, place.incarnation), self.keys.signature]
        if place.kind == "shared":
            return [self.keys.signature]
        if place.kind == "inbox":
            if place.seq is None:  # a beat, exit note or refusal: only the launch its key names
                expected = signer_of(place.worker, place.incarnation)
                return [Signed(lambda signer: self.keys.signer_key(signer) if signer == expected else None)]
            to = self.addressee(place.seq) if self.addressee is not None else None
            if to is None:  # no task of ours has that number now: any launch of this run may say so
                return [Signed(self.keys.signer_key)]
            expected = signer_of(*to)  # only the launch the task went to can answer it
            return [Signed(lambda signer: self.keys.signer_key(signer) if signer == expected else None)]
        return [self.keys._own]


class _Worker:
    """How one launch of a worker seals and checks: it writes only its own inbox objects and
    reads only its own tasks and the crew's shared objects."""

    def __init__(self, keys: LaunchKeys) -> None:
        self.keys = keys
        self._public = Signature(keys.public) if keys.public else None
        self._own_tasks = Mac(derive(keys.key, "tasks")) if keys.tasks_by_mac else self._public
        self._signed = Signed(lambda signer: keys.key if signer == keys.signer else None, keys.signer)

    def writing(self, place: _Place, key: str) -> Seal:
        mine = (place.worker, place.incarnation) == (self.keys.worker, self.keys.incarnation)
        if place.kind == "inbox" and (place.seq is not None or mine):
            return self._signed
        raise PermissionError(f"cannot sign {key!r}: a worker writes only its own answers, beats and notes")

    def reading(self, place: _Place, key: str) -> list[Seal]:
        mine = (place.worker, place.incarnation) == (self.keys.worker, self.keys.incarnation)
        if place.kind == "task" and mine and self._own_tasks is not None:
            return [self._own_tasks]
        if place.kind == "shared" and self._public is not None:
            return [self._public]
        if place.kind == "inbox" and place.seq is not None:  # its own answers, read back
            return [self._signed]
        return []  # not addressed to it: nothing it reads there is trusted


class Sealed:
    """Reads and writes signed objects of one crew through a store, as one party.

    ``party``: a run's root key or :class:`RunKeys` (a controller), or :class:`LaunchKeys` (a
    worker's launch). A controller's ``addressee(seq)`` says which launch task ``seq`` went to
    (only that launch's answer is accepted), and ``tasks_by_mac(worker, launch)`` which launches
    run beside it (see the module docstring).
    """

    def __init__(
        self,
        store: Store,
        party: bytes | RunKeys | LaunchKeys,
        *,
        addressee: Callable[[int], tuple[str, int] | None] | None = None,
        tasks_by_mac: Callable[[str, int], bool] | None = None,
    ) -> None:
        self.store = store
        self._party: _Party
        if isinstance(party, LaunchKeys):
            self._party = _Worker(party)
        else:
            self.keys = party if isinstance(party, RunKeys) else RunKeys(party)
            self._party = _Controller(self.keys, addressee, tasks_by_mac)

    def seal(self, key: str, payload: bytes) -> bytes:
        return self._party.writing(_place(key), key).close(key, payload)

    def unseal_signed(self, key: str, data: bytes) -> tuple[bytes, str]:
        """(payload, signer) of ``data`` read at ``key``; :class:`TamperedObjectError` unless signed
        for it by a party allowed to write there (``signer``: ``<worker>/<launch>``, or ``""``
        for the controller)."""
        for seal in self._party.reading(_place(key), key):
            opened = seal.open(key, data)
            if opened is not None:
                return opened
        raise TamperedObjectError(
            f"store object {key!r} is not signed with this crew's secret by a party that may write it"
            " (forged, altered, another crew's or run's, or another worker's); nothing in it was used"
        )

    def unseal(self, key: str, data: bytes) -> bytes:
        """The payload of ``data`` read at ``key``; :class:`TamperedObjectError` unless signed for it."""
        return self.unseal_signed(key, data)[0]

    def put(self, key: str, payload: bytes) -> None:
        self.store.put(key, self.seal(key, payload))

    def get(self, key: str) -> bytes:
        return self.unseal(key, self.store.get(key))

    def get_signed(self, key: str) -> tuple[bytes, str]:
        return self.unseal_signed(key, self.store.get(key))


def unchecked_payload(data: bytes, key: str) -> bytes:
    """The payload of the signed object ``data`` at ``key``, unchecked: only for plain JSON records
    that ``crew ps`` shows and ``crew stop`` hands to worker classes as untrusted places
    (``Worker.find``), never for anything that is unpickled or trusted."""
    place = _place(key)
    if place.kind == "shared":
        return data[_SIGNATURE:]
    if place.kind == "inbox":  # a worker's: <size><signer> MAC <signer>\0 payload
        size = data[0] if data else 0
        return data[1 + size + _TAG + size + 1 :]
    return data[_TAG:]
