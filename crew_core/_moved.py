"""Old module paths that still import: crew_core's flat modules moved into packages (engine v2).

``import crew_core.store`` (or ``from crew_core import protocol``) gives the very module object that
now lives at ``crew_core.plugin.store``: one module under two names, so monkeypatching either
patches both and pickles made by either name load. New code imports the new paths; plugin
authors import from :mod:`crew_core.plugin`. (``crew_core.durable`` is now the package of named
crews; what its one module held is in ``crew_core.durable.journal``.)
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
from types import ModuleType
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from importlib.abc import Loader

#: Old module (under ``crew_core.``) to where it lives now: the one place this fact is kept.
MOVED = {
    "store": "plugin.store",
    "worker": "plugin.worker",
    "hookspecs": "plugin.hookspecs",
    "plugins": "plugin.registry",
    "processes": "plugin.processes",
    "protocol": "wire.protocol",
    "serialize": "wire.serialize",
    "signing": "wire.signing",
    "refs": "wire.refs",
    "ledger": "engine.ledger",
    "backlog": "engine.backlog",
    "dispatcher": "engine.dispatcher",
    "supervisor": "engine.supervisor",
    "summary": "engine.summary",
    "verdicts": "durable.verdicts",
    "claim": "durable.claim",
    "leftovers": "durable.leftovers",
    "manager": "runner.manager",
    "inbox": "runner.inbox",
    "resume": "runner.resume",
    "crew": "api.crew",
    "executor": "api.executor",
    "joblib": "api.joblib",
    "gather": "api.gather",
    "handle": "api.handle",
    "progress": "api.progress",
    "runtime": "agent.runtime",
    "feed": "agent.feed",
    "sandbox": "agent.sandbox",
    "forwarder": "nested.forwarder",
    "inner": "nested.inner",
}


class _Alias:
    """Finds ``crew_core.<old>`` and loads it as the module at its new path (a meta path finder and
    loader by their protocol; importlib.abc is not imported, which would cost ``import crew_core`` 6 ms)."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.partition(".")
        if package != "crew_core" or name not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, cast("Loader", self), loader_state=f"crew_core.{MOVED[name]}")

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(spec.loader_state)
        spec.loader_state = module.__spec__  # importlib now sets the alias's spec: exec_module puts this back
        return module

    def exec_module(self, module: ModuleType) -> None:
        alias = module.__spec__
        assert alias is not None
        module.__spec__ = alias.loader_state


def install() -> None:
    """Make the old paths importable (called once by ``crew_core/__init__.py``)."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
