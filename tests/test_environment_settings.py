"""Crew() settings from CREW_<SETTING> environment variables, and ``crew config``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from crew_core import Crew


def test_settings_come_from_the_environment_and_arguments_win(tmp_path, monkeypatch):
    monkeypatch.setenv("CREW_MAX_TRIES", "5")
    monkeypatch.setenv("CREW_AUTO_RESTART", "false")
    monkeypatch.setenv("CREW_HEARTBEAT_TIMEOUT", "none")
    monkeypatch.setenv("CREW_STORE", str(tmp_path / "from-env"))
    monkeypatch.setenv("CREW_WORKER_CLASSES", "subprocess")
    with Crew() as crew:
        assert (crew.max_tries, crew.auto_restart, crew.heartbeat_timeout) == (5, False, 60.0)
        assert crew.store.describe() == str(tmp_path / "from-env")
        assert [cls.worker_class for cls in crew.worker_classes] == ["subprocess"]
    with Crew(store=str(tmp_path / "explicit"), max_tries=2, worker_classes=["executor"]) as crew:
        assert crew.max_tries == 2 and crew.store.describe() == str(tmp_path / "explicit")
        assert [cls.worker_class for cls in crew.worker_classes] == ["executor"]


@pytest.mark.parametrize(
    ("variable", "value", "error", "match", "note"),
    [
        ("CREW_MAX_TRIES", "many", ValueError, "CREW_MAX_TRIES='many': max_tries takes a whole number of tries", None),
        ("CREW_MAX_TRIES", "2.5", ValueError, "CREW_MAX_TRIES='2.5': max_tries takes a whole number of tries", None),
        ("CREW_MAX_TRIES", "inf", TypeError, "max_tries must be an integer, not inf", "CREW_MAX_TRIES"),
        ("CREW_LEASE_TIMEOUT", "5 fortnights", ValueError,
         r"CREW_LEASE_TIMEOUT='5 fortnights' \(unknown unit 'fortnights'\): lease_timeout takes a number of seconds,"
         r" with a unit if you like \(30, 30s, 500ms, 5m, 2h, 1d\)$", None),
        ("CREW_LEASE_TIMEOUT", "infinity", ValueError, "lease_timeout must be >= 1 and finite, not inf",
         "CREW_LEASE_TIMEOUT"),
        ("CREW_JOB_TIMEOUT", "soon", ValueError, r"job_timeout takes .* inf \(no limit\), or none \(no limit\)$", None),
        ("CREW_STOP_GRACE", "-1", ValueError, "stop_grace must be >= 0", "CREW_STOP_GRACE"),
        ("CREW_AUTO_RESTART", "maybe", ValueError, "auto_restart takes true or false", None),
    ],
)
def test_a_bad_environment_value_names_its_variable(tmp_path, monkeypatch, variable, value, error, match, note):
    monkeypatch.setenv(variable, value)
    with pytest.raises(error, match=match) as caught:
        Crew(store=str(tmp_path / "store"))
    if note:
        assert any(note in line for line in getattr(caught.value, "__notes__", []))
    assert not (tmp_path / "store").exists()


def test_crew_config_shows_each_setting_and_its_source():
    env = {**os.environ, "CREW_LEASE_TIMEOUT": "120"}
    env.pop("CREW_MAX_TRIES", None)
    out = subprocess.run([sys.executable, "-m", "crew_core", "config", "--json"], capture_output=True, text=True,
                         env=env, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = {row["setting"]: row for row in json.loads(out.stdout)}
    assert (rows["lease_timeout"]["value"], rows["lease_timeout"]["source"]) == (120, "environment CREW_LEASE_TIMEOUT")
    assert (rows["max_tries"]["value"], rows["max_tries"]["source"]) == (3, "crew-core")
    assert (rows["store"]["value"], rows["store"]["source"]) == ("local", "crew-local")  # the plugin that set it
    assert rows["heartbeat_timeout"]["none_means"] == "`max(60, 10 * heartbeat_interval)`"
    assert rows["secret"]["source"] in ("keyfile", "environment CREW_SECRET")
    text = subprocess.run([sys.executable, "-m", "crew_core", "config"], capture_output=True, text=True, env=env,
                          timeout=60).stdout  # fmt: skip
    assert "lease_timeout" in text and "environment CREW_LEASE_TIMEOUT" in text
    assert rows["lease_timeout"]["unit"] == "s" and "120.0 s" in text  # with its unit
    assert "3 tries" in text and "None (max(60, 10 * heartbeat_interval))" in text  # what None means there
    assert "crew-local" in text and "crew-core" in text
    env["CREW_JOB_TIMEOUT"] = "later"
    bad = subprocess.run([sys.executable, "-m", "crew_core", "config"], capture_output=True, text=True, env=env,
                         timeout=60)  # fmt: skip
    assert bad.returncode == 1 and "CREW_JOB_TIMEOUT='later': job_timeout takes" in bad.stderr


def test_every_variable_is_read_the_same_way_units_inf_and_none(tmp_path, monkeypatch):
    monkeypatch.setenv("CREW_LEASE_TIMEOUT", "15m")
    monkeypatch.setenv("CREW_STOP_GRACE", "1500ms")
    monkeypatch.setenv("CREW_HEARTBEAT_INTERVAL", "10s")
    monkeypatch.setenv("CREW_HEARTBEAT_TIMEOUT", "none")  # the documented None: max(60, 10 x interval)
    monkeypatch.setenv("CREW_JOB_TIMEOUT", "Infinity")  # no limit, as math.inf is for the argument
    monkeypatch.setenv("CREW_AUTO_RESTART", "off")
    with Crew(store=str(tmp_path / "store"), worker_classes=["executor"]) as crew:
        assert (crew.lease_timeout, crew.stop_grace, crew.heartbeat_interval) == (900.0, 1.5, 10.0)
        assert crew.heartbeat_timeout == 100.0 and crew.job_timeout is None and crew.auto_restart is False
    monkeypatch.setenv("CREW_JOB_TIMEOUT", "2h")
    monkeypatch.setenv("CREW_HEARTBEAT_TIMEOUT", "2m")
    with Crew(store=str(tmp_path / "store"), worker_classes=["executor"]) as crew:
        assert (crew.job_timeout, crew.heartbeat_timeout) == (7200.0, 120.0)
    # The keyword arguments take the same values: math.inf where "no limit" is documented, None
    # where the table says what it means.
    with Crew(store=str(tmp_path / "store"), worker_classes=["executor"], job_timeout=math.inf,
              heartbeat_interval=None, heartbeat_timeout=None) as crew:  # fmt: skip
        assert crew.job_timeout is None and crew.heartbeat_timeout == max(60.0, 10 * crew.heartbeat_interval)


def test_a_stores_poll_interval_variable_is_read_the_same_way():
    from crew_local import LocalStore

    store = LocalStore.__new__(LocalStore)  # only its poll interval is looked at
    store.set_poll_interval("50ms,6s")
    assert store.poll_interval == (0.05, 6.0)
    with pytest.raises(ValueError, match=r"0 < shortest <= longest"):
        store.set_poll_interval("1,inf")


def test_none_in_the_environment_is_none_for_every_setting_and_an_explicit_argument_still_wins(tmp_path, monkeypatch):
    """As before the settings table: CREW_MAX_TRIES=none reads as None, which max_tries refuses."""
    monkeypatch.setenv("CREW_MAX_TRIES", "none")
    with Crew(store=str(tmp_path / "store"), max_tries=5) as crew:
        assert crew.max_tries == 5
    with pytest.raises(TypeError, match="max_tries must be an integer, not None") as caught:
        Crew(store=str(tmp_path / "store"))
    assert any("CREW_MAX_TRIES" in note for note in getattr(caught.value, "__notes__", []))
