"""MkDocs hooks: tables that the site takes from the code, so that they cannot drift from it.

A page asks for one with an HTML comment on a line of its own (``<!-- crew:settings -->``);
on GitHub the comment shows nothing.
"""

from __future__ import annotations

from typing import Any


def settings_table() -> str:
    """Every ``Crew()`` setting, from ``crew_core.settings.SETTINGS``."""
    from crew_core.settings import SETTINGS

    rows = ["| Setting | Default | Environment variable | Meaning | The variable takes |", "|---|---|---|---|---|"]
    for setting in SETTINGS:
        unit = f" {setting.unit}" if setting.unit and setting.default is not None else ""
        meaning = setting.meaning + (f"; `None`: {setting.none}" if setting.none is not None else "")
        rows.append(f"| `{setting.name}` | `{setting.default!r}`{unit} | `{setting.variable}` | {meaning}"
                    f" | {setting.accepts} |")
    return "\n".join(rows)


def error_classes() -> str:
    """The exception classes of ``crew_core.errors``, each with its bases, as a list."""
    import inspect

    from crew_core import errors

    lines = []
    for name, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, errors.CrewError) and cls.__module__ == errors.__name__:
            bases = ", ".join(f"`{base.__name__}`" for base in cls.__bases__)
            lines.append(f"- [`{name}`](#{name.lower()}) ({bases})")
    return "\n".join(lines)


TABLES = {"<!-- crew:settings -->": settings_table, "<!-- crew:errors -->": error_classes}


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    for marker, make in TABLES.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
