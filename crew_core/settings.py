"""The controller's settings, in one table.

``Crew()``'s checks, the ``CREW_<SETTING>`` environment variables, ``crew config`` and the table in
``docs/specification.md`` §7 are all made from :data:`SETTINGS` (a test checks the docs).
"""

from __future__ import annotations

import math
import re
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
        """A value from an environment variable's text, as :func:`parse_value` reads it (checked by
        :meth:`check` afterwards): an error names the variable and what it takes."""
        return parse_value(raw, self.variable, self.kind, self.unit, f"{self.name} takes {self.accepts}")

    @property
    def accepts(self) -> str:
        """What the setting's variable takes, in words (for errors and the docs)."""
        if self.kind is bool:
            return "true or false (also yes/no, on/off, 1/0)"
        if self.unit == "s":
            words = "a number of seconds, with a unit if you like (30, 30s, 500ms, 5m, 2h, 1d)"
        else:
            words = f"a whole number of {self.unit_name}" if self.kind is int else f"a number of {self.unit_name}"
        if self.inf_is_none:
            words += ", inf (no limit)"
        if self.none is not None:
            words += f", or none ({self.none})"
        return words

    @property
    def unit_name(self) -> str:
        return {"s": "seconds", "MB": "megabytes"}.get(self.unit, self.unit)


#: Units a number of seconds may carry in an environment variable, and what each is worth.
SECOND_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([a-z]*)")
#: The words of a flag variable (any case).
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_value(raw: str, variable: str, kind: type, unit: str, takes: str) -> Any:
    """The one reading of every ``CREW_*`` value: ``none`` (None: the setting's check says whether
    it may be, so that an explicit argument still wins over a variable it would refuse), ``inf`` or
    ``infinity``, a number with a unit of time where ``unit`` is ``"s"`` (``500ms``, ``30s``,
    ``5m``, ``2h``, ``1d``; a bare number is seconds), a whole number for an ``int``, and
    ``true``/``false`` (``yes``/``no``, ``on``/``off``, ``1``/``0``) for a ``bool``. Anything else
    is a ``ValueError`` naming ``variable`` and saying what it ``takes`` (a clause: "x takes ...").

    Ranges are not checked here (``inf`` where no limit makes no sense is the setting's check's to refuse).
    """
    word = raw.strip().lower()

    def wrong(why: str = "") -> ValueError:
        return ValueError(f"{variable}={raw!r}{why}: {takes}")

    if word in ("none", "null"):
        return None
    if kind is bool:
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise wrong()
    if word in ("inf", "+inf", "infinity", "+infinity"):
        return math.inf
    match = _NUMBER.fullmatch(word)
    if match is None:
        raise wrong()
    number, suffix = match.groups()
    if suffix:
        if unit != "s" or suffix not in SECOND_UNITS:
            raise wrong(f" (unknown unit {suffix!r})")
        return float(number) * SECOND_UNITS[suffix]
    if kind is int:
        try:
            return int(number)
        except ValueError:
            raise wrong() from None
    return float(number)


def seconds(raw: str, variable: str, takes: str = "it takes a number of seconds (30, 30s, 500ms, 5m, 2h)") -> float:
    """A number of seconds from a variable's text, as :func:`parse_value` reads it (plugins' own
    ``CREW_*`` variables use this too); ``none`` is an error here."""
    value = parse_value(raw, variable, float, "s", takes)
    if value is None:
        raise ValueError(f"{variable}={raw!r}: {takes}")
    return float(value)


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
        "seconds a job may run unless `send(job_timeout=)` says otherwise (at most 1e9; `math.inf`: no limit)",
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
