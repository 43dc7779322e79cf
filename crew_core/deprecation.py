"""Old names and keywords of the public API that still work for one minor release, with a warning.

One place for the wording of the warning and for the sentinel that tells an omitted limit (the
default) from ``None`` (no limit); see ``docs/guide/api-design.md``.
"""

from __future__ import annotations

import enum
import warnings
from typing import Final

from crew_core.errors import CrewDeprecationWarning


class _Default(enum.Enum):
    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return "<default>"


#: An omitted limit (``idle_timeout``, ``job_timeout``): the default, where ``None`` is no limit.
DEFAULT: Final = _Default.DEFAULT
Default = _Default


def renamed(old: str, new: str, *, stacklevel: int = 3, note: str = "") -> None:
    """Warn that ``old`` is now spelt ``new``; ``stacklevel`` 3 points at the caller of the caller."""
    warnings.warn(f"{old} is deprecated: use {new}{note} (the old spelling goes in the next minor release)",
                  CrewDeprecationWarning, stacklevel=stacklevel)  # fmt: skip

