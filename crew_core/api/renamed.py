"""The :class:`Crew`'s old keywords and method names (``docs/guide/api-design.md``): each still
works, with its old meaning, for one minor release and a :class:`CrewDeprecationWarning` that
points at the user's line.

Off the hot path: :meth:`Crew.send` calls :func:`send_keywords` only when an old keyword is given
(or the function is missing), so a call spelt the new way pays one test for the old names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from crew_core.deprecation import DEFAULT, Default, renamed

if TYPE_CHECKING:
    from crew_core.api.handle import WorkerHandle


def fn_given(
    method: str, fn: Callable[..., Any] | None, fun: Callable[..., Any] | None, *, stacklevel: int = 4
) -> Callable[..., Any]:
    """The function of :meth:`Crew.send` or :meth:`Crew.map`, given as ``fn`` or (old) ``fun=``.

    ``stacklevel`` 4 points at the caller of the method that calls this.
    """
    if fun is not None:
        renamed(f"{method}(fun=)", f"{method}(fn=)", stacklevel=stacklevel)
        if fn is not None:
            raise TypeError(f"{method}() got both fn and fun= (the old name of fn): give fn only")
        return fun
    if fn is None:
        raise TypeError(f"{method}() missing its function: {method}(fn, ...)")
    return fn


def send_keywords(
    fn: Callable[..., Any] | None,
    job_timeout: float | Default | None,
    fun: Callable[..., Any] | None,
    timeout: float | None,
) -> tuple[Callable[..., Any], float | Default | None]:
    """:meth:`Crew.send`'s function and job timeout, from the old ``fun=`` and ``timeout=`` too."""
    fn = fn_given("send", fn, fun, stacklevel=5)  # through send_keywords
    if timeout is not None:  # None was the crew's default, as an omitted job_timeout is now
        renamed("send(timeout=)", "send(job_timeout=)", stacklevel=4)
        if job_timeout is DEFAULT:
            job_timeout = timeout
    return fn, job_timeout


def recruit_idle_timeout(idle_timeout: float | Default | None, timeout: float | None) -> float | Default | None:
    """:meth:`Crew.recruit`'s ``idle_timeout``, from the old ``timeout=`` too (None: the class's default)."""
    if timeout is not None:
        renamed("recruit(timeout=)", "recruit(idle_timeout=)", stacklevel=4)
        if idle_timeout is DEFAULT:
            return timeout
    return idle_timeout


class RenamedMethods:
    """The :class:`Crew`'s old method names (a part of :class:`Crew`)."""

    if TYPE_CHECKING:

        def stop(self, tags: str | Iterable[str] | None = None, idle_only: bool = True) -> list[WorkerHandle]: ...

    def shutdown(self, tags: str | Iterable[str] | None = None, idle_only: bool = True) -> list[WorkerHandle]:
        """Deprecated name of :meth:`stop` (``Executor.shutdown`` ends an executor; this stops workers)."""
        renamed("Crew.shutdown()", "Crew.stop()", stacklevel=3)
        return self.stop(tags, idle_only)
