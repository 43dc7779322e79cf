"""The worker suite against a class without ``place()``, and the suite's own check for leaked workers.

Issue #24: for a class without ``place()`` the place/find/end test orphaned a worker with a 600 s
lease and only then skipped, so the worker outlived the suite. Each suite runs here in a pytest
session of its own (pytester, in this process), so that what it leaves is visible afterwards.
"""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

pytest_plugins = ["pytester"]

# crew-local's subprocess worker, except that its workers cannot be found by crew: place() is None,
# as it is for any class that does not override it.
PLACELESS = """
import sys

import cloudpickle
import pytest

from crew_core import Crew
from crew_core.testing import WorkerContract
from crew_local import SubprocessWorker

# The suite's orphaning controller runs in a process of its own, which cannot import this file.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class PlacelessWorker(SubprocessWorker):
    worker_class = "placeless"

    def place(self):
        return None


class TestPlacelessWorker(WorkerContract):
    @pytest.fixture
    def worker_class(self):
        return PlacelessWorker

    @pytest.fixture
    def refused_options(self):
        return {"python": "/nonexistent/python3"}

    @pytest.fixture
    def surviving_options(self):
        return {"detached": True}  # outlives its controller: the worker the place test used to orphan
"""

# Two tests that break the rule on purpose; the suite's check must name what each left running.
LEAKY = """

class TestLeaks(TestPlacelessWorker):
    @pytest.fixture
    def timeout_scale(self):
        return 0.25  # the check waits 60 s x this for the leaked worker before it ends it

    def test_leaves_its_crew_open(self, started_workers, worker_class, crew_store):
        crew = started_workers.add_crew(Crew(store=crew_store, worker_classes=[worker_class]))
        crew.recruit(workers=1)
        crew.launch()  # and never closed

    def test_orphans_a_worker_then_skips(self, started_workers, worker_class, crew_store, surviving_options,
                                         timeout_scale, tmp_path):
        # What the place test did for a class without place() before it asked first.
        self._orphan(started_workers, worker_class, crew_store, surviving_options, timeout_scale, tmp_path, 600)
        pytest.skip("this worker class cannot find its workers by crew (its place() is None)")
"""


def live_workers(under: Path) -> list[str]:
    """Command lines of the live worker processes whose store lies under ``under`` (psutil: not
    the code the suite checks with)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        command = " ".join(process.info["cmdline"] or ())
        if process.info["status"] != psutil.STATUS_ZOMBIE and "crew_core worker" in command and str(under) in command:
            found.append(command)
    return found


@pytest.mark.slow
def test_the_suite_passes_skipping_what_needs_place_and_leaves_no_worker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_placeless=PLACELESS)
    result = pytester.runpytest_inprocess("-v", "-rs", "-p", "no:cacheprovider")
    assert result.ret == 0, "the suite failed against a class without place()"
    result.stdout.fnmatch_lines_random([
        "*::test_a_dead_controllers_workers_are_found_by_crew_and_ended_on_their_backend SKIPPED*",
        "SKIPPED * this worker class cannot find its workers by crew (its place() is None)",
        "SKIPPED * this backend gives no unreachable_worker fixture",
    ])  # fmt: skip
    assert result.parseoutcomes()["skipped"] == 2  # those two only
    assert "left workers running" not in result.stdout.str()
    assert live_workers(pytester.path.parent) == []  # the suite's stores are in its basetemp, beside pytester.path


@pytest.mark.slow
def test_the_suite_names_and_ends_the_workers_a_test_leaves_running(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaky=PLACELESS + LEAKY)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-k", "crew_open or then_skips")
    result.assert_outcomes(skipped=1, passed=1, errors=2)  # each fails at teardown, in the suite's check
    result.stdout.fnmatch_lines_random(
        [
            "*ERROR at teardown of TestLeaks.test_leaves_its_crew_open*",
            "*ERROR at teardown of TestLeaks.test_orphans_a_worker_then_skips*",
            "*worker 'placeless-1' of crew *: PlacelessWorker.running() says it runs (ended now)*",
            "*process * on this machine runs worker 'placeless-1' (launch 1) of crew * (ended now)*",
        ]
    )
    assert live_workers(pytester.path.parent) == []
