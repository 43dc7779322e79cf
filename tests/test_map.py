"""``Crew.map``: results in input order, errors kept apart, other jobs left alone, progress."""

from __future__ import annotations

import pytest

from crew_core import Crew, ResultList
from crew_core.testing import jobs


def test_map_returns_results_in_input_order(make_crew):
    crew = make_crew()
    crew.recruit(workers=3)
    other = crew.send(jobs.double, args=(100,))  # not map's: left for receive()
    results = crew.map(jobs.sleep_then, [0.03, 0.0, 0.02, 0.0, 0.01] * 4, range(20))
    assert isinstance(results, ResultList) and results.ok
    assert results.values() == list(range(20))
    assert crew.receive(timeout=60).id == other


def test_one_error_does_not_hide_the_others(make_crew):
    crew = make_crew()
    crew.recruit(workers=2)
    results = crew.map(divmod, [6, 1, 8], [3, 0, 2])
    assert [r.status for r in results] == ["success", "error", "success"]
    assert (results[0].value, results[2].value) == ((2, 0), (4, 0))
    with pytest.raises(ZeroDivisionError):
        results.values()  # the first error, as Future.result() raises it


def test_map_shows_progress_when_asked(make_crew, capsys):
    crew = make_crew()
    crew.recruit(workers=2)
    assert crew.map(jobs.double, range(30), progress=True).values() == [2 * n for n in range(30)]
    err = capsys.readouterr().err
    assert "double" in err and "30/30" in err and "errors=0" in err
    crew.map(jobs.double, range(3), progress=False)
    assert capsys.readouterr().err == ""


def test_map_checks_its_arguments(make_crew):
    crew = make_crew()
    crew.recruit(workers=1)
    with pytest.raises(TypeError, match="at least one iterable"):
        crew.map(jobs.double)
    with pytest.raises(TypeError, match="iterables of arguments, not str"):
        crew.map(jobs.double, "abc")
    with pytest.raises(TypeError, match="progress must be"):
        crew.map(jobs.double, [1], progress="yes")
    assert crew.map(jobs.double, []) == []


def test_map_on_a_named_crew(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with Crew(store=str(tmp_path / "store"), name="mapped", worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=2)
        assert crew.map(jobs.double, range(50)).values() == [2 * n for n in range(50)]


def test_an_input_that_cannot_be_pickled_fails_map_before_any_call_runs(make_crew):
    """Before, the calls ahead of it ran and their results were lost with the error (issue #22)."""
    import threading

    from crew_core import SerializationError

    crew = make_crew()
    crew.recruit(workers=1)
    with pytest.raises(SerializationError):
        crew.map(jobs.double, [1, 2, threading.Lock()])
    assert not crew._manager.ledger.jobs and not crew._manager.incoming  # nothing was sent
    assert crew.map(jobs.double, [3]).values() == [6]
    assert crew.send(jobs.double, args=(4,)) == 2  # and no job number was spent on the failed map
