"""The README's example and the package page's run as written, so they cannot drift apart.

The documentation site's examples are tested in ``test_docs_examples.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)


def test_readme_example_runs(capsys):
    blocks = python_blocks(README)
    assert len(blocks) == 1, "the README has one example; the others live on the documentation site"
    assert len(blocks[0].strip().splitlines()) <= 20, "keep the README's example short"
    exec(compile(blocks[0], str(README), "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "True success 49 subprocess-3\n" in out  # the tagged worker ran the tagged job
    assert "[0, 1, 4, 9, 16]\n" in out


def test_readme_links_point_at_pages_that_exist():
    for target in re.findall(r"\]\(([^)#]+)\)", README.read_text()):
        if "://" not in target:
            assert (README.parent / target).is_file(), f"README links to {target}, which does not exist"


def test_package_page_examples_run(capsys):
    page = README.parent / "docs" / "package.md"
    blocks = python_blocks(page)
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, str(page), "exec"), {"__name__": "__package_page__"})
    out = capsys.readouterr().out
    assert "1024\n[4, 9]\n" in out
    assert str([2**n for n in range(10)]) in out
