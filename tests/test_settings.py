"""Every public argument of the wrong type or range is a clear error that names it and leaves nothing behind."""

from __future__ import annotations

import math

import pytest

from crew_core import Crew
from crew_core.testing import jobs


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"heartbeat_interval": -1}, ValueError, "heartbeat_interval must be > 0"),
        ({"heartbeat_interval": 0}, ValueError, "heartbeat_interval must be > 0"),
        ({"heartbeat_interval": math.nan}, ValueError, "heartbeat_interval"),
        ({"heartbeat_interval": "2"}, TypeError, "heartbeat_interval must be a number"),
        ({"heartbeat_interval": 1e-9}, ValueError, "heartbeat_interval must be at least 0.01 s"),
        ({"heartbeat_timeout": 1, "heartbeat_interval": 2}, ValueError, "heartbeat_timeout .* must be longer"),
        ({"max_tries": 2.9}, TypeError, "max_tries must be an integer"),
        ({"max_tries": 0}, ValueError, "max_tries must be >= 1"),
        ({"max_tries": True}, TypeError, "max_tries must be an integer"),
        ({"stop_grace": -0.5}, ValueError, "stop_grace must be >= 0"),
        ({"stop_grace": math.inf}, ValueError, "stop_grace"),
        ({"auto_restart": "no"}, TypeError, "auto_restart must be True or False"),
        ({"max_retries": 3}, TypeError, "unknown setting 'max_retries'"),
        ({"lease_timeout": 0.001}, ValueError, "lease_timeout must be >= 1"),  # every job would "crash"
        ({"job_timeout": 1e308}, ValueError, r"job_timeout must be at most 1e\+09 seconds \(math.inf: none\)"),
    ],
)
def test_bad_crew_settings_are_named_and_leave_no_store_folder(tmp_path, settings, error, message):
    folder = tmp_path / "store"
    with pytest.raises(error, match=message):
        Crew(store=str(folder), **settings)
    assert not folder.exists()


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"store": 42}, TypeError, "store must be a name, a URL, a path or a Store"),
        ({"store": ""}, ValueError, "store must name a store"),
        ({"worker_classes": "subprocess"}, TypeError, "worker_classes must be a list"),
        ({"worker_classes": [42]}, TypeError, "a worker class is a registered name or a Worker subclass"),
        ({"store_options": ["path"]}, TypeError, "store_options must be a dict"),
        ({"store": "file://"}, ValueError, "names no location"),  # not the current directory
        ({"store": "file:///"}, ValueError, "names no location"),
    ],
)
def test_bad_crew_arguments_are_named(arguments, error, message):
    with pytest.raises(error, match=message):
        Crew(**arguments)


@pytest.fixture
def crew(tmp_path):
    with Crew(store=str(tmp_path / "store"), worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        yield crew


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"workers": "2"}, TypeError, "workers must be an integer"),
        ({"workers": -1}, ValueError, "workers must be zero or more"),
        ({"workers": 1.5}, TypeError, "workers must be an integer"),
        ({"idle_timeout": "10"}, TypeError, "idle_timeout must be a number of seconds"),
        ({"idle_timeout": -5}, ValueError, "idle_timeout must be a positive number"),
        ({"tags": {"a": 1}}, TypeError, "tags must be a string or an iterable of strings"),
        ({"tags": [1]}, TypeError, "tags must be strings"),
        ({"worker_class": "nope"}, Exception, "unknown worker class 'nope'"),
    ],
)
def test_bad_recruit_arguments_are_named_and_recruit_nothing(crew, arguments, error, message):
    before = sorted(crew.workers)
    with pytest.raises(error, match=message):
        crew.recruit(**{"workers": 1, **arguments})
    assert sorted(crew.workers) == before


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"args": "ab"}, TypeError, "args must be a tuple or list"),
        ({"args": 5}, TypeError, "args must be a tuple or list"),
        ({"args": {"x": 1}}, TypeError, "args must be a tuple or list"),
        ({"kwargs": [("x", 1)]}, TypeError, "kwargs must be a dict"),
        ({"kwargs": {1: 2}}, TypeError, "kwargs must be a dict with string keys"),
        ({"tags": {"a": 1}}, TypeError, "tags must be a string or an iterable of strings"),
        ({"fun": 42}, TypeError, "crew can only send callables"),
    ],
)
def test_bad_send_arguments_are_named_and_send_nothing(crew, arguments, error, message):
    call = {"fun": jobs.double, "args": (1,), **arguments}
    with pytest.raises(error, match=message):
        crew.send(call.pop("fun"), **call)
    assert crew.receive(timeout=0) is None  # nothing was accepted


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda c: c.receive(timeout="1"), TypeError, "timeout must be a number of seconds or None"),
        (lambda c: c.receive(timeout=-1), ValueError, "timeout must be zero or more"),
        (lambda c: list(c.results(timeout="1")), TypeError, "timeout must be a number of seconds"),
        (lambda c: c.receive(tags=3), TypeError, "tags must be a string or an iterable"),
        (lambda c: c.launch(workers="2"), TypeError, "workers must be None or an integer"),
        (lambda c: c.launch(workers=-1), ValueError, "workers must be None or a number >= 0"),
        (lambda c: c.stop(idle_only="yes"), TypeError, "idle_only must be True or False"),
        (lambda c: c.stop(tags="nobody"), Exception, "no worker carries all of the tags 'nobody'"),
        (lambda c: c.dismiss(tags=5), TypeError, "tags must be a string or an iterable"),
    ],
)
def test_bad_arguments_of_the_other_calls_are_named(crew, call, error, message):
    with pytest.raises(error, match=message):
        call(crew)


def test_job_timeout_inf_means_no_limit_as_documented(tmp_path):
    with Crew(store=str(tmp_path / "store"), job_timeout=math.inf) as crew:
        assert crew._manager.settings.job_timeout is None


def test_an_option_the_store_class_does_not_take_is_an_error_naming_the_store(tmp_path):
    with pytest.raises(TypeError, match=r"store class 'LocalStore' .* rejected its options: .*'junk'"):
        Crew(store=str(tmp_path / "store"), store_options={"junk": 1})
