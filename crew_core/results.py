"""The :class:`Result` a user receives, and the statuses a job can end with."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Status(enum.StrEnum):
    """How a job ended (:attr:`Result.status`); a ``str``, so ``status == "success"`` holds."""

    SUCCESS = "success"  #: it returned: ``Result.value``
    ERROR = "error"  #: it raised, or its value could not be sent back: ``Result.error``
    CRASH = "crash"  #: it killed its worker on every try: :class:`WorkerCrashedError`
    TIMEOUT = "timeout"  #: it ran past its ``job_timeout``: :class:`JobTimeoutError`
    CANCELLED = "cancelled"  #: :meth:`Crew.cancel` stopped it: :class:`JobCancelledError`


_BY_VALUE = {status.value: status for status in Status}


def as_status(value: str) -> Status:
    """``value``'s :class:`Status`: a dict lookup, as ``Status(value)`` costs 20 times more (once a result)."""
    try:
        return _BY_VALUE[value]
    except KeyError:
        return Status(value)  # the ValueError that names the value


SUCCESS = Status.SUCCESS
ERROR = Status.ERROR
CRASH = Status.CRASH
TIMEOUT = Status.TIMEOUT
CANCELLED = Status.CANCELLED


@dataclass(slots=True)
class Result:
    """What became of one job sent with :meth:`Crew.send`.

    ``status`` is a :class:`Status`: ``SUCCESS`` (``value`` holds the return value), ``ERROR``
    (the function raised or its value could not be sent back: ``error`` holds the exception,
    ``traceback`` its text), ``CRASH`` (the job killed its worker on every try; ``error`` says how
    it died), ``TIMEOUT`` (it ran past its ``job_timeout``: :class:`JobTimeoutError`) or
    ``CANCELLED`` (:meth:`Crew.cancel`: :class:`JobCancelledError`). Being a ``str`` enum, it
    also equals its value (``result.status == "success"``). ``stdout`` and ``stderr`` hold what it
    wrote (the last MiB of each), including the output of programs it ran.
    """

    id: int
    status: Status
    value: Any = None
    error: BaseException | None = None
    traceback: str = ""
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    worker: str | None = None
    tags: frozenset[str] = frozenset()
    tries: int = 1  # runs it had: 1, plus one for each worker that died running it
    started: float | None = None  # wall-clock time (time.time()) the worker started the job
    stdout: str = ""
    stderr: str = ""

    def __post_init__(self) -> None:
        if type(self.status) is not Status:  # a plain string (an old pickle, a plugin): its member
            self.status = as_status(self.status)

    @property
    def ok(self) -> bool:
        """True when the job returned normally."""
        return self.status == SUCCESS

    def get(self) -> Any:
        """Return ``value``, or raise ``error`` as :meth:`concurrent.futures.Future.result` does."""
        if self.error is not None:
            raise self.error
        return self.value


class ResultList(list[Result]):
    """Results in the order of their inputs (what :meth:`Crew.map` returns)."""

    def values(self) -> list[Any]:
        """Each result's value; raises the first error (in input order) as :meth:`Result.get` does."""
        return [result.get() for result in self]

    @property
    def ok(self) -> bool:
        """True when every job returned normally."""
        return all(result.ok for result in self)
