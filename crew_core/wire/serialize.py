"""Turning calls and outcomes into bytes with errors that say what went wrong.

Functions and arguments travel separately. A function is pickled once and reused while it is
unchanged (dask does the same), and workers keep unpickled functions by digest, so a stream of
calls to one function pays for it once. Data is pickled with the C pickler when that is safe and
with cloudpickle otherwise (lambdas, closures, anything defined in ``__main__``).
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import traceback as tb_module
import types
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

import cloudpickle

from crew_core.errors import RemoteError, SerializationError
from crew_core.results import CANCELLED, CRASH, ERROR, SUCCESS, TIMEOUT, Result, as_status
from crew_core.wire.protocol import Outcome

_MAIN = b"__main__"


def dumps(
    obj: Any,
    buffer_callback: Callable[[pickle.PickleBuffer], bool] | None = None,
    taken: list[Any] | None = None,
) -> bytes:
    """Pickle ``obj`` as cloudpickle would, taking the C pickler's fast path when that is equivalent.

    The C pickler saves classes and functions by reference; that is what cloudpickle does too,
    except for those of ``__main__`` and of modules registered to go by value.
    ``buffer_callback`` is pickle's (a false answer takes a buffer out of band); ``taken``, the
    list it fills, is emptied when the fast path's attempt is thrown away.
    """
    if not cloudpickle.list_registry_pickle_by_value():
        try:
            data = pickle.dumps(obj, protocol=5, buffer_callback=buffer_callback)
        except Exception:
            pass
        else:
            if _MAIN not in data:
                return data
        if taken is not None:
            taken.clear()
    return cast(bytes, cloudpickle.dumps(obj, protocol=5, buffer_callback=buffer_callback))


def digest(data: bytes) -> str:
    """The content address of some bytes (hex, 32 characters)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# ----------------------------------------------------------------------------- the controller side
class FunctionCache:
    """Pickled functions, reused while a fresh pickle could not differ.

    Only plain functions are cached: one imported by name (its pickle is the name), or one
    pickled by value whose globals, closure and defaults are all immutable (numbers, strings,
    tuples of them, classes, modules, other such functions) and not rebound since. Anything
    else (a callable object, a bound method, a ``functools.partial``, a function that reads a
    dict or a list) is pickled at every send, so a job always sees what the caller holds.
    """

    def __init__(self) -> None:
        self._by_function: weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], str, bytes, str]] = (
            weakref.WeakKeyDictionary()
        )

    def dump(self, fun: Any) -> tuple[str, bytes, str]:
        """``(digest, pickled function, kind)``; raise :class:`SerializationError` if it cannot travel.

        The kind (module and qualified name) groups jobs whose durations are alike.
        """
        fingerprint = _fingerprint(fun)
        if fingerprint is not None:
            cached = self._by_function.get(fun)
            if cached is not None and cached[0] == fingerprint:
                return cached[1], cached[2], cached[3]
        try:
            data = dumps(fun)
        except Exception as exc:
            raise _unpicklable(fun, "function", exc) from exc
        key = digest(data)
        kind = f"{getattr(fun, '__module__', '')}.{getattr(fun, '__qualname__', type(fun).__qualname__)}"
        if fingerprint is not None:
            self._by_function[fun] = (fingerprint, key, data, kind)
        return key, data, kind


_PLAIN = (int, float, complex, str, bytes, bool, type(None), type, types.ModuleType, types.BuiltinFunctionType, range)


def _fingerprint(fun: Any, depth: int = 0) -> tuple[int, ...] | None:
    """Identities of everything a pickle of ``fun`` captures by value; None if it may change unseen."""
    if isinstance(fun, types.BuiltinFunctionType):
        return ()
    if not isinstance(fun, types.FunctionType) or depth > 3:
        return None
    if _by_reference(fun):
        return ()
    names: set[str] = set()
    codes = [fun.__code__]
    while codes:  # the names the function and the functions defined in it read
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
    values = [fun.__globals__.get(name) for name in sorted(names)]
    for cell in fun.__closure__ or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # an empty cell: a closure variable not assigned yet
            values.append(None)
    values += [*(fun.__defaults__ or ()), *(fun.__kwdefaults__ or {}).values()]
    ids: list[int] = []
    for value in values:
        if isinstance(value, types.FunctionType):
            inner = _fingerprint(value, depth + 1)
            if inner is None:
                return None
            ids.extend(inner)
        elif not _immutable(value):
            return None
        ids.append(id(value))
    return tuple(ids)


def _immutable(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, tuple | frozenset) and depth < 2:
        return all(_immutable(item, depth + 1) for item in value)
    return False


def _by_reference(fun: types.FunctionType) -> bool:
    """Whether ``fun`` is pickled by name (importable where the worker runs) rather than by value."""
    module = getattr(fun, "__module__", None)
    if not module or module == "__main__" or module in cloudpickle.list_registry_pickle_by_value():
        return False
    found: Any = sys.modules.get(module)
    for part in fun.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is fun


def _unpicklable(fun: Any, part: str, exc: BaseException) -> SerializationError:
    return SerializationError(
        f"cannot send {getattr(fun, '__qualname__', fun)!r}: its {part} cannot be pickled"
        f" ({type(exc).__name__}: {exc}). Pass data the worker can rebuild (paths, plain"
        " values) or create the object inside the function."
    )


def dump_args(fun: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Pickle a call's arguments; raise :class:`SerializationError` naming the part that fails."""
    try:
        return dumps((args, kwargs))
    except Exception as exc:
        part = "positional arguments"
        try:
            cloudpickle.dumps(args, protocol=5)
        except Exception:
            pass
        else:
            part = "keyword arguments"
        raise _unpicklable(fun, part, exc) from exc


# ----------------------------------------------------------------------------- the worker side
class FunctionTable:
    """Unpickled functions by digest, most recently used kept (a worker's warm cache)."""

    def __init__(self, size: int = 256) -> None:
        self._functions: OrderedDict[str, Any] = OrderedDict()
        self._size = size

    def load(self, key: str, data: bytes) -> Any:
        fun = self._functions.get(key)
        if fun is None:
            if digest(data) != key:
                raise SerializationError(f"function {key} does not match its digest: the task was altered")
            fun = self._functions[key] = cloudpickle.loads(data)
            if len(self._functions) > self._size:
                self._functions.popitem(last=False)
        else:
            self._functions.move_to_end(key)
        return fun


def load_args(data: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args, kwargs = cloudpickle.loads(data)
    return args, kwargs


class Raw(bytes):
    """A job's value, error and output still pickled: what a forwarder's inner crew hands on unread."""


def to_result(job_id: int, tags: frozenset[str], runs: int, outcome: Outcome, worker: str) -> Result:
    """The :class:`Result` of a job from what its worker (``worker``) said; ``runs``: earlier runs
    that ended with the worker dead. An inner crew's worker and runs count too (``Outcome.worker``)."""
    if outcome.worker:
        worker = f"{worker}/{outcome.worker}"
    value = Raw(outcome.payload) if outcome.payload is not None else outcome.value
    tries = runs + max(1, outcome.tries)
    return Result(job_id, as_status(outcome.status), value, outcome.error, outcome.traceback, outcome.warnings,
                  outcome.seconds, worker, tags, tries, outcome.started, outcome.stdout, outcome.stderr)  # fmt: skip


def dump_result(result: Result) -> bytes:
    """A result the controller made (a crash, a cancel: its value and error not pickled yet) as a
    pickled outcome; :func:`load_result` reads it back. A forwarder answers with an inner crew's
    this way, and a named crew keeps its own (``verdicts.py``)."""
    return dump_outcome(Outcome(result.status, result.value, result.error, result.traceback, result.warnings,
                                result.seconds, result.started, result.stdout, result.stderr, result.worker or "",
                                result.tries))  # fmt: skip


def load_result(job_id: int, tags: frozenset[str], data: bytes) -> Result:
    """The :class:`Result` that :func:`dump_result` pickled, for job ``job_id`` carrying ``tags``."""
    outcome = load_outcome(data)
    return Result(job_id, as_status(outcome.status), outcome.value, outcome.error, outcome.traceback, outcome.warnings,
                  outcome.seconds, outcome.worker or None, tags, outcome.tries, outcome.started, outcome.stdout,
                  outcome.stderr)  # fmt: skip


def dump_outcome(outcome: Outcome) -> bytes:
    """Pickle what a job did; a value or error that cannot be pickled becomes an error outcome.

    The result is a plain header (status, timings, who ran it) around the pickled rest, so that a
    forwarder can read the header and pass the rest on without unpickling the job's value.
    """
    status, payload = outcome.status, outcome.payload
    if payload is None:
        status, payload = _dump_payload(outcome)
    header = (str(status), outcome.seconds, outcome.started, outcome.worker, outcome.tries)  # a plain str on the wire
    return pickle.dumps((header, payload), protocol=5)


def _dump_payload(outcome: Outcome) -> tuple[str, bytes]:
    try:
        return outcome.status, dumps((outcome.value, outcome.error, outcome.traceback, outcome.warnings,
                                      outcome.stdout, outcome.stderr))  # fmt: skip
    except Exception as exc:
        error = outcome.error
        text = outcome.traceback
        if error is None:
            value_type = type(outcome.value)
            error = SerializationError(
                f"the job returned a {value_type.__module__}.{value_type.__qualname__} that"
                f" cannot be pickled ({type(exc).__name__}: {exc}); return plain data instead"
            )
            text = "".join(tb_module.format_exception(exc))
        else:
            error = RemoteError(f"{type(error).__qualname__}: {error}")
        record = (None, error, text, outcome.warnings, outcome.stdout, outcome.stderr)
        return ERROR, cast(bytes, cloudpickle.dumps(record, protocol=5))


def load_outcome(data: bytes, raw: bool = False) -> Outcome:
    """Unpickle an outcome; one that cannot be rebuilt here becomes an error outcome.

    ``raw``: read the header only and keep the rest pickled in ``payload`` (a forwarder's inner
    crew hands it on unread).
    """
    try:
        # Signed, so written by one of the crew's workers (dump_outcome): the header is plain data.
        (status, seconds, started, worker, tries), payload = pickle.loads(data)
        if not isinstance(payload, bytes) or not isinstance(worker, str) or not isinstance(tries, int):
            raise TypeError("malformed header")
    except Exception as exc:
        return Outcome(ERROR, error=SerializationError(f"the job's outcome is malformed ({type(exc).__name__}: {exc})"))
    if status not in (SUCCESS, ERROR, TIMEOUT, CANCELLED, CRASH):  # crash: an inner crew's, passed on
        return Outcome(ERROR, error=SerializationError(f"the job's outcome has an unknown status {status!r}"))
    if raw:
        return Outcome(status, seconds=seconds, started=started, worker=worker, tries=tries, payload=payload)
    try:
        value, error, text, warnings, stdout, stderr = cloudpickle.loads(payload)
    except BaseException as exc:  # SystemExit from a __reduce__ too: it must not take the controller down
        error = SerializationError(
            f"the job's outcome cannot be unpickled in the controller ({type(exc).__name__}:"
            f" {exc}); is the module that defines its type importable here?"
        )
        return Outcome(ERROR, error=error, seconds=seconds, started=started, worker=worker, tries=tries)
    return Outcome(status, value, error, text, warnings, seconds, started, stdout, stderr, worker, tries)
