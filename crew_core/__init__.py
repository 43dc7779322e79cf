"""crew: send Python function calls to pools of semi-persistent workers through a data store.

>>> from crew_core import Crew
>>> with Crew() as crew:
...     crew.recruit(workers=2)
...     crew.send(sum, args=([1, 2, 3],))
...     crew.receive().value
"""

from .crew import Crew
from .errors import (
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
from .executor import CrewExecutor
from .handle import WorkerHandle
from .plugins import get_plugin_manager, hookimpl
from .refs import Ref
from .results import Result, ResultList
from .store import Store
from .worker import BackendJob, Launch, Worker

__version__ = "0.1.0"

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
