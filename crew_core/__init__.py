"""crew: send Python function calls to pools of semi-persistent workers through a data store.

>>> from crew_core import Crew
>>> with Crew() as crew:
...     crew.recruit(workers=2)
...     crew.send(sum, args=([1, 2, 3],))
...     crew.receive().value
"""

from typing import TYPE_CHECKING, Any

from crew_core import _moved
from crew_core.api.crew import Crew
from crew_core.api.handle import WorkerHandle
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
    WorkerLaunchError,
    WorkerLostError,
)
from crew_core.plugin.registry import get_plugin_manager, hookimpl
from crew_core.plugin.store import Store
from crew_core.plugin.worker import BackendJob, Launch, Worker
from crew_core.results import Result, ResultList
from crew_core.wire.refs import Ref

__version__ = "0.1.0"

_moved.install()  # the modules' paths before engine v2 still import

if TYPE_CHECKING:
    from crew_core.api.executor import CrewExecutor


def __getattr__(name: str) -> Any:
    """``CrewExecutor`` loads on first use: a script that only uses ``Crew`` never pays for it."""
    if name == "CrewExecutor":
        from crew_core.api.executor import CrewExecutor

        globals()[name] = CrewExecutor
        return CrewExecutor
    raise AttributeError(f"module 'crew_core' has no attribute {name!r}")

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
    "WorkerLaunchError",
    "WorkerLostError",
    "get_plugin_manager",
    "hookimpl",
]
