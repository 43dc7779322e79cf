"""Put a known bug back into crew's code for one test, to show that the simulator finds it."""

from __future__ import annotations

import enum
import inspect
import types
from typing import Any

import pytest


def mutate(monkeypatch: pytest.MonkeyPatch, module: types.ModuleType, old: str, new: str) -> None:
    """Replace ``old`` (once in ``module``'s source) by ``new`` until the test ends.

    The changed source is compiled apart; its functions, and the methods of its classes, take the
    place of the originals on the objects everyone already holds (``monkeypatch`` puts them back).
    What the module defines otherwise (enums, tables, constants) stays the original objects.
    """
    source = inspect.getsource(module)
    if source.count(old) != 1:
        raise ValueError(f"the mutation's text occurs {source.count(old)} times in {module.__name__}, not once")
    namespace: dict[str, Any] = {"__name__": module.__name__, "__file__": module.__file__}
    exec(compile(source.replace(old, new), str(module.__file__), "exec"), namespace)
    for name, value in list(namespace.items()):
        original = getattr(module, name, None)
        if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
            monkeypatch.setattr(module, name, value)
        elif isinstance(value, type) and isinstance(original, type) and value.__module__ == module.__name__:
            if not issubclass(value, enum.Enum):  # an enum's members stay as they are
                for attr, member in vars(value).items():
                    plain = isinstance(member, (types.FunctionType, property, staticmethod, classmethod))
                    if plain and not (attr.startswith("__") and attr.endswith("__")):
                        monkeypatch.setattr(original, attr, member)
            namespace[name] = original  # the new methods see the classes everyone holds
        elif hasattr(module, name) and not isinstance(value, types.FunctionType):
            namespace[name] = original  # and the module's data (tables, constants) as everyone holds it
