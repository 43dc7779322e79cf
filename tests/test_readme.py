"""The README's walkthrough runs as written, so the two cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_walkthrough_runs(capsys):
    blocks = python_blocks()
    assert len(blocks) >= 5, "the walkthrough lost its code blocks"
    namespace: dict = {"__name__": "__readme__"}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    crew = namespace["crew"]
    assert "{'subprocess-1': False, 'subprocess-2': False, 'subprocess-3': False, 'subprocess-4': False}" in out
    assert "True success hello after 0.5 s ['this job was slow on purpose']" in out
    assert "tags {'long_jobs_go_here'}" in out
    assert "up after shutdown: []" in out
    assert "left: ['subprocess-1', 'subprocess-2']" in out
    assert out.count("hello after") == 3
    assert "None\n" in out  # receive() with nothing in flight
    assert "[0, 1, 4]" in out  # jobs got the object put once
    assert f"sum: {2**100 - 1}" in out  # the named crew's jobs
    assert "[4, 9, 16] ['subprocess-" in out  # map, in input order
    assert "256\n[1, 1, 4, 27, 256]\n[1, 3, 9, 27]\n" in out  # the executor
    assert "success ['starting', \"a program's output is captured too\"] to stderr\ntimeout\n" in out
    assert "[3] cancelled" in out
    assert "nested: [0, 1, 4, 9, 16, 25] ['nested-" in out  # through forwarders and their inner crews
    assert crew._closed


def test_package_page_examples_run(capsys):
    page = README.parent / "docs" / "package.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, str(page), "exec"), {"__name__": "__package_page__"})
    out = capsys.readouterr().out
    assert "1024\n[4, 9]\n" in out
    assert str([2**n for n in range(10)]) in out
