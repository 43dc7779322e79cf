"""The executor's settings (``--crew-...`` flags) and the pools of workers they describe.

Snakemake builds :class:`ExecutorSettings` from the command line (``--crew-store``) or the
environment (``SNAKEMAKE_CREW_STORE``); :func:`pools` turns ``--crew-recruit`` specs into
:class:`Pool` records, one ``crew.recruit(...)`` call each.
"""

# ruff: noqa: UP045 - Snakemake reads the settings' types at run time and knows Optional[X], not X | None

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import ExecutorSettingsBase

#: Keys of a recruit spec that crew's ``recruit`` takes itself; ``threads`` is this plugin's.
#: Every other key is an option of the worker class (``cpus``, ``partition``, ``memory`` ...).
RECRUIT_KEYS = frozenset(
    {"workers", "class", "tags", "timeout", "idle_timeout", "tasks_max", "seconds_wall", "threads"}
)

#: Worker options that say how many CPUs a worker has (crew-slurm, crew-aws, crew-gcp).
CPU_OPTIONS = ("cpus", "vcpus", "cpu")


def _strings(values: Any) -> list[str]:
    return [str(value) for value in (values if isinstance(values, list) else [values])]


#: Metadata of a setting that takes several values. Snakemake would turn the list into the text of
#: a list (its ``type`` applies to the whole value), unless a ``parse_func`` takes the value as is.
LIST_OF_STRINGS: dict[str, Any] = {"type": str, "parse_func": _strings, "unparse_func": _strings}


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    """``--crew-<name>`` on the command line, ``SNAKEMAKE_CREW_<NAME>`` in the environment."""

    store: Optional[str] = field(
        default=None,
        metadata={
            "help": "Where the crew keeps its jobs and results: a folder every worker sees, or a URL "
            "(s3://bucket/prefix, gs://bucket/prefix). Default: crew's own default (CREW_STORE, else a "
            "private folder on this machine, which local workers and a single-node Slurm see).",
            "env_var": True,
        },
    )
    worker_class: Optional[str] = field(
        default=None,
        metadata={
            "help": "Worker classes the crew may use, comma-separated (subprocess, executor, slurm, aws-batch, "
            "cloud-run, ...: any installed crew plugin); the first is the default of --crew-recruit. "
            "Default: crew's own default (CREW_WORKER_CLASSES, else subprocess).",
            "env_var": True,
        },
    )
    recruit: Optional[list[str]] = field(
        default=None,
        metadata={
            "help": "Pools of workers to recruit, one spec each: key=value pairs separated by commas "
            "(workers=4,class=slurm,cpus=4,partition=short,tags=big+gpu) or a JSON object; in the environment "
            "variable, separate specs with ';'. Keys: "
            "workers, class, tags (joined by +), timeout or idle_timeout (idle seconds), tasks_max, seconds_wall, "
            "threads "
            "(CPUs a job may use there; default the cpus/vcpus/cpu option, else this machine's CPU count); "
            "any other key is an option of the worker class. Default: one pool of --crew-workers workers "
            "of the default class.",
            "env_var": True,
            "nargs": "+",
            **LIST_OF_STRINGS,
        },
    )
    workers: Optional[int] = field(
        default=None,
        metadata={
            "help": "How many workers the default pool has when --crew-recruit is not given "
            "(default: --jobs, or this machine's CPU count when --jobs is unlimited). Workers start only "
            "when jobs wait for them and stay up between jobs.",
            "env_var": True,
        },
    )
    max_tries: Optional[int] = field(
        default=None,
        metadata={
            "help": "How many times a job may kill its worker (crash) before it fails (crew's max_tries, "
            "default 3). Snakemake's --retries reruns failed jobs on top of this.",
            "env_var": True,
        },
    )
    setting: Optional[list[str]] = field(
        default=None,
        metadata={
            "help": "Other crew settings as KEY=VALUE (heartbeat_interval=1, lease_timeout=600, "
            "stop_grace=5, ...); CREW_<KEY> environment variables work as well.",
            "nargs": "+",
            **LIST_OF_STRINGS,
        },
    )
    warm: bool = field(
        default=False,
        metadata={
            "help": "Run each job's Snakemake in a fork of its worker, which imported Snakemake and its plugins "
            "once, instead of starting 'python -m snakemake' afresh: about 60 ms of CPU per small job instead of "
            "1.2 s. Commands with a --precommand still start afresh.",
            "env_var": True,
        },
    )
    keep_successful_logs: bool = field(
        default=False,
        metadata={
            "help": "Also write the log of each job that succeeded to .snakemake/crew_logs "
            "(failed jobs' logs are always written).",
            "env_var": True,
        },
    )


@dataclass(frozen=True)
class Pool:
    """One ``crew.recruit(...)`` call: ``workers`` workers of ``worker_class`` with ``options``."""

    workers: int
    worker_class: str | None  # None: the crew's default class
    tags: frozenset[str]
    threads: int  # CPUs a job may use on one of these workers
    recruit: dict[str, Any]  # timeout, tasks_max, seconds_wall and the worker class's options


def parse_value(text: str) -> Any:
    """A spec's value: JSON when it parses (numbers, true/false, null, lists), else the text itself."""
    lowered = text.strip().lower()
    if lowered == "none":
        return None
    if lowered in ("inf", "infinity"):
        return math.inf
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_spec(spec: str) -> dict[str, Any]:
    """``workers=2,class=slurm,tags=a+b`` or ``{"workers": 2, ...}`` as a dict."""
    text = spec.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise WorkflowError(f"--crew-recruit {spec!r} is not valid JSON: {exc}")
        if not isinstance(parsed, dict):
            raise WorkflowError(f"--crew-recruit {spec!r} must be a JSON object")
        return parsed
    items = filter(None, (part.strip() for part in text.split(",")))
    return dict(key_value(item, f"--crew-recruit {spec!r}: {item!r}", "workers=4,class=slurm,cpus=2") for item in items)


def key_value(item: str, where: str, example: str) -> tuple[str, Any]:
    """``key=value`` as ``(key, parse_value(value))``; ``where`` and ``example`` make the error's words."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise WorkflowError(f"{where} is not key=value (e.g. {example})")
    return key.strip(), parse_value(value.strip())


def split_tags(value: Any) -> frozenset[str]:
    """Tags written as ``a+b``, ``a,b`` or a list."""
    if value is None:
        return frozenset()
    items = value if isinstance(value, list | tuple | set | frozenset) else str(value).replace(",", "+").split("+")
    return frozenset(str(item).strip() for item in items if str(item).strip())


def pools(settings: ExecutorSettings, jobs: int | None) -> list[Pool]:
    """The pools ``settings`` ask for; ``jobs`` is Snakemake's ``--jobs`` (None: unlimited)."""
    # Specs may also come as one value separated by ";" (handy in SNAKEMAKE_CREW_RECRUIT).
    specs = [parse_spec(part) for spec in settings.recruit or [] for part in spec.split(";") if part.strip()]
    if not specs:
        default = settings.workers or jobs or os.cpu_count() or 1
        specs = [{"workers": default}]
    return [_pool(spec) for spec in specs]


def _pool(spec: dict[str, Any]) -> Pool:
    options = dict(spec)
    workers = options.pop("workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise WorkflowError(f"--crew-recruit: workers must be a whole number of at least 1, not {workers!r}")
    worker_class = options.pop("class", None)
    tags = split_tags(options.pop("tags", None))
    if "timeout" in options:  # this plugin's short key for crew's idle_timeout; its none: the class's default
        idle = options.pop("timeout")
        if idle is not None:
            options.setdefault("idle_timeout", idle)
    threads = options.pop("threads", None)
    if threads is None:
        threads = next((options[key] for key in CPU_OPTIONS if options.get(key) is not None), None)
    if threads is None:
        threads = os.cpu_count() or 1
    try:
        threads = int(threads)
    except (TypeError, ValueError):
        raise WorkflowError(f"--crew-recruit: threads must be a whole number, not {threads!r}")
    return Pool(workers, None if worker_class is None else str(worker_class), tags, max(1, threads), options)


def crew_settings(settings: ExecutorSettings) -> dict[str, Any]:
    """The keyword settings of ``Crew(...)``: ``--crew-max-tries`` and ``--crew-setting KEY=VALUE``."""
    chosen = dict(key_value(item, f"--crew-setting {item!r}", "lease_timeout=600") for item in settings.setting or [])
    if settings.max_tries is not None:
        chosen["max_tries"] = settings.max_tries
    return chosen


def worker_classes(settings: ExecutorSettings) -> list[str] | None:
    """``--crew-worker-class a,b`` as a list (None: crew's default)."""
    if not settings.worker_class:
        return None
    return [name.strip() for name in settings.worker_class.split(",") if name.strip()]
