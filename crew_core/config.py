"""Settings the plugins' ``crew_configure`` hooks fill: crew defaults and per-class options."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from crew_core.settings import BY_NAME, DEFAULTS, SETTINGS

#: The controller's settings and their defaults (the table is ``settings.SETTINGS``); ``Crew(...)``
#: keyword arguments override them.
CREW_DEFAULTS: dict[str, Any] = DEFAULTS

#: Settings that are True or False.
FLAGS = tuple(setting.name for setting in SETTINGS if setting.kind is bool)


class Config:
    """Sections of defaults: ``config["crew"]`` and one per store or worker class name."""

    def __init__(self) -> None:
        self._sections: dict[str, dict[str, Any]] = {"crew": dict(CREW_DEFAULTS)}
        #: ``{setting: plugin}``: the plugin whose ``crew_configure`` last changed ``config["crew"][setting]``.
        self.set_by: dict[str, str] = {}

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self._sections.setdefault(section, {})

    def sections(self) -> dict[str, dict[str, Any]]:
        """A copy of every non-empty section."""
        return {name: dict(values) for name, values in self._sections.items() if values}

    def __repr__(self) -> str:
        return f"Config({self.sections()!r})"


#: Settings that ``Crew()`` also reads from the environment, as ``CREW_<NAME>`` (explicit arguments win).
ENVIRONMENT_SETTINGS = (*CREW_DEFAULTS, "store", "worker_classes")


def environment_variable(setting: str) -> str:
    return f"CREW_{setting.upper()}"


def settings_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, tuple[Any, str]]:
    """``{setting: (value, variable)}`` for each ``CREW_<SETTING>`` set (and not empty) in ``environ``.

    Numbers are read as numbers, ``none`` as None, ``true``/``false`` for ``auto_restart``, and
    ``CREW_WORKER_CLASSES`` as a comma-separated list; a value that cannot be read is a
    ``ValueError`` naming the variable.
    """
    source = os.environ if environ is None else environ
    found: dict[str, tuple[Any, str]] = {}
    for setting in ENVIRONMENT_SETTINGS:
        variable = environment_variable(setting)
        raw = source.get(variable, "").strip()
        if raw:
            found[setting] = (_parse(setting, raw, variable), variable)
    return found


def _parse(setting: str, raw: str, variable: str) -> Any:
    if setting == "store":
        return raw
    if setting == "worker_classes":
        return [name.strip() for name in raw.split(",") if name.strip()]
    return BY_NAME[setting].parse(raw)
