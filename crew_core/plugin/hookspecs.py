"""Every hook a crew plugin can implement, documented where it is declared.

A plugin is a module (or object) with functions marked ``@crew_core.hookimpl`` whose names match
these specifications. It is found through the ``crew`` entry-point group of its distribution::

    [project.entry-points.crew]
    mybackend = "crew_mybackend.plugin"

An implementation may accept fewer arguments than the specification offers; hooks only ever
gain arguments. Hooks return nothing: they fill the object they are given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from crew_core.config import Config
    from crew_core.plugin.registry import Registry
    from crew_core.plugin.store import Store
    from crew_core.plugin.worker import Worker

hookspec = pluggy.HookspecMarker("crew")


@hookspec
def crew_register_stores(registry: Registry[type[Store]]) -> None:
    """Register store classes: ``registry.add("s3", S3Store)``.

    Called once when a plugin manager is built, before :func:`crew_configure`. ``registry.add``
    raises :class:`~crew_core.errors.PluginError` if another plugin already took the name. The
    class's :attr:`~crew_core.Store.schemes` lets users name it by URL (``s3://...``).
    """


@hookspec
def crew_register_workers(registry: Registry[type[Worker]]) -> None:
    """Register worker classes: ``registry.add("aws-batch", BatchWorker)``.

    Called once when a plugin manager is built, before :func:`crew_configure`. Users name a
    worker class in ``Crew(worker_classes=[...])`` and ``Crew.recruit(worker_class=...)``.
    """


@hookspec
def crew_configure(config: Config) -> None:
    """Set defaults for the crew and for store and worker classes.

    Called once per plugin manager after registration, in plugin order (later plugins override
    earlier ones). ``config["crew"]`` holds the controller's settings (``max_tries``,
    ``heartbeat_interval``, ``heartbeat_timeout``, ``stop_grace``, ``auto_restart``) and the
    defaults of ``Crew()``'s arguments ``store`` and ``worker_classes`` (crew-local sets
    ``"local"`` and ``["subprocess", "executor"]``);
    ``config["<store or worker name>"]`` holds keyword arguments given to that class unless the
    user passes them explicitly, e.g. ``config["aws-batch"]["job_queue"] = "spot"``.
    """
