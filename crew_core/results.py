"""The :class:`Result` a user receives, and the statuses a job can end with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SUCCESS = "success"
ERROR = "error"
CRASH = "crash"
TIMEOUT = "timeout"
CANCELLED = "cancelled"


@dataclass(slots=True)
class Result:
    """What became of one job sent with :meth:`Crew.send`.

    ``status`` is ``"success"`` (``value`` holds the return value), ``"error"`` (the function
    raised or its value could not be sent back: ``error`` holds the exception, ``traceback`` its
    text), ``"crash"`` (the job killed its worker on every try; ``error`` says how it died),
    ``"timeout"`` (it ran past its timeout: :class:`JobTimeoutError`) or ``"cancelled"``
    (:meth:`Crew.cancel`: :class:`JobCancelledError`). ``stdout`` and ``stderr`` hold what it
    wrote (the last MiB of each), including the output of programs it ran.
    """

    id: int
    status: str
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
