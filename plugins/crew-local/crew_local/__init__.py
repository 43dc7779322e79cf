"""crew-local: run a crew on one machine (file-system store, subprocess and executor workers)."""

from .executor_worker import ExecutorWorker
from .store import LocalStore
from .subprocess_worker import SubprocessWorker

__all__ = ["ExecutorWorker", "LocalStore", "SubprocessWorker"]
