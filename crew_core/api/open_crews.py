"""The crews this process has open: closed when the interpreter exits, asked about when a named crew opens."""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401  # registers its exit hook first: ours must run before it
import os
import threading
import warnings
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crew_core.api.crew import Crew

_open_crews: weakref.WeakSet[Crew] = weakref.WeakSet()


def opened(crew: Crew) -> None:
    """``crew`` is open: close it (or leave it, if named) when the interpreter exits."""
    _open_crews.add(crew)


def closed(crew: Crew) -> None:
    """``crew`` is closed or left: nothing to do for it at exit."""
    _open_crews.discard(crew)


def open_here(where: str, name: str) -> bool:
    """Whether a crew object of this process has named crew ``name`` on store ``where`` open."""
    return any(c.id == name and not c._closed and c.store.describe() == where for c in _open_crews)


# Threading's exit hooks run last in, first out, before atexit's: registered after concurrent.futures'
# own, this one runs first, so a crew forgotten open closes while its pools still work (in a moment,
# not a stop grace); CrewExecutor's, registered after this one, first lets submitted calls finish.
@atexit.register  # as well: if the threading hook could not run (a process ending otherwise)
def _close_open_crews() -> None:  # no worker outlives the interpreter that launched it
    for crew in list(_open_crews):
        try:
            if crew.name is None:
                warnings.warn(f"crew {crew.id} was never closed: closing it as the interpreter exits (use"
                              " 'with Crew(...) as crew:' or crew.close())", ResourceWarning, stacklevel=1)  # fmt: skip
                crew.close()
            else:
                crew._leave()  # a named crew ends by close() only: a script that died resumes it
        except Exception:
            pass


threading._register_atexit(_close_open_crews)  # type: ignore[attr-defined]
# A process forked from this one (a ProcessPoolExecutor's worker, a job's multiprocessing pool)
# holds copies of our crews, not crews of its own: at its exit it must not close them, which
# would delete a temporary store's folder from under the crew that still uses it.
os.register_at_fork(after_in_child=_open_crews.clear)
