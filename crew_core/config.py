"""Settings the plugins' ``crew_configure`` hooks fill: crew defaults and per-class options."""

from __future__ import annotations

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
}


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
