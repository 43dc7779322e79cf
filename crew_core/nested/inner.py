"""What a forwarder's inner crew is: its store, worker classes, recruits and settings.

A user gives it as ``inner=dict(...)`` to ``crew.recruit(worker_class="nested", ...)``; it travels
to the forwarder as JSON on the ``crew worker --inner`` command line (no secret is in it: the
inner crew's secret is derived from the outer crew's, which travels in the environment). It is
checked here, in the controller, so that a mistake is an error at ``recruit`` rather than a
forwarder that fails at every launch.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crew_core.config import CREW_DEFAULTS

#: The keys ``inner=`` takes.
KEYS = ("store", "store_options", "worker_classes", "recruit", "settings")


@dataclass(frozen=True)
class InnerSpec:
    """A checked ``inner=`` dict (see :meth:`parse`)."""

    store: str | None = None
    store_options: dict[str, Any] = field(default_factory=dict)
    worker_classes: list[str] | None = None
    recruit: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, inner: object) -> InnerSpec:
        """Check ``inner``: every key known, every value of the right type, all of it JSON.

        ``store``: a store name, URL or path (None: the default store); ``store_options``: the
        store's options; ``worker_classes``: registered names; ``recruit``: a list of
        :meth:`Crew.recruit` keyword dicts (``workers``, ``worker_class``, ``tags``, ``idle_timeout``
        and the class's options); ``settings``: :class:`Crew` settings (``max_tries``, ...).
        """
        if not isinstance(inner, Mapping):
            raise TypeError(f"inner must be a dict (store=, worker_classes=, recruit=, settings=), not {inner!r}")
        unknown = sorted(set(inner) - set(KEYS))
        if unknown:
            raise TypeError(f"inner got unknown key(s) {unknown}; known: {list(KEYS)}")
        store = inner.get("store")
        if store is not None and (not isinstance(store, str) or not store):
            raise TypeError(f"inner['store'] must be a store name, URL or path, not {store!r}")
        options = _dict(inner.get("store_options", {}), "inner['store_options']")
        classes = inner.get("worker_classes")
        listed = isinstance(classes, list | tuple) and all(isinstance(c, str) for c in classes)
        if classes is not None and not listed:
            raise TypeError(f"inner['worker_classes'] must be a list of registered names, not {classes!r}")
        recruit = inner.get("recruit", [])
        if isinstance(recruit, Mapping):
            recruit = [recruit]
        if not isinstance(recruit, list | tuple) or not recruit:
            raise ValueError(f"inner['recruit'] must list at least one recruit(...) as a dict, not {recruit!r}")
        recruits = [_recruit(item, f"inner['recruit'][{i}]") for i, item in enumerate(recruit)]
        settings = _dict(inner.get("settings", {}), "inner['settings']")
        unknown = sorted(set(settings) - set(CREW_DEFAULTS))
        if unknown:
            raise TypeError(f"inner['settings'] has unknown setting(s) {unknown}; known: {sorted(CREW_DEFAULTS)}")
        spec = cls(store, options, list(classes) if classes is not None else None, recruits, settings)
        try:
            json.dumps(spec.to_json())
        except (TypeError, ValueError) as exc:
            raise TypeError(f"inner must hold plain data only (it travels as JSON): {exc}") from None
        return spec

    def to_json(self) -> dict[str, Any]:
        return {"store": self.store, "store_options": self.store_options, "worker_classes": self.worker_classes,
                "recruit": self.recruit, "settings": self.settings}  # fmt: skip


def _dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise TypeError(f"{what} must be a dict with string keys, not {value!r}")
    return dict(value)


def _recruit(item: object, what: str) -> dict[str, Any]:
    options = _dict(item, what)
    if "initializer" in options or "initargs" in options:
        raise TypeError(f"{what} cannot hold an initializer (it travels as JSON): pass initializer= to the outer"
                        " recruit(worker_class='nested', ...), whose inner workers run it")  # fmt: skip
    workers = options.get("workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"{what}['workers'] must be a whole number of at least 1, not {workers!r}")
    worker_class = options.get("worker_class")
    if worker_class is not None and not isinstance(worker_class, str):
        raise TypeError(f"{what}['worker_class'] must be a registered name, not {worker_class!r}")
    tags = options.get("tags")
    if isinstance(tags, list | tuple):
        options["tags"] = list(tags)
    elif tags is not None and not isinstance(tags, str):
        raise TypeError(f"{what}['tags'] must be a string or a list of strings, not {tags!r}")
    return options


def inner_name(crew_id: str, worker: str) -> str:
    """The inner crew's name: the same for every launch of one forwarder, so a relaunch resumes it."""
    name = re.sub(r"[^a-z0-9_-]", "-", f"{crew_id}-{worker}".lower())
    if len(name) > 63:
        name = f"{name[:40]}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"
    return name


def inner_secret(outer: bytes, name: str) -> bytes:
    """The inner crew's key: derived from the outer crew's secret, so it never touches a disk or the store."""
    return hashlib.blake2b(name.encode(), key=outer, digest_size=32, person=b"crew-inner").digest()
