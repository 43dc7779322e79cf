"""crew: send Python function calls to pools of semi-persistent workers through a data store.

>>> from crew_core import Crew
>>> with Crew() as crew:
...     crew.recruit(workers=2)
...     crew.send(sum, args=([1, 2, 3],))
...     crew.receive().value
"""

from typing import TYPE_CHECKING, Any

from crew_core import _moved
from crew_core.errors import (
    CorruptObjectError,
    CrewDeprecationWarning,
    CrewError,
    JobCancelledError,
    JobTimeoutError,
    KeyNotFoundError,
    NoWorkersError,
    PluginError,
    RemoteError,
    SerializationError,
    StoreError,
    StoreGoneError,
    TamperedObjectError,
    UnknownTagError,
    WorkerCrashedError,
    WorkerInitError,
    WorkerLaunchError,
    WorkerLostError,
)

__version__ = "0.1.0"

_moved.install()  # the modules' paths before engine v2 still import

if TYPE_CHECKING:
    from crew_core.api.crew import Crew
    from crew_core.api.executor import CrewExecutor
    from crew_core.api.handle import WorkerHandle
    from crew_core.plugin import BackendJob, Launch, Store, Worker, get_plugin_manager, hookimpl  # noqa: F401
    from crew_core.results import Result, ResultList, Status
    from crew_core.wire.refs import Ref

#: Where each public name lives: loaded on first use, so that what needs none of them (a worker
#: process, ``crew --version``) does not pay for the controller's import.
_LAZY = {
    "Crew": "crew_core.api.crew",
    "CrewExecutor": "crew_core.api.executor",
    "WorkerHandle": "crew_core.api.handle",
    "Result": "crew_core.results",
    "ResultList": "crew_core.results",
    "Status": "crew_core.results",
    "Ref": "crew_core.wire.refs",
}

#: The plugin author's names, which moved to :mod:`crew_core.plugin`: they still import from
#: here, with a :class:`CrewDeprecationWarning`, for one minor release.
_PLUGIN_NAMES = frozenset({"get_plugin_manager", "hookimpl", "Store", "BackendJob", "Launch", "Worker"})


def __getattr__(name: str) -> Any:
    import importlib

    if name in _PLUGIN_NAMES:  # not cached here: every use from the old place warns
        from crew_core.deprecation import renamed

        renamed(f"crew_core.{name}", f"crew_core.plugin.{name}", note=" (the plugin author's API)", stacklevel=3)
        return getattr(importlib.import_module("crew_core.plugin"), name)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'crew_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})

__all__ = [
    "CorruptObjectError",
    "Crew",
    "CrewDeprecationWarning",
    "CrewError",
    "CrewExecutor",
    "JobCancelledError",
    "JobTimeoutError",
    "KeyNotFoundError",
    "NoWorkersError",
    "PluginError",
    "Ref",
    "RemoteError",
    "Result",
    "ResultList",
    "SerializationError",
    "Status",
    "StoreError",
    "StoreGoneError",
    "TamperedObjectError",
    "UnknownTagError",
    "WorkerCrashedError",
    "WorkerHandle",
    "WorkerInitError",
    "WorkerLaunchError",
    "WorkerLostError",
]
