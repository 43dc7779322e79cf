"""What a plugin author imports: the store and worker base classes, the hooks, and backend helpers.

A store plugin subclasses :class:`Store`; a worker plugin subclasses :class:`Worker` and starts
each :class:`Launch`; both register through :data:`hookimpl` functions (see
``docs/specification.md``). Nothing in this package imports the controller (import-linter checks
it), though importing it runs ``crew_core/__init__.py`` as any ``crew_core.*`` import does.
"""

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
    hookimpl,
    store_from_config,
    store_spec,
)
from crew_core.plugin.secret_files import SECRET_FILE_ENV, remove_secret_file, write_secret_file
from crew_core.plugin.store import Store, TemporaryStore, check_key, is_key
from crew_core.plugin.worker import BackendJob, Launch, Worker, end_each

__all__ = [
    "LABEL_ENV",
    "SECRET_FILE_ENV",
    "BackendJob",
    "Config",
    "CrewError",
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
    "hookimpl",
    "is_key",
    "kill_tree",
    "launch_in",
    "own_processes",
    "process_alive",
    "process_start",
    "remove_secret_file",
    "same_process_alive",
    "store_from_config",
    "store_spec",
    "write_secret_file",
]
