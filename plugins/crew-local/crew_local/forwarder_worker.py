"""The ``"nested"`` worker class: a local forwarder process that runs an inner crew (nested crews)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

from crew_core.plugin import InnerSpec, Launch

from .subprocess_worker import SubprocessWorker


class ForwarderWorker(SubprocessWorker):
    """A local process that forwards jobs to an inner crew (see ``crew_core.nested.forwarder``).

    ``inner`` says what the inner crew is: ``dict(store=..., store_options=..., worker_classes=[...],
    recruit=[dict(workers=100, worker_class="aws-batch", ...)], settings=dict(max_tries=...))``.
    It is checked here, at ``recruit``. The other options are :class:`SubprocessWorker`'s.
    """

    worker_class = "nested"
    nested = True
    stop_grace = 60.0  # a stopped forwarder closes its inner crew (its stop grace, kills) before it leaves

    def __init__(
        self,
        name: str,
        *,
        tags: Iterable[str] | str | None = None,
        timeout: float | None = None,
        inner: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name, tags=tags, timeout=timeout, **options)
        if inner is None:
            raise TypeError(
                "worker class 'nested' needs inner=dict(store=..., recruit=[dict(workers=..., worker_class=...)])"
            )
        self.inner = InnerSpec.parse(inner).to_json()
        self._check_classes()

    def _check_classes(self) -> None:
        """Worker classes named in ``inner`` must be registered here (the forwarder imports the same)."""
        from crew_core.plugin import default_plugins

        registry = default_plugins().workers
        names = list(self.inner["worker_classes"] or [])
        names += [item["worker_class"] for item in self.inner["recruit"] if item.get("worker_class")]
        for name in names:
            registry.get(name)  # PluginError naming what is installed

    def place(self) -> dict[str, Any] | None:
        """None: ``crew stop`` must not kill a forwarder. Once its crew's lease is gone it closes its
        inner crew (stopping the inner workers, queued ones too, and removing the inner objects)
        and leaves; killed, it would leave the inner crew running until the inner lease times out."""
        return None

    def start(self, launch: Launch) -> None:
        spec = json.dumps(self.inner, separators=(",", ":"))
        super().start(dataclasses.replace(launch, args=(*launch.args, "--inner", spec)))
