"""What :class:`~crew_core.Crew`'s methods check in their arguments, before anything changes.

Each check raises the ``TypeError``, ``ValueError`` or crew error its method documents, with a
message that says what to pass instead, and returns the argument in the form the crew keeps.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from crew_core.api.handle import WorkerHandle
from crew_core.config import CREW_DEFAULTS, settings_from_environment
from crew_core.deprecation import DEFAULT
from crew_core.errors import NoWorkersError, PluginError, SerializationError, UnknownTagError
from crew_core.plugin.registry import Plugins
from crew_core.plugin.worker import Worker, as_tags
from crew_core.settings import BY_NAME
from crew_core.settings import check as check_settings
from crew_core.wire.serialize import dumps
from crew_core.wire.signing import SECRET_ENV

#: ``{setting: (value, variable)}`` for the settings a ``CREW_<SETTING>`` variable gave.
FromEnvironment = dict[str, tuple[Any, str]]


# ---------------------------------------------------------------------- Crew()
def crew_config(plugins: Plugins, settings: dict[str, Any]) -> tuple[dict[str, Any], FromEnvironment]:
    """The crew's settings: the plugins' defaults, then ``CREW_<SETTING>`` variables, then ``settings``.

    Also returns the settings the environment gave that no argument overrode (for error notes).
    """
    config = dict(plugins.config["crew"])
    from_environment = settings_from_environment()
    config.update({key: value for key, (value, _) in from_environment.items()})
    for key, value in settings.items():
        if key not in CREW_DEFAULTS:
            raise TypeError(f"Crew() got an unknown setting {key!r}; known: {sorted(CREW_DEFAULTS)}")
        config[key] = value
        from_environment.pop(key, None)  # an explicit argument wins
    return config, from_environment


def check_config(config: dict[str, Any], from_environment: FromEnvironment) -> None:
    """Check the settings before the store exists: a bad one leaves no folder behind."""
    try:
        check_settings(config, 1.0)
    except (TypeError, ValueError) as exc:
        for key, (_, variable) in from_environment.items():
            if str(exc).startswith(key):
                exc.add_note(f"{key} came from the environment variable {variable}")
        raise


def store_options(options: Any) -> dict[str, Any]:
    """``store_options``: a dict (None: no options)."""
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"store_options must be a dict, not {type(options).__name__}")
    return options or {}


def worker_classes(plugins: Plugins, names: Any) -> list[type[Worker]]:
    """The crew's worker classes from ``names`` (None: every registered class)."""
    if names is None:
        names = plugins.workers.names()
    if isinstance(names, str | bytes) or not isinstance(names, Iterable):
        raise TypeError(f"worker_classes must be a list of names or Worker classes, not {names!r}")
    return [worker_class(plugins, name) for name in names]


def worker_class(plugins: Plugins, spec: str | type[Worker]) -> type[Worker]:
    """A worker class given by its registered name, or as itself."""
    if isinstance(spec, type) and issubclass(spec, Worker):
        return spec
    if isinstance(spec, str):
        return plugins.workers.get(spec)
    raise TypeError(f"a worker class is a registered name or a Worker subclass, not {spec!r}")


def default_worker_class(classes: list[type[Worker]]) -> type[Worker]:
    """The class :meth:`Crew.recruit` uses when it is given none: the crew's first."""
    if not classes:
        raise PluginError("this crew has no worker classes: install crew-local or pass worker_classes=")
    return classes[0]


# ---------------------------------------------------------------------- workers
def idle_timeout(value: Any) -> float | None:
    """:meth:`Crew.recruit`'s ``idle_timeout`` as the recruiter takes it: None for the class's
    default (it was omitted), ``math.inf`` for no limit (None or ``math.inf`` given), else seconds."""
    if value is DEFAULT:
        return None
    if value is None:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"idle_timeout must be a number of seconds, or None for no limit, not {value!r}")
    if not value > 0:  # zero, negative or NaN
        raise ValueError(f"idle_timeout must be a positive number of seconds (None: no limit), not {value!r}")
    return float(value)


def recruit_arguments(workers: Any, tasks_max: Any, seconds_wall: Any) -> float | None:
    """Check :meth:`Crew.recruit`'s numbers; returns ``seconds_wall`` (None: no limit)."""
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be an integer, not {workers!r}")
    if workers < 0:
        raise ValueError("workers must be zero or more")
    if tasks_max is not None and (isinstance(tasks_max, bool) or not isinstance(tasks_max, int)):
        raise TypeError(f"tasks_max must be an integer or None, not {tasks_max!r}")
    if tasks_max is not None and tasks_max < 1:
        raise ValueError(f"tasks_max must be 1 or more, not {tasks_max!r}")
    return job_timeout(seconds_wall, "seconds_wall")  # positive seconds; None or math.inf: none


def initializer(initializer: Any, initargs: Any) -> bytes | None:
    """:meth:`Crew.recruit`'s ``initializer`` and ``initargs``, pickled together (None: no initializer)."""
    if initializer is None:
        if initargs != ():
            raise TypeError("initargs was given without an initializer: pass initializer= too")
        return None
    if not callable(initializer):
        raise TypeError(f"initializer must be callable (as ProcessPoolExecutor's), not {initializer!r}")
    if isinstance(initargs, str | bytes) or not isinstance(initargs, Iterable):
        raise TypeError(f"initargs must be a tuple of the initializer's arguments, not {initargs!r}")
    initargs = tuple(initargs)
    try:
        return dumps((initializer, initargs))
    except Exception as exc:
        raise SerializationError(
            f"the initializer {getattr(initializer, '__qualname__', initializer)!r} or its initargs cannot be"
            f" pickled to reach the workers: {exc}"
        ) from exc


def worker_count(workers: Any) -> None:
    """:meth:`Crew.launch`'s ``workers``: None (all of them) or a number >= 0."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
        raise TypeError(f"workers must be None or an integer, not {workers!r}")
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be None or a number >= 0, not {workers!r}")


def select(workers: dict[str, WorkerHandle], tags: str | Iterable[str] | None) -> list[WorkerHandle]:
    """The workers carrying every tag in ``tags``; at least one must."""
    wanted = as_tags(tags)
    if wanted and not any(wanted <= h.tags for h in workers.values()):
        raise UnknownTagError(f"no worker carries all of the tags {', '.join(map(repr, sorted(wanted)))}")
    return [h for h in list(workers.values()) if wanted <= h.tags]


# ---------------------------------------------------------------------- jobs
def check_runnable(tag_sets: tuple[frozenset[str], ...], tags: frozenset[str]) -> None:
    """Refuse a job with ``tags`` that none of the workers (their ``tag_sets``) could run."""
    if not tag_sets:
        raise NoWorkersError("the crew has no workers: call crew.recruit() before crew.send()")
    if any(tags <= worker_tags for worker_tags in tag_sets):
        return
    carried = set().union(*tag_sets)
    missing = sorted(tags - carried)
    workers = "; the workers carry " + (", ".join(" + ".join(map(repr, sorted(t))) or "no tags" for t in sorted(
        set(tag_sets), key=sorted)))  # fmt: skip
    if missing:
        raise UnknownTagError(f"no worker carries the tag(s) {', '.join(map(repr, missing))}{workers}")
    raise UnknownTagError(f"no single worker carries all of the tags {', '.join(map(repr, sorted(tags)))}{workers}")


def receive_tags(wanted: frozenset[str], sent: set[str], tag_sets: tuple[frozenset[str], ...]) -> None:
    """Refuse ``tags`` for :meth:`Crew.receive` that no job ``sent`` and no worker (``tag_sets``)
    carries: no result could ever match them, so waiting for one would wait for nothing."""
    missing = sorted(wanted - sent.union(*tag_sets))
    if missing:
        known = ", ".join(map(repr, sorted(sent.union(*tag_sets)))) or "none"
        raise UnknownTagError(f"no job sent to this crew and no worker of it carries the tag(s)"
                              f" {', '.join(map(repr, missing))}, so no result can match; tags known here: {known}")


def call_arguments(fun: Any, args: Any, kwargs: Any) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """A job's function, positional arguments (as a tuple) and keyword arguments (as a dict)."""
    if not callable(fun):
        raise TypeError(f"crew can only send callables, not {type(fun).__name__}")
    if not isinstance(args, tuple):
        if isinstance(args, str | bytes | dict) or not isinstance(args, Iterable):
            raise TypeError(f"args must be a tuple or list of positional arguments, not {type(args).__name__}")
        args = tuple(args)
    if kwargs is None:
        kwargs = {}
    elif not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise TypeError(f"kwargs must be a dict with string keys, not {kwargs!r}")
    return fun, args, kwargs


def crash_tags(
    value: Iterable[str | Iterable[str]] | None, tag_sets: tuple[frozenset[str], ...]
) -> tuple[frozenset[str], ...]:
    """A job's ``crash_tags``: tag sets for its tries after a crash, each one some worker carries."""
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"crash_tags must be a list of tag sets (['highmem', 'hugemem']), not {value!r}")
    sets = tuple(as_tags(tags) for tags in value)
    for tags in sets:
        check_runnable(tag_sets, tags)
    return sets


def iterables(given: tuple[Any, ...]) -> None:
    """:meth:`Crew.map`'s iterables of arguments: at least one, none a string."""
    if not given:
        raise TypeError("map() needs at least one iterable of arguments")
    for iterable in given:
        if isinstance(iterable, str | bytes) or not isinstance(iterable, Iterable):
            raise TypeError(f"map() takes iterables of arguments, not {type(iterable).__name__}")


def cancel_arguments(job: Any, tags: Any) -> None:
    """:meth:`Crew.cancel`'s arguments: a job id, or tags."""
    if job is None and tags is None:
        raise TypeError("cancel() takes a job id or tags= (cancel(tags=()) cancels every job in flight)")
    if job is not None and (isinstance(job, bool) or not isinstance(job, int)):
        raise TypeError(f"job must be a job id (an int from send()), not {job!r}")


#: The longest job timeout, in seconds (about 31 years): a worker's timer takes no more.
MAX_JOB_TIMEOUT = BY_NAME["job_timeout"].maximum


def job_timeout(value: Any, name: str = "job_timeout") -> float | None:
    """A job's run-time limit: a positive number of seconds, or None (also ``math.inf``) for none."""
    if value is None or value == math.inf:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, or None for no limit, not {value!r}")
    if not value > 0 or value != value:
        raise ValueError(f"{name} must be a positive number of seconds (None or math.inf: none), not {value!r}")
    if value > MAX_JOB_TIMEOUT:  # past a timer's range the worker could not arm it (OverflowError)
        raise ValueError(f"{name} must be at most {MAX_JOB_TIMEOUT:g} s (None or math.inf: none), not {value!r}")
    return float(value)


def seconds(name: str, value: Any) -> float:
    """A wait of ``value`` seconds: zero or more."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds or None, not {value!r}")
    if not value >= 0:  # negative or NaN
        raise ValueError(f"{name} must be zero or more seconds, not {value!r}")
    return float(value)


def warn_if_secret_set() -> None:
    """``CREW_SECRET`` is a named crew's key: an unnamed crew's is random for each run, so a set
    variable is a sign the user meant to name the crew."""
    if os.environ.get(SECRET_ENV):
        warnings.warn(
            f"{SECRET_ENV} is set but this crew has no name, so it is not used: an unnamed crew's key is"
            " random for each run. Give the crew a name (Crew(name=...)) to resume it with that key,"
            f" or unset {SECRET_ENV}",
            UserWarning,
            stacklevel=3,
        )
