"""Turning calls and outcomes into bytes (cloudpickle) with errors that say what went wrong."""

from __future__ import annotations

import traceback as tb_module
from typing import Any

import cloudpickle

from .errors import RemoteError, SerializationError
from .results import ERROR, SUCCESS


def dump_call(fun: Any, args: tuple, kwargs: dict) -> bytes:
    """Pickle a call; raise :class:`SerializationError` at once if any part cannot travel."""
    if not callable(fun):
        raise TypeError(f"crew can only send callables, not {type(fun).__name__}")
    try:
        return cloudpickle.dumps((fun, args, kwargs), protocol=5)
    except Exception as exc:
        part = "call"
        for name, obj in (("function", fun), ("positional arguments", args), ("keyword arguments", kwargs)):
            try:
                cloudpickle.dumps(obj, protocol=5)
            except Exception:
                part = name
                break
        raise SerializationError(
            f"cannot send {getattr(fun, '__qualname__', fun)!r}: its {part} cannot be pickled"
            f" ({type(exc).__name__}: {exc}). Pass data the worker can rebuild (paths, plain"
            " values) or create the object inside the function."
        ) from exc


def load_call(payload: bytes) -> tuple[Any, tuple, dict]:
    return cloudpickle.loads(payload)


def dump_outcome(
    value: Any,
    error: BaseException | None,
    traceback: str,
    warnings: list[str],
    seconds: float,
    started: float,
) -> bytes:
    """Pickle what a job did; a value or error that cannot be pickled becomes an error outcome."""
    status = SUCCESS if error is None else ERROR
    try:
        return cloudpickle.dumps((status, value, error, traceback, warnings, seconds, started), protocol=5)
    except Exception as exc:
        if error is None:
            error = SerializationError(
                f"the job returned a {type(value).__module__}.{type(value).__qualname__} that"
                f" cannot be pickled ({type(exc).__name__}: {exc}); return plain data instead"
            )
            traceback = "".join(tb_module.format_exception(exc))
        else:
            error = RemoteError(f"{type(error).__qualname__}: {error}")
        return cloudpickle.dumps((ERROR, None, error, traceback, warnings, seconds, started), protocol=5)


def load_outcome(data: bytes) -> tuple:
    """Unpickle an outcome; one that cannot be rebuilt here becomes an error outcome."""
    try:
        return cloudpickle.loads(data)
    except Exception as exc:
        error = SerializationError(
            f"the job's outcome cannot be unpickled in the controller ({type(exc).__name__}:"
            f" {exc}); is the module that defines its type importable here?"
        )
        return (ERROR, None, error, "", [], 0.0, None)
