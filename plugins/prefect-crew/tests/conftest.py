"""Prefect's own test server, offline, once per session; a crew whose workers stay warm across tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from crew_core import Crew

# Prefect makes its home folder when it is imported, and its server writes there: a temporary
# one for this session (crew's workers inherit it), removed at the end; no telemetry either.
_HOME = tempfile.mkdtemp(prefix="prefect-crew-tests-")
os.environ["PREFECT_HOME"] = _HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_home() -> Iterator[Path]:
    """Prefect's test harness: its API server in a subprocess, on a temporary SQLite database."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):  # 2 busy cores can take a while
        yield Path(_HOME)


@pytest.fixture(scope="session")
def crew(prefect_home: Path) -> Iterator[Crew]:
    """Two subprocess workers on a temporary store: shared, so that each imports Prefect once."""
    with Crew(worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=2)
        yield crew
