"""Plugin discovery: a pluggy manager, the ``crew`` entry points, and the registries they fill."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy

from crew_core.config import Config
from crew_core.errors import PluginError
from crew_core.plugin import hookspecs
from crew_core.settings import FALSE_WORDS, TRUE_WORDS

if TYPE_CHECKING:
    from crew_core.plugin.store import Store
    from crew_core.plugin.worker import Worker

ENTRY_POINT_GROUP = "crew"
#: Set to ``1`` to load no entry-point plugin, or to a comma-separated list of names to skip.
DISABLE_ENV = "CREW_DISABLE_PLUGINS"

hookimpl = pluggy.HookimplMarker("crew")
log = logging.getLogger("crew")
T = TypeVar("T")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


class PluginLoadWarning(UserWarning):
    """An installed plugin failed to import or register; crew goes on without it."""


class Registry(Generic[T]):
    """Classes registered under unique names, remembering which plugin registered each."""

    def __init__(self, kind: str, attribute: str) -> None:
        self.kind = kind
        self.attribute = attribute  # the class attribute that must equal the registered name
        self._classes: dict[str, T] = {}
        self.owners: dict[str, str] = {}
        self._current_plugin = "?"

    def add(self, name: str, cls: T) -> None:
        """Register ``cls`` as ``name``; raise :class:`PluginError` if the name is taken."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise PluginError(f"{self.kind} name {name!r} must be letters, digits, '-' and '_'")
        if getattr(cls, self.attribute, None) != name:
            raise PluginError(
                f"{self.kind} class {getattr(cls, '__qualname__', cls)!r} is registered as {name!r} but its"
                f" {self.attribute} attribute is {getattr(cls, self.attribute, None)!r}; they must match"
            )
        if name in self._classes and self._classes[name] is not cls:
            raise PluginError(
                f"{self.kind} name {name!r} is registered twice: by plugin"
                f" {self.owners[name]!r} and by plugin {self._current_plugin!r}"
            )
        self._classes[name] = cls
        self.owners[name] = self._current_plugin

    def get(self, name: str) -> T:
        """The class registered as ``name``, or a :class:`PluginError` that lists what exists."""
        try:
            return self._classes[name]
        except KeyError:
            known = ", ".join(sorted(self._classes)) or "none"
            raise PluginError(
                f"unknown {self.kind} class {name!r}; installed: {known}. Install the plugin that"
                " provides it (e.g. `pip install crew-local`); `crew plugins` lists what is found."
            ) from None

    def names(self) -> list[str]:
        return sorted(self._classes)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._classes.items())

    def __contains__(self, name: object) -> bool:
        return name in self._classes


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin, as ``crew plugins`` shows it."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Plugins:
    """A built plugin manager with its filled registries and configuration."""

    manager: pluggy.PluginManager
    stores: Registry[type[Store]]
    workers: Registry[type[Worker]]
    config: Config
    infos: list[PluginInfo]

    def store_class(self, name: str) -> Any:
        return self.stores.get(name)

    def store_class_for_scheme(self, scheme: str) -> Any:
        matches = [cls for _, cls in self.stores.items() if scheme in getattr(cls, "schemes", ())]
        if len(matches) > 1:
            names = ", ".join(repr(cls.name) for cls in matches)
            raise PluginError(f"several stores claim {scheme}:// ({names}); pass store= one of those names and a path")
        if matches:
            return matches[0]
        raise PluginError(
            f"no installed store handles URLs of scheme {scheme!r}:// (installed stores:"
            f" {', '.join(self.stores.names()) or 'none'}); install its plugin, e.g. crew-aws"
            " for s3:// or crew-gcp for gs://"
        )


def _disabled() -> tuple[bool, set[str]]:
    value = os.environ.get(DISABLE_ENV, "").strip()
    if value.lower() in (*TRUE_WORDS, "all"):  # a flag's words, as every CREW_* flag reads them
        return True, set()
    if value.lower() in (*FALSE_WORDS, "none"):
        return False, set()
    return False, {part.strip() for part in value.split(",") if part.strip()}


def _load_entry_points(pm: pluggy.PluginManager, infos: list[PluginInfo]) -> None:
    from importlib.metadata import entry_points

    disable_all, skip = _disabled()
    if disable_all:
        return
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in skip or pm.has_plugin(ep.name):
            continue
        dist = ep.dist.name if ep.dist else None
        version = ep.dist.version if ep.dist else None
        info = PluginInfo(ep.name, dist, version)
        infos.append(info)
        try:
            pm.register(ep.load(), name=ep.name)
            pm.check_pending()  # a misspelt hook is this plugin's bug, caught here
        except Exception as exc:  # a broken plugin must not take crew down with it
            if pm.has_plugin(ep.name):
                pm.unregister(name=ep.name)
            _report(info, exc, "failed to load")


def _report(info: PluginInfo, exc: BaseException, what: str) -> None:
    info.error = f"{type(exc).__name__}: {exc}"
    where = f" from {info.distribution} {info.version}" if info.distribution else ""
    message = f"crew plugin {info.name!r}{where} {what} and is skipped: {info.error}"
    warnings.warn(message, PluginLoadWarning, stacklevel=4)


def _call_each(
    pm: pluggy.PluginManager, infos: list[PluginInfo], hook_name: str, owner_of: Registry[Any] | None, **kwargs: Any
) -> None:
    """Call every implementation of a hook, recording which plugin registered what.

    An installed plugin whose hook raises is reported and skipped; one the caller passed in code
    raises, since that is the caller's own bug to see at once.
    """
    by_name = {info.name: info for info in infos}
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():  # registration order: later plugins override earlier ones
        info = by_name.get(impl.plugin_name)
        if info is not None and info.error:
            continue
        if owner_of is not None:
            owner_of._current_plugin = impl.plugin_name
        config = kwargs.get("config")
        before = dict(config["crew"]) if isinstance(config, Config) else None
        try:
            impl.function(*(kwargs[name] for name in impl.argnames))
            if isinstance(config, Config) and before is not None:  # who set each crew setting (crew config)
                who = info.distribution if info is not None and info.distribution else impl.plugin_name
                crew = config["crew"]
                config.set_by.update({key: who for key in crew if key not in before or before[key] != crew[key]})
        except Exception as exc:
            if info is None or info.distribution is None:
                raise
            _report(info, exc, f"failed in {hook_name}")


def get_plugin_manager(plugins: list[Any] | tuple[Any, ...] = (), entry_points: bool = True) -> Plugins:
    """Build a fresh plugin manager: hookspecs, entry-point plugins, then ``plugins`` given here.

    A plugin that fails to import is reported with a :class:`PluginLoadWarning` and skipped.
    Misspelt hook implementations raise :class:`pluggy.PluginValidationError`.
    """
    pm = pluggy.PluginManager("crew")
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    if entry_points:
        _load_entry_points(pm, infos)
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        if pm.has_plugin(name):
            name = f"{name}-{id(plugin)}"
        pm.register(plugin, name=name)
        infos.append(PluginInfo(name, None, None))
    pm.check_pending()
    stores: Registry[type[Store]] = Registry("store", "name")
    workers: Registry[type[Worker]] = Registry("worker", "worker_class")
    _call_each(pm, infos, "crew_register_stores", stores, registry=stores)
    _call_each(pm, infos, "crew_register_workers", workers, registry=workers)
    config = Config()
    _call_each(pm, infos, "crew_configure", None, config=config)
    for info in infos:
        if info.error is None:
            plugin = pm.get_plugin(info.name)
            info.hooks = sorted(c.name for c in pm.get_hookcallers(plugin) or ()) if plugin else []
    return Plugins(pm, stores, workers, config, infos)


_default: Plugins | None = None


def default_plugins() -> Plugins:
    """The plugin manager built from installed entry points, built once per process."""
    global _default
    if _default is None:
        _default = get_plugin_manager()
    return _default


def reset_default_plugins() -> None:
    """Forget the default plugin manager: the next crew builds it again (and ``crew_configure``
    reads the environment again). For tests that change what plugins configure."""
    global _default
    _default = None


def open_store(plugins: Plugins, store: Any, options: dict[str, Any]) -> tuple[Any, bool]:
    """The store ``Crew(store=...)`` names (a name, URL, path or Store), and whether it was made here."""
    from crew_core.plugin.store import Store

    if isinstance(store, Store):
        return store, False
    if isinstance(store, os.PathLike):
        store = os.fspath(store)
    if not store:
        raise PluginError("no store given and no plugin sets a default one: pip install crew-local")
    if not isinstance(store, str):
        raise TypeError(f"store must be a name, a URL, a path or a Store, not {type(store).__name__}")
    if "://" in store:
        scheme, _, rest = store.partition("://")
        if not rest.strip("/"):
            raise ValueError(f"store URL {store!r} names no location (a bucket, a folder): say which")
        cls = plugins.store_class_for_scheme(scheme)
        return _made(cls, store, lambda: cls.from_url(store, **{**plugins.config[cls.name], **options}))
    if store in plugins.stores:
        cls = plugins.store_class(store)
        return _made(cls, store, lambda: cls(**{**plugins.config[cls.name], **options}))
    if store.startswith(("/", ".", "~")) or os.sep in store:
        cls = plugins.store_class_for_scheme("file")
        return _made(cls, store, lambda: cls.from_url(store, **{**plugins.config[cls.name], **options}))
    plugins.store_class(store)  # raises PluginError listing the known stores
    raise AssertionError("unreachable")


def sweep_temporary_stores(plugins: Plugins) -> None:
    """Remove what controllers that ended left of temporary stores on this machine (a ``local``
    folder in RAM after a ``kill -9``): each crew does it as it opens. Never stops a crew opening."""
    for name in plugins.stores.names():
        try:
            plugins.store_class(name).sweep_temporary()
        except Exception as exc:
            log.warning("crew: cannot sweep the temporary %s stores left by ended controllers: %s", name, exc)


def _made(cls: type, store: str, make: Callable[[], Any]) -> tuple[Any, bool]:
    """The store ``make`` builds; an option its class does not take is an error naming both."""
    try:
        return make(), True
    except TypeError as exc:  # an unknown or mistyped option (store_options, the config section)
        raise TypeError(f"store class {cls.__name__!r} ({store!r}) rejected its options: {exc}") from exc


def store_spec(store: Any) -> dict[str, Any]:
    """What a worker needs to rebuild ``store``: its registered name, class path and config."""
    cls = type(store)
    return {"name": cls.name, "class": f"{cls.__module__}:{cls.__qualname__}", "config": store.config()}


def store_from_config(spec: dict[str, Any], plugins: Plugins | None = None) -> Any:
    """Rebuild a store inside a worker from :func:`store_spec`'s output.

    The registered name comes first; the class path is the fallback for a store class that was
    registered in code (``get_plugin_manager([plugin])``) rather than through an entry point.
    """
    plugins = plugins or default_plugins()
    try:
        cls = plugins.store_class(spec["name"])
    except PluginError:
        if "class" not in spec:
            raise
        from importlib import import_module

        module, _, qualname = spec["class"].partition(":")
        try:
            cls = import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError) as exc:
            raise PluginError(
                f"store {spec['name']!r} is not installed where this worker runs, and its class"
                f" {spec['class']} cannot be imported ({exc}); install the store's plugin there"
            ) from exc
    return cls.from_config(spec.get("config", {}))
