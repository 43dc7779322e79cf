"""The controller's settings, in one table.

``Crew()``'s checks, the ``CREW_<SETTING>`` environment variables, ``crew config`` and the table in
``docs/specification.md`` §7 are all made from :data:`SETTINGS` (a test checks the docs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    """One setting of the controller: its default, type, unit, range and what it means."""

    name: str
    default: Any
    kind: type  # int, float or bool
    unit: str  # "s", "tries", or "" for a flag
    meaning: str
    none: str | None = None  # what None means, where None is allowed
    minimum: float = 0.0
    strict: bool = True  # the minimum itself is not allowed
    maximum: float = math.inf  # where more would break something (a timer's range)
    inf_is_none: bool = False  # ``math.inf`` means what None means ("no limit")

    @property
    def variable(self) -> str:
        """The environment variable ``Crew()`` reads it from (an explicit argument wins)."""
        return f"CREW_{self.name.upper()}"

    def check(self, value: Any) -> Any:
        """The value, if it is of the right type and range; else an error naming the setting."""
        if value is None and self.none is not None:
            return None
        if self.kind is bool:
            if not isinstance(value, bool):
                raise TypeError(f"{self.name} must be True or False, not {value!r}")
            return value
        integer = self.kind is int
        if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
            kind = "an integer" if integer else "a number"
            raise TypeError(f"{self.name} must be {kind}, not {value!r}")
        if value == math.inf and self.inf_is_none:
            return None
        if value < self.minimum or (self.strict and value == self.minimum) or value != value or value == math.inf:
            bound = ">" if self.strict else ">="
            raise ValueError(f"{self.name} must be {bound} {self.minimum:g} and finite, not {value!r}")
        if value > self.maximum:
            none = " (math.inf: none)" if self.inf_is_none else ""
            raise ValueError(f"{self.name} must be at most {self.maximum:g} {self.unit_name}{none}, not {value!r}")
        return value

    def parse(self, raw: str) -> Any:
        """A value from an environment variable's text (checked by :meth:`check` afterwards)."""
        word = raw.strip().lower()
        if word in ("none", "null"):
            return None  # for a setting that allows no None, check() says so (or an explicit argument wins)
        if self.kind is bool:
            if word in ("1", "true", "yes", "on"):
                return True
            if word in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{self.variable}={raw!r}: {self.name} takes true or false")
        try:
            return int(raw)
        except ValueError:
            pass
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{self.variable}={raw!r}: {self.name} takes a number of {self.unit_name}") from None

    @property
    def unit_name(self) -> str:
        return {"s": "seconds", "MB": "megabytes"}.get(self.unit, self.unit)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "max_tries", 3, int, "tries",
        'runs a job may have that end with its worker dead, before its status is "crash"',
        minimum=1, strict=False,
    ),
    Setting(
        "heartbeat_interval", None, float, "s", "seconds between a worker's heartbeats (at least 0.01)",
        none="the store's `heartbeat_interval` (2 s local, 30 s S3/GCS)",
    ),
    Setting(
        "heartbeat_timeout", None, float, "s",
        "seconds without a heartbeat before a started worker counts as dead (more than `heartbeat_interval`)",
        none="`max(60, 10 * heartbeat_interval)`",
    ),
    Setting(
        "stop_grace", 5.0, float, "s", "seconds a worker has to answer a stop request before it is killed",
        strict=False,
    ),
    Setting(
        "auto_restart", True, bool, "",
        "relaunch a worker that died holding jobs, without waiting for `restart()`",
    ),
    Setting(
        "lease_timeout", 900.0, float, "s",
        "seconds a worker goes on once the crew's lease has stopped moving (its controller is gone):"
        " then it leaves, stopping the job it runs (at least 1)",
        minimum=1.0, strict=False,
    ),
    Setting(
        "job_timeout", None, float, "s",
        "seconds a job may run unless `send(timeout=)` says otherwise (at most 1e9; `math.inf`: no limit)",
        none="no limit", maximum=1e9, inf_is_none=True,
    ),
    Setting("capture_output", True, bool, "", "jobs' stdout and stderr come back in their results"),
    Setting(
        "args_memory", 256.0, float, "MB",
        "megabytes of pickled job arguments the controller keeps in memory until their jobs end; the"
        " arguments of a job that would go past it, or that take more than an eighth of it, are"
        " written to the store by `send` and read from there by the worker (0: every job's)",
        none="no limit", strict=False, inf_is_none=True,
    ),
)  # fmt: skip

BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
#: Every setting's default: what ``config["crew"]`` starts from.
DEFAULTS: dict[str, Any] = {setting.name: setting.default for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The controller's settings, checked (see :func:`check`)."""

    max_tries: int
    heartbeat_interval: float
    heartbeat_timeout: float
    stop_grace: float
    auto_restart: bool
    lease_timeout: float = DEFAULTS["lease_timeout"]
    job_timeout: float | None = None
    capture_output: bool = True
    args_memory: float | None = DEFAULTS["args_memory"]  # megabytes (None: no limit)


def check(config: dict[str, Any], heartbeat_default: float) -> Settings:
    """Check every setting of ``config`` and the rules between them; every error names a setting.

    ``heartbeat_default`` is the store's own interval, used when ``heartbeat_interval`` is None.
    Settings are checked in the order ``Crew()`` always checked them, so the first error is the same.
    """
    s = BY_NAME
    auto_restart = s["auto_restart"].check(config["auto_restart"])
    capture_output = s["capture_output"].check(config["capture_output"])
    job_timeout = s["job_timeout"].check(config["job_timeout"])
    max_tries = s["max_tries"].check(config["max_tries"])
    interval = config["heartbeat_interval"]
    interval = s["heartbeat_interval"].check(heartbeat_default if interval is None else interval)  # paid writes on S3
    if interval < 0.01:
        raise ValueError(f"heartbeat_interval must be at least 0.01 s (a write each time), not {interval!r}")
    timeout = config["heartbeat_timeout"]
    timeout = s["heartbeat_timeout"].check(max(60.0, 10 * interval) if timeout is None else timeout)
    if timeout <= interval:
        raise ValueError(f"heartbeat_timeout ({timeout!r} s) must be longer than heartbeat_interval ({interval!r} s)")
    stop_grace = s["stop_grace"].check(config["stop_grace"])
    lease_timeout = s["lease_timeout"].check(config["lease_timeout"])
    args_memory = s["args_memory"].check(config["args_memory"])
    return Settings(int(max_tries), float(interval), float(timeout), float(stop_grace), auto_restart,
                    float(lease_timeout), None if job_timeout is None else float(job_timeout),
                    capture_output, None if args_memory is None else float(args_memory))  # fmt: skip


def markdown_table() -> str:
    """The settings as the Markdown table in ``docs/specification.md`` §7."""
    rows = ["| Setting | Default | Unit | Meaning |", "|---|---|---|---|"]
    for setting in SETTINGS:
        meaning = setting.meaning + (f"; `None`: {setting.none}" if setting.none is not None else "")
        rows.append(f"| `{setting.name}` | `{setting.default!r}` | {setting.unit or '-'} | {meaning} |")
    return "\n".join(rows)
