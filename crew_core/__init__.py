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
    from crew_core.plugin.registry import get_plugin_manager, hookimpl
    from crew_core.plugin.store import Store
    from crew_core.plugin.worker import BackendJob, Launch, Worker
    from crew_core.results import Result, ResultList
    from crew_core.wire.refs import Ref

#: Where each public name lives: loaded on first use, so that what needs none of them (a worker
#: process, ``crew --version``) does not pay for the controller's import.
_LAZY = {
    "Crew": "crew_core.api.crew",
    "CrewExecutor": "crew_core.api.executor",
    "WorkerHandle": "crew_core.api.handle",
    "get_plugin_manager": "crew_core.plugin.registry",
    "hookimpl": "crew_core.plugin.registry",
    "Store": "crew_core.plugin.store",
    "BackendJob": "crew_core.plugin.worker",
    "Launch": "crew_core.plugin.worker",
    "Worker": "crew_core.plugin.worker",
    "Result": "crew_core.results",
    "ResultList": "crew_core.results",
    "Ref": "crew_core.wire.refs",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'crew_core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})

__all__ = [
    "BackendJob",
    "CorruptObjectError",
    "Crew",
    "CrewError",
    "CrewExecutor",
    "JobCancelledError",
    "JobTimeoutError",
    "KeyNotFoundError",
    "Launch",
    "NoWorkersError",
    "PluginError",
    "Ref",
    "RemoteError",
    "Result",
    "ResultList",
    "SerializationError",
    "Store",
    "StoreError",
    "StoreGoneError",
    "TamperedObjectError",
    "UnknownTagError",
    "Worker",
    "WorkerCrashedError",
    "WorkerHandle",
    "WorkerInitError",
    "WorkerLaunchError",
    "WorkerLostError",
    "get_plugin_manager",
    "hookimpl",
]
