"""The specification names every hook and every method a plugin implements, so it cannot drift."""

from __future__ import annotations

import inspect
from pathlib import Path

from crew_core import Store, Worker
from crew_core.plugin import hookspecs

SPEC = (Path(__file__).resolve().parents[1] / "docs" / "specification.md").read_text()


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
