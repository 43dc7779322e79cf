"""A griffe extension for the API pages: crew's docstrings name things with Sphinx roles
(:class:`Crew`, :meth:`~crew_core.Crew.send`), which Markdown would show as they are typed.
Each becomes inline code with the name as a reader would write it."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|meth|func|attr|data|mod|exc|obj):`~?([^`]+)`")


def plain(text: str) -> str:
    """``:meth:`~crew_core.Crew.send``` -> ```Crew.send``` (a ``~`` keeps only the last name)."""

    def code(match: re.Match[str]) -> str:
        name = match.group(1)
        if match.group(0).split("`")[1].startswith("~"):
            name = name.rsplit(".", 1)[-1]
        return f"`{name}`"

    return ROLE.sub(code, text)


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
