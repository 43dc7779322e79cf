"""The ``crew`` command: ``crew plugins`` lists plugins, ``crew worker`` runs a worker."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _plugins_command(as_json: bool) -> int:
    from .plugins import default_plugins

    plugins = default_plugins()
    rows = []
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crew`` console script and of ``python -m crew_core``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        from .runtime import run_worker

        reason = run_worker(argv[1:])
        return 0 if reason in ("idle", "stopped", "orphaned") else 1
    parser = argparse.ArgumentParser(prog="crew", description="crew: Python jobs on semi-persistent workers.")
    sub = parser.add_subparsers(dest="command", required=True)
    plugins = sub.add_parser("plugins", help="list installed plugins, their versions and registrations")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("worker", help="run one worker (started by the crew, not by hand)")
    ns = parser.parse_args(argv)
    if ns.command == "plugins":
        return _plugins_command(ns.json)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
