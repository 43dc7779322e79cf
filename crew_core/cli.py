"""The ``crew`` command: ``crew plugins`` lists plugins, ``crew ps`` the crews in a store, ``crew stop``
ends one whose controller is gone, ``crew worker`` runs a worker."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any


def _plugins_command(as_json: bool) -> int:
    from crew_core.plugin.registry import default_plugins

    plugins = default_plugins()
    rows: list[dict[str, Any]] = []
    for info in plugins.infos:
        stores = [n for n, owner in plugins.stores.owners.items() if owner == info.name]
        workers = [n for n, owner in plugins.workers.owners.items() if owner == info.name]
        rows.append({
            "name": info.name, "distribution": info.distribution, "version": info.version,
            "hooks": info.hooks, "stores": sorted(stores), "workers": sorted(workers),
            "error": info.error,
        })  # fmt: skip
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no crew plugins installed (try: pip install crew-local)")
    for row in rows:
        where = f"{row['distribution']} {row['version']}" if row["distribution"] else "registered in code"
        print(f"{row['name']} ({where})")
        if row["error"]:
            print(f"  FAILED TO LOAD: {row['error']}")
            continue
        print(f"  hooks:   {', '.join(row['hooks']) or '-'}")
        print(f"  stores:  {', '.join(row['stores']) or '-'}")
        print(f"  workers: {', '.join(row['workers']) or '-'}")
    return 0


def _version() -> str:
    """crew-core's version and protocol, and each installed plugin's distribution and version."""
    from crew_core import __version__
    from crew_core.plugin.registry import default_plugins
    from crew_core.wire import protocol

    lines = [f"crew-core {__version__} (protocol {protocol.PROTOCOL})"]
    for info in default_plugins().infos:
        if info.distribution:
            lines.append(f"{info.distribution} {info.version}")
    return "\n".join(lines)


def _config_command(as_json: bool) -> int:
    """Each setting Crew() would use with no arguments, and where it comes from."""
    from crew_core.config import CREW_DEFAULTS, ENVIRONMENT_SETTINGS, settings_from_environment
    from crew_core.plugin.registry import default_plugins
    from crew_core.settings import BY_NAME

    try:
        environment = settings_from_environment()
    except ValueError as exc:
        print(f"crew config: {exc}", file=sys.stderr)
        return 1
    configured = default_plugins().config["crew"]
    rows = []
    for setting in ENVIRONMENT_SETTINGS:
        if setting in environment:
            value, source = environment[setting][0], f"environment {environment[setting][1]}"
        elif setting in configured and (setting not in CREW_DEFAULTS or configured[setting] != CREW_DEFAULTS[setting]):
            value, source = configured[setting], "a plugin's crew_configure"
        else:
            value, source = CREW_DEFAULTS.get(setting), "default"
        unit = BY_NAME[setting].unit if setting in BY_NAME and value is not None else ""
        rows.append({"setting": setting, "value": value, "unit": unit, "source": source})
    if as_json:
        print(json.dumps(rows, indent=2, default=repr))
        return 0
    width = max(len(row["setting"]) for row in rows)
    values = [f"{row['value']!r} {row['unit']}".rstrip() for row in rows]
    value_width = max(map(len, values))
    for row, value in zip(rows, values, strict=True):
        print(f"{row['setting']:{width}}  {value:{value_width}}  {row['source']}")
    return 0


class _CannotOpen(Exception):
    """The store named on the command line cannot be looked at (said without a traceback)."""


def _open(url: str) -> Any:
    """The store at ``url`` as it is: never created (a mistyped folder is an error, not "no crews")."""
    from crew_core.errors import CrewError, StoreGoneError
    from crew_core.plugin.registry import default_plugins, open_store

    plugins = default_plugins()
    try:
        try:
            store, _ = open_store(plugins, url, {"create": False})
        except TypeError:  # a store class without that option: opening a bucket never makes one
            store, _ = open_store(plugins, url, {})
    except StoreGoneError:
        raise _CannotOpen(f"there is no store at {url} (nothing was created)") from None
    except (CrewError, ValueError, TypeError, OSError) as exc:
        raise _CannotOpen(f"cannot open the store {url}: {exc}") from None
    if getattr(store, "temporary", False):  # "local": a new temporary folder, which holds no crew
        store.close()
        raise _CannotOpen(f"store {url!r} is a new temporary folder each time: give the folder or URL of the store")
    return store


def _worker_classes() -> Any:
    """Name to worker class, through the installed plugins (``crew ps --backends``, ``crew stop``)."""
    from crew_core.plugin.registry import default_plugins

    return default_plugins().workers.get


def _shown(line: str) -> str:
    """A line for the terminal: what records hold came from whoever could write the store, so
    control characters (a newline that fakes a row, an escape sequence) are shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)


def _ps_command(url: str, as_json: bool, backends: bool) -> int:
    from crew_core.durable.leftovers import find_backend_jobs, find_crews

    store = _open(url)
    try:
        crews = []
        for seen in find_crews(store):
            crew = seen.describe()
            if backends:
                search = find_backend_jobs(seen, store, _worker_classes())
                crew["backend_jobs"] = [
                    {**vars(job), "crew": job.crew, "place": dict(job.place)} for job in search.jobs
                ]
                crew["backend_problems"] = search.problems
            crews.append(crew)
    finally:
        store.close()
    if as_json:
        print(json.dumps(crews, indent=2))
        return 0
    if not crews:
        print(f"no crews in {url}")
    for crew in crews:
        age = crew["lease_age_seconds"]
        lease = "no lease (closed, or its workers are leaving)" if crew["controller"] is None else (
            f"controller {crew['controller']} (its process has ended: crew stop removes the crew),"
            f" lease written {'?' if age is None else f'{age:.0f} s'} ago" if crew["controller_dead"] else
            f"controller {crew['controller']}, lease renewed {'?' if age is None else f'{age:.0f} s'} ago"
            f" (workers leave after {crew['lease_timeout']} s without a renewal)"
        )  # fmt: skip
        kind = "named" if crew["named"] else "unnamed"
        named = f", {crew['journal_objects']} journal object(s), {crew['verdict_objects']} verdict object(s)"
        print(_shown(f"{crew['crew']} ({kind}): {lease}; {crew['answers_waiting']} answer(s) waiting"
                     + (named if crew["named"] else "")))
        for worker in crew["workers"]:
            state = f"left ({worker['exit']})" if worker["exit"] else "no exit note"
            where = f" pid {worker['pid']} on {worker['host']}" if worker["pid"] else ""
            print(_shown(f"  {worker['name']} launch {worker['incarnation']}: {state}, beat {worker['beats']}{where},"
                         f" {worker['tasks']} task record(s)"))  # fmt: skip
        for job in crew.get("backend_jobs", []):
            launch = f" ({job['worker']} launch {job['incarnation']})" if job["worker"] else ""
            print(_shown(f"  {job['worker_class']} {job['id']}: {job['state']}{launch}"))
        for problem in crew.get("backend_problems", []):
            print(_shown(f"  ! {problem}"))
    return 0


def _stop_command(url: str, crew_id: str, force: bool) -> int:
    from crew_core.durable.leftovers import stop_crew
    from crew_core.errors import CrewError
    from crew_core.settings import DEFAULTS
    from crew_core.wire import protocol

    store = _open(url)
    try:
        crew, search = stop_crew(store, crew_id, force=force, worker_class=_worker_classes())
    except CrewError as exc:
        print(f"crew stop: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    seen = crew.describe()
    timeout, age = seen["lease_timeout"], seen["lease_age_seconds"]
    if not isinstance(timeout, int | float) or timeout <= 0:
        timeout = DEFAULTS["lease_timeout"]
    left = timeout - (age if isinstance(age, int | float) and age > 0 else 0) + protocol.lease_renewal(timeout)
    print(f"removed crew {crew_id!r} from {url}")
    if search.ended:
        print(_shown(f"ended {search.ended} job(s) on their backends: "
                     + ", ".join(f"{job.worker_class} {job.id} ({job.state})" for job in search.jobs)))  # fmt: skip
    print(f"a worker not ended on its backend leaves once the lease has not been renewed for its lease_timeout"
          f" ({timeout:g} s): within {max(left, 0):.0f} s, on any backend (stopping the job it runs)")  # fmt: skip
    for problem in search.problems:
        print(_shown(f"crew stop: {problem}"), file=sys.stderr)
    return 1 if search.problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crew`` console script and of ``python -m crew_core``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        from crew_core.agent.runtime import run_worker
        from crew_core.wire import protocol

        reason = run_worker(argv[1:])
        return 0 if reason in protocol.CLEAN_EXITS or reason == "orphaned" else 1
    parser = argparse.ArgumentParser(prog="crew", description="crew: Python jobs on semi-persistent workers.")
    parser.add_argument("--version", action="store_true", help="crew-core's version and protocol, and the plugins'")
    if argv[:1] == ["--version"]:  # before the subcommand is required
        print(_version())
        return 0
    sub = parser.add_subparsers(dest="command", required=True)
    plugins = sub.add_parser("plugins", help="list installed plugins, their versions and registrations")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    config = sub.add_parser("config", help="the settings Crew() uses by default, and where each comes from")
    config.add_argument("--json", action="store_true", help="machine-readable output")
    ps = sub.add_parser("ps", help="list the crews in a store: controller, workers, pending work")
    ps.add_argument("--store", help="the store's URL or path, as given to Crew(store=...) (default: $CREW_STORE)")
    ps.add_argument("--json", action="store_true", help="machine-readable output")
    ps.add_argument("--backends", action="store_true",
                    help="also ask the backends for each crew's jobs (queued and running), by crew id")  # fmt: skip
    stop = sub.add_parser("stop", help="end a crew whose controller is gone: its jobs on every backend, its objects"
                                       " (a named crew's run for good)")  # fmt: skip
    stop.add_argument("crew", help="the crew's name or id (see crew ps)")
    stop.add_argument("--store", help="the store's URL or path (default: $CREW_STORE)")
    stop.add_argument("--force", action="store_true",
                      help="even if its controller may be alive (a live process here, or a lease renewed"
                           " within its lease_timeout)")  # fmt: skip
    sub.add_parser("worker", help="run one worker (started by the crew, not by hand)")
    ns = parser.parse_args(argv)
    if ns.command in ("ps", "stop") and not ns.store:
        ns.store = os.environ.get("CREW_STORE")
        if not ns.store:
            parser.error(f"crew {ns.command} needs --store (or CREW_STORE set): the store's URL or path")
    try:
        return _run_command(ns)
    except _CannotOpen as exc:
        print(f"crew {ns.command}: {exc}", file=sys.stderr)
        return 2


def _run_command(ns: Any) -> int:
    if ns.command == "plugins":
        return _plugins_command(ns.json)
    if ns.command == "config":
        return _config_command(ns.json)
    if ns.command == "ps":
        return _ps_command(ns.store, ns.json, ns.backends)
    if ns.command == "stop":
        return _stop_command(ns.store, ns.crew, ns.force)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
