"""The docs name every hook, method, setting and worker-life move the code has, so they cannot drift."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from crew_core.engine.workers import LIFE, Life
from crew_core.plugin import Store, Worker, hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs"
SPEC = (DOCS / "specification.md").read_text()
ARCHITECTURE = (DOCS / "architecture.md").read_text()


def test_every_hook_is_documented_with_its_arguments():
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("crew_"):
            arguments = ", ".join(inspect.signature(function).parameters)
            assert f"{name}({arguments})" in SPEC, f"{name}({arguments}) is missing from the specification"


def test_every_store_and_worker_method_is_documented():
    for cls in (Store, Worker):
        for name, _ in inspect.getmembers(cls, callable):
            if not name.startswith("_") and name not in ("up", "busy", "stuck", "launch", "restart", "shutdown"):
                assert f"`{name}" in SPEC or f"{name}(" in SPEC, f"{cls.__name__}.{name} is not in the specification"


def test_the_settings_table_is_the_one_the_code_has():
    from crew_core.settings import markdown_table

    assert markdown_table() in SPEC, "docs/specification.md §7 differs from crew_core.settings.SETTINGS"


def _documented_life_table() -> dict[str, set[str]]:
    """architecture.md's ``| life | meaning | may move to |`` table: each life to the lives its last
    column names (upper-case words; the notes in brackets are prose and use lower case)."""
    rows = re.search(r"^\| life \| meaning \| may move to \|\n\|[-|]+\|\n((?:\|.*\|\n)+)", ARCHITECTURE, re.M)
    assert rows, "docs/architecture.md has no `| life | meaning | may move to |` table"
    table = {}
    for row in rows.group(1).splitlines():
        life, _, moves = (cell.strip() for cell in row.strip("|").split("|"))
        table[life] = set(re.findall(r"\b[A-Z]+\b", moves))
    return table


def test_the_worker_life_table_is_the_one_the_code_has():
    documented = _documented_life_table()
    assert sorted(documented) == sorted(life.name for life in Life), "a life is missing from the table, or unknown"
    for life, moves in LIFE.items():
        expected = {to.name for to in moves}
        assert documented[life.name] == expected, (
            f"docs/architecture.md says {life.name} may move to {sorted(documented[life.name])};"
            f" LIFE (crew_core/engine/workers.py) says {sorted(expected)}"
        )
