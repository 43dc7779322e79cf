"""Imports from before engine v2 keep working: every old module path is the module at its new path."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys

import pytest

from crew_core._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_is_the_same_module_as_its_new_one(old):
    before = importlib.import_module(f"crew_core.{old}")
    after = importlib.import_module(f"crew_core.{MOVED[old]}")
    assert before is after
    assert after.__spec__.name == f"crew_core.{MOVED[old]}"  # the alias did not take its identity


def test_old_imports_work_in_a_fresh_interpreter_in_any_order():
    code = (
        "from crew_core.runtime import run_worker\n"
        "from crew_core import protocol\n"
        "from crew_core.store import check_key\n"
        "import crew_core.joblib, crew_core.manager as m\n"
        "import crew_core.runner.manager as n\n"
        "assert m is n and protocol.__name__ == 'crew_core.wire.protocol'\n"
        "assert check_key('a/b') == 'a/b' and run_worker.__module__ == 'crew_core.agent.runtime'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_functions_pickled_by_either_name_load():
    from crew_core.store import check_key

    assert pickle.loads(pickle.dumps(check_key)) is check_key


def test_an_unknown_old_name_still_fails_as_usual():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("crew_core.no_such_module")


def test_plugin_authors_find_everything_in_crew_core_plugin():
    import crew_core.plugin as plugin

    for name in plugin.__all__:
        assert getattr(plugin, name) is not None
    with pytest.warns(DeprecationWarning, match="use crew_core.plugin.Store"):  # its old place, for a release
        assert plugin.Store is importlib.import_module("crew_core").Store


def test_what_the_one_durable_module_held_still_imports_from_crew_core_durable():
    from crew_core.durable import EPOCH_SPAN, check_name
    from crew_core.durable.journal import EPOCH_SPAN as at_its_new_home

    assert at_its_new_home == EPOCH_SPAN and check_name("nightly") == "nightly"


def test_the_worker_life_model_still_imports_from_the_supervisor_where_it_used_to_live():
    from crew_core.engine import workers
    from crew_core.supervisor import LIFE, IllegalTransition, Life, Phase, Supervisor, WorkerRecord

    assert LIFE is workers.LIFE and Life is workers.Life and Phase is workers.Phase
    assert WorkerRecord is workers.WorkerRecord and IllegalTransition is workers.IllegalTransition
    assert Supervisor.__module__ == "crew_core.engine.supervisor"
