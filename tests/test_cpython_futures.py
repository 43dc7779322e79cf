"""CPython's own tests of executors, ``wait``, ``as_completed`` and shutdown, run on CrewExecutor.

The tests come from the interpreter's ``test.test_concurrent_futures`` (Debian ships it apart, in
``libpython3.X-testsuite``, which ``.ci/run`` installs); they are not copied here. Left out: tests
that start a fresh interpreter naming a standard executor, and those that read a standard
executor's internals (``test_no_stale_references`` is kept: it checks no reference is held).
Their functions are pickled by value, so workers need not import the test module.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import unittest
from pathlib import Path
from types import ModuleType

import cloudpickle
import pytest

from crew_core import CrewExecutor

FRESH_INTERPRETER = {"test_interpreter_shutdown", "test_submit_after_interpreter_shutdown", "test_hang_gh83386"}


def _load() -> ModuleType | None:
    try:
        import test.test_concurrent_futures as module  # a full CPython install

        return module
    except ImportError:
        pass
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    path = Path(f"/usr/lib/python{version}/test/test_concurrent_futures.py")
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("cpython_test_concurrent_futures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cpython = _load()
if cpython is None:
    if os.environ.get("CI"):
        raise RuntimeError(f"CPython's test_concurrent_futures for {sys.version} is missing: .ci/run installs it")
    pytest.skip("CPython's test_concurrent_futures is not installed (Debian: libpython3.X-testsuite)",
                allow_module_level=True)  # fmt: skip
if not hasattr(cpython, "ExecutorTest"):  # 3.12 split it into a package; 3.11 is what CI runs
    for part in ("executor", "test_wait", "test_as_completed", "test_shutdown", "util"):
        vars(cpython).update(vars(__import__(f"{cpython.__name__}.{part}", fromlist=["_"])))
for name, module in list(sys.modules.items()):
    if name.startswith(cpython.__name__):
        cloudpickle.register_pickle_by_value(module)


class CrewMixin(cpython.ExecutorMixin):
    executor_type = CrewExecutor


class TestExecutor(CrewMixin, cpython.ExecutorTest, cpython.BaseTestCase):
    pass


class TestWait(CrewMixin, cpython.WaitTests, cpython.BaseTestCase):
    pass


class TestAsCompleted(CrewMixin, cpython.AsCompletedTests, cpython.BaseTestCase):
    pass


class TestShutdown(CrewMixin, cpython.ExecutorShutdownTest, cpython.BaseTestCase):
    pass


for _name in FRESH_INTERPRETER:  # tests/test_executor.py checks the same for crew, in its own words
    setattr(TestShutdown, _name, unittest.skip("starts a fresh interpreter naming a standard executor")(
        lambda self: None))  # fmt: skip
