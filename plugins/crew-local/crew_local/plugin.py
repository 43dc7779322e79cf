"""crew-local's entry point: registers the local store and the local worker classes."""

from __future__ import annotations

from crew_core.plugin import hookimpl


@hookimpl
def crew_register_stores(registry):
    from .store import LocalStore

    registry.add("local", LocalStore)


@hookimpl
def crew_register_workers(registry):
    from .executor_worker import ExecutorWorker
    from .forwarder_worker import ForwarderWorker
    from .subprocess_worker import SubprocessWorker

    registry.add("subprocess", SubprocessWorker)
    registry.add("executor", ExecutorWorker)
    registry.add("nested", ForwarderWorker)


@hookimpl
def crew_configure(config):
    # With crew-local installed, Crew() works out of the box on this machine.
    config["crew"].setdefault("store", "local")
    config["crew"].setdefault("worker_classes", ["subprocess", "executor"])
