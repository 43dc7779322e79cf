"""Named crews: what is kept in the store so that another controller can go on after its own dies.

The journal of accepted jobs and receipts, the results a controller made itself, the atomic claim on
a crew's name, and finding and stopping crews whose controller is gone (``crew ps``, ``crew stop``)."""

import importlib
from typing import Any

_SUBMODULES = ("journal", "keyfile", "receipts", "verdicts", "claim", "leftovers")


def __getattr__(name: str) -> Any:
    """``crew_core.durable`` was one module before engine v2: its names still resolve, from the journal."""
    if name.startswith("__") or name in _SUBMODULES:  # the import system asks for these: no recursion
        raise AttributeError(f"module 'crew_core.durable' has no attribute {name!r}")
    journal = importlib.import_module("crew_core.durable.journal")
    try:
        return getattr(journal, name)
    except AttributeError:
        raise AttributeError(f"module 'crew_core.durable' has no attribute {name!r}") from None
