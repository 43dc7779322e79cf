"""What a plugin author imports: the store and worker base classes, the hooks, and backend helpers.

A store plugin subclasses :class:`Store`; a worker plugin subclasses :class:`Worker` and starts
each :class:`Launch`; both register through :data:`hookimpl` functions (see
``docs/specification.md``). Nothing in this package imports the controller (import-linter checks
it), though importing it runs ``crew_core/__init__.py`` as any ``crew_core.*`` import does.
Two names load on first use, as they sit above this package: :func:`run_worker` (the worker's
loop, for a worker class that runs it in-process) and :class:`InnerSpec` (a nested worker's
``inner=`` dict, for a worker class that starts forwarders).

Plugins import only :mod:`crew_core` (the user's API), this package, :mod:`crew_core.errors`
and :mod:`crew_core.testing`; ``tests/test_plugin_imports.py`` checks it.
"""

from typing import TYPE_CHECKING, Any

from crew_core.config import Config
from crew_core.errors import CrewError, KeyNotFoundError, PluginError, StoreError, StoreGoneError, WorkerLaunchError
from crew_core.plugin.launches import LABEL_ENV, LaunchSeen, crew_label, launch_in
from crew_core.plugin.processes import (
    environment_variable,
    kill_tree,
    own_processes,
    process_alive,
    process_start,
    same_process_alive,
)
from crew_core.plugin.registry import (
    PluginLoadWarning,
    Registry,
    default_plugins,
    get_plugin_manager,
    hookimpl,
    reset_default_plugins,
    store_from_config,
    store_spec,
)
from crew_core.plugin.secret_files import SECRET_FILE_ENV, read_secret_file, remove_secret_file, write_secret_file
from crew_core.plugin.store import Store, TemporaryStore, check_key, is_key
from crew_core.plugin.worker import BackendJob, Launch, Worker, end_each

if TYPE_CHECKING:
    from crew_core.agent.runtime import run_worker
    from crew_core.nested.inner import InnerSpec


def __getattr__(name: str) -> Any:
    # Loaded when a worker class uses them: importing the plugin API stays light and layered.
    if name == "run_worker":
        from crew_core.agent.runtime import run_worker

        return run_worker
    if name == "InnerSpec":
        from crew_core.nested.inner import InnerSpec

        return InnerSpec
    raise AttributeError(f"module 'crew_core.plugin' has no attribute {name!r}")


__all__ = [
    "LABEL_ENV",
    "SECRET_FILE_ENV",
    "BackendJob",
    "Config",
    "CrewError",
    "InnerSpec",
    "KeyNotFoundError",
    "Launch",
    "LaunchSeen",
    "PluginError",
    "PluginLoadWarning",
    "Registry",
    "Store",
    "StoreError",
    "StoreGoneError",
    "TemporaryStore",
    "Worker",
    "WorkerLaunchError",
    "check_key",
    "crew_label",
    "default_plugins",
    "end_each",
    "environment_variable",
    "get_plugin_manager",
    "hookimpl",
    "is_key",
    "kill_tree",
    "launch_in",
    "own_processes",
    "process_alive",
    "process_start",
    "read_secret_file",
    "remove_secret_file",
    "reset_default_plugins",
    "run_worker",
    "same_process_alive",
    "store_from_config",
    "store_spec",
    "write_secret_file",
]
