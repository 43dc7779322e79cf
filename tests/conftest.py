"""Shared fixtures: crews on the local default with real worker processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from crew_core import Crew


@pytest.fixture
def make_crew() -> Iterator[Callable[..., Crew]]:
    """Build crews (subprocess workers by default) that are closed after the test."""
    crews: list[Crew] = []

    def make(**kwargs: Any) -> Crew:
        kwargs.setdefault("worker_classes", ["subprocess"])
        crew = Crew(**kwargs)
        crews.append(crew)
        return crew

    yield make
    for crew in crews:
        crew.close()
