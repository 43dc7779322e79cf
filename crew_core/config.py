"""Settings the plugins' ``crew_configure`` hooks fill: crew defaults and per-class options."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

#: The controller's settings and their defaults; ``Crew(...)`` keyword arguments override them.
CREW_DEFAULTS: dict[str, Any] = {
    "max_tries": 3,  # runs a job may have that end with its worker dead, before status "crash"
    "heartbeat_interval": None,  # seconds between a worker's heartbeats; None: the store's default
    "heartbeat_timeout": None,  # seconds of silence before a started worker counts as dead;
    # None: max(60, 10 heartbeat intervals)
    "stop_grace": 5.0,  # seconds a worker has to answer a stop request before it is killed
    "auto_restart": True,  # relaunch a worker that died holding jobs, without waiting for restart()
    "lease_timeout": 900.0,  # seconds a worker goes on without its controller renewing the crew's lease
    "job_timeout": None,  # seconds a job may run unless send(timeout=) says otherwise; None: no limit
    "capture_output": True,  # jobs' stdout and stderr come back in their results
}

#: Settings that are True or False.
FLAGS = ("auto_restart", "capture_output")


class Config:
    """Sections of defaults: ``config["crew"]`` and one per store or worker class name."""

    def __init__(self) -> None:
        self._sections: dict[str, dict[str, Any]] = {"crew": dict(CREW_DEFAULTS)}

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
    word = raw.lower()
    if word in ("none", "null"):
        return None
    if setting in FLAGS:
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{variable}={raw!r}: {setting} takes true or false")
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{variable}={raw!r}: {setting} takes a number of {_UNITS.get(setting, 'seconds')}") from None


_UNITS = {"max_tries": "tries"}
