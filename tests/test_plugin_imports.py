"""The four plugins (and their tests) use crew's public modules only: what a third party's plugin can.

Public: ``crew_core`` (the user's API), ``crew_core.plugin`` (the plugin author's), ``crew_core.errors``,
``crew_core.testing`` (contract suites and helpers) and ``crew_core.cli`` (the ``crew`` command's
``main``). Anything else in crew_core may move without notice.
"""

from __future__ import annotations

import ast
from pathlib import Path

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
FAMILIES = ("crew-local", "crew-aws", "crew-gcp", "crew-slurm")
PUBLIC = ("crew_core", "crew_core.plugin", "crew_core.errors", "crew_core.cli")


def _public(module: str) -> bool:
    return module in PUBLIC or module == "crew_core.testing" or module.startswith("crew_core.testing.")


def _crew_imports(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every crew_core module a Python source imports, in code or in a
    string that holds code (a script a test runs)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "crew_core." in node.value:
            try:
                found += [(node.lineno, module) for _, module in _crew_imports(node.value)]
            except SyntaxError:
                pass  # a string that is not code
    return [(line, module) for line, module in found if module.split(".")[0] == "crew_core"]


def private_imports(root: Path) -> list[str]:
    """``path:line module`` for each import of a private crew_core module under ``root``."""
    return [
        f"{path.relative_to(root)}:{line} {module}"
        for path in sorted(root.rglob("*.py"))
        if "build" not in path.relative_to(root).parts  # a wheel build's copy of older sources
        for line, module in _crew_imports(path.read_text(encoding="utf-8"))
        if not _public(module)
    ]


def test_plugins_import_only_public_crew_core_modules():
    found = [entry for family in FAMILIES for entry in private_imports(PLUGINS / family)]
    assert found == [], "import these names from crew_core.plugin (or crew_core, crew_core.errors) instead"


def test_the_check_catches_a_private_import(tmp_path):
    (tmp_path / "bad.py").write_text("from crew_core.wire import protocol\nimport crew_core.plugin\n")
    (tmp_path / "script.py").write_text('SCRIPT = """\nfrom crew_core.engine.ledger import Job\n"""\n')
    assert private_imports(tmp_path) == ["bad.py:1 crew_core.wire", "script.py:1 crew_core.engine.ledger"]
