"""Crew() settings from CREW_<SETTING> environment variables, and ``crew config``."""

from __future__ import annotations

import json
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
        ("CREW_MAX_TRIES", "many", ValueError, "CREW_MAX_TRIES='many': max_tries takes a number of tries", None),
        ("CREW_MAX_TRIES", "2.5", TypeError, "max_tries must be an integer", "environment variable CREW_MAX_TRIES"),
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
    assert (rows["max_tries"]["value"], rows["max_tries"]["source"]) == (3, "default")
    assert rows["store"]["source"] == "a plugin's crew_configure"
    text = subprocess.run([sys.executable, "-m", "crew_core", "config"], capture_output=True, text=True, env=env,
                          timeout=60).stdout  # fmt: skip
    assert "lease_timeout" in text and "environment CREW_LEASE_TIMEOUT" in text
    assert rows["lease_timeout"]["unit"] == "s" and "120 s" in text  # with its unit


def test_none_in_the_environment_is_none_for_every_setting_and_an_explicit_argument_still_wins(tmp_path, monkeypatch):
    """As before the settings table: CREW_MAX_TRIES=none reads as None, which max_tries refuses."""
    monkeypatch.setenv("CREW_MAX_TRIES", "none")
    with Crew(store=str(tmp_path / "store"), max_tries=5) as crew:
        assert crew.max_tries == 5
    with pytest.raises(TypeError, match="max_tries must be an integer, not None") as caught:
        Crew(store=str(tmp_path / "store"))
    assert any("CREW_MAX_TRIES" in note for note in getattr(caught.value, "__notes__", []))
