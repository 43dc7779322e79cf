"""The ``crew`` command: ``crew plugins`` lists plugins, ``crew ps`` the crews in a store, ``crew stop``
ends one whose controller is gone, ``crew worker`` runs a worker."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

_T = TypeVar("_T")


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
    """Each setting Crew() would use with no arguments, its unit, and what set it: ``crew-core`` (the
    default), the plugin whose ``crew_configure`` did, or the environment variable."""
    from crew_core.config import CREW_DEFAULTS, ENVIRONMENT_SETTINGS, settings_from_environment
    from crew_core.plugin.registry import default_plugins
    from crew_core.settings import BY_NAME
    from crew_core.wire.signing import SECRET_ENV

    try:
        environment = settings_from_environment()
    except ValueError as exc:
        print(f"crew config: {exc}", file=sys.stderr)
        return 1
    config = default_plugins().config
    configured = config["crew"]
    rows = []
    for setting in ENVIRONMENT_SETTINGS:
        if setting in environment:
            value, source = environment[setting][0], f"environment {environment[setting][1]}"
        elif setting in config.set_by:
            value, source = configured.get(setting), config.set_by[setting]
        else:
            value, source = CREW_DEFAULTS.get(setting), "crew-core"
        known = BY_NAME.get(setting)
        unit = known.unit if known is not None and value is not None else ""
        meaning = known.none if known is not None and value is None else None  # what None means there
        rows.append({"setting": setting, "value": value, "unit": unit, "source": source, "none_means": meaning})
    secret = bool(os.environ.get(SECRET_ENV))  # never shown: where named crews' keys come from
    rows.append({"setting": "secret", "value": "set" if secret else "a key file per named crew", "unit": "",
                 "source": f"environment {SECRET_ENV}" if secret else "keyfile", "none_means": None})  # fmt: skip
    if as_json:
        print(json.dumps(rows, indent=2, default=repr))
        return 0
    width = max(len(row["setting"]) for row in rows)
    values = []
    for row in rows:
        shown = row["value"] if row["setting"] == "secret" else repr(row["value"])
        meaning = f" ({_plain(row['none_means'])})" if row["none_means"] else ""
        values.append(f"{shown} {row['unit']}".rstrip() + meaning)
    value_width = max(map(len, values))
    for row, value in zip(rows, values, strict=True):
        print(f"{row['setting']:{width}}  {value:{value_width}}  {row['source']}")
    return 0


def _plain(markdown: str) -> str:
    """A setting's Markdown words for the terminal."""
    return markdown.replace("`", "")


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


def _temporary_class(url: str) -> Any:
    """The store class ``url`` names if its stores are temporary ones of this machine (``local``):
    ``crew ps``/``crew stop`` then look at every such store of this user, live or left over."""
    from crew_core.plugin.registry import default_plugins
    from crew_core.plugin.store import Store

    plugins = default_plugins()
    if url not in plugins.stores:
        return None
    cls = plugins.store_class(url)
    overrides = any("temporary_stores" in vars(base) for base in cls.__mro__[: cls.__mro__.index(Store)])
    return cls if overrides else None


def _crews(store: Any, backends: bool) -> list[dict[str, Any]]:
    """What ``crew ps`` shows of each crew in ``store``."""
    from crew_core.durable.leftovers import find_backend_jobs, find_crews

    crews = []
    for seen in find_crews(store):
        crew = seen.describe()
        if backends:
            search = find_backend_jobs(seen, store, _worker_classes())
            crew["backend_jobs"] = [{**vars(job), "crew": job.crew, "place": dict(job.place)} for job in search.jobs]
            crew["backend_problems"] = search.problems
        crews.append(crew)
    return crews


def _ps_command(url: str, as_json: bool, backends: bool) -> int:
    temporary = _temporary_class(url)
    if temporary is not None:
        return _ps_temporary(url, temporary, as_json, backends)
    store = _open(url)
    try:
        crews = _crews(store, backends)
    finally:
        store.close()
    if as_json:
        print(json.dumps(crews, indent=2))
        return 0
    if not crews:
        print(f"no crews in {url}")
    _print_crews(crews)
    return 0


def _read_temporaries(cls: Any, read: Callable[[Any], _T]) -> Iterator[tuple[Any, _T]]:
    """``(temporary, read(store))`` for each of this user's temporary stores of class ``cls`` on this
    machine, each store opened for ``read`` and closed again; one removed meanwhile is passed over."""
    for temporary in cls.temporary_stores():
        try:
            store = _open(temporary.location)
        except _CannotOpen:  # removed meanwhile
            continue
        try:
            found = read(store)
        finally:
            store.close()
        yield temporary, found


def _ps_temporary(name: str, cls: Any, as_json: bool, backends: bool) -> int:
    """``crew ps --store local``: this user's temporary stores here, each with its crews."""
    rows = list(_read_temporaries(cls, lambda store: _crews(store, backends)))
    if as_json:
        print(json.dumps([{"store": t.location, "owner": t.owner, "owner_ended": t.ended, "users": list(t.users),
                           "crews": crews} for t, crews in rows], indent=2))  # fmt: skip
        return 0
    if not rows:
        print(f"no temporary {name!r} stores of this user on this machine")
    for temporary, crews in rows:
        if not temporary.ended:
            state = f"controller process {temporary.owner} runs"
        else:
            users = f"; {len(temporary.users)} worker process(es) still use it" if temporary.users else ""
            state = (f"controller process {temporary.owner}: its process has ended{users} (the next crew opened"
                     f" here removes it, or: crew stop --store {name} <crew>)")  # fmt: skip
        print(_shown(f"{temporary.location}: {state}"))
        _print_crews(crews, indent="  ")
    return 0


def _print_crews(crews: list[dict[str, Any]], indent: str = "") -> None:
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
        print(_shown(indent + f"{crew['crew']} ({kind}): {lease}; {crew['answers_waiting']} answer(s) waiting"
                     + (named if crew["named"] else "")))
        for worker in crew["workers"]:
            state = f"left ({worker['exit']})" if worker["exit"] else "no exit note"
            where = f" pid {worker['pid']} on {worker['host']}" if worker["pid"] else ""
            print(_shown(indent + f"  {worker['name']} launch {worker['incarnation']}: {state},"
                         f" beat {worker['beats']}{where}, {worker['tasks']} task record(s)"))  # fmt: skip
        for job in crew.get("backend_jobs", []):
            launch = f" ({job['worker']} launch {job['incarnation']})" if job["worker"] else ""
            print(_shown(indent + f"  {job['worker_class']} {job['id']}: {job['state']}{launch}"))
        for problem in crew.get("backend_problems", []):
            print(_shown(indent + f"  ! {problem}"))


def _stop_temporary(name: str, cls: Any, crew_id: str, force: bool) -> int:
    """``crew stop --store local <crew>``: the crew, then the temporary store it is in once that
    store's controller and workers have ended (``<crew>`` may also name the store's folder)."""
    from crew_core.durable.leftovers import find_crews

    for temporary, ids in _read_temporaries(cls, lambda store: [seen.id for seen in find_crews(store)]):
        if crew_id in ids or crew_id in (temporary.location, os.path.basename(temporary.location)):
            break
    else:
        print(f"crew stop: no crew {crew_id!r} in this user's temporary {name!r} stores on this machine"
              f" (see crew ps --store {name})", file=sys.stderr)  # fmt: skip
        return 1
    if not temporary.ended and not force:
        print(f"crew stop: crew {crew_id!r} has a live controller here (process {temporary.owner}): close it"
              " there; or pass --force (it then stalls)", file=sys.stderr)  # fmt: skip
        return 1
    code = max((_stop_command(temporary.location, crew, force) for crew in ids), default=0)
    if cls.remove_temporary(temporary.location):
        print(f"removed the temporary store {temporary.location}")
    else:
        print(f"the temporary store {temporary.location} stays while its controller or a worker of it runs;"
              " the next crew opened here removes it once they have ended")  # fmt: skip
    return code


def _stop_command(url: str, crew_id: str, force: bool) -> int:
    from crew_core.durable.leftovers import stop_crew
    from crew_core.errors import CrewError
    from crew_core.settings import DEFAULTS
    from crew_core.wire import protocol

    temporary = _temporary_class(url)
    if temporary is not None:
        return _stop_temporary(url, temporary, crew_id, force)
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
    ps.add_argument("--store", help="the store's URL or path, as given to Crew(store=...) (default: $CREW_STORE);"
                                    " local: this user's temporary local stores here, live and left over")  # fmt: skip
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
