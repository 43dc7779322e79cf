"""Plugin discovery, registration and configuration through pluggy and entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pluggy
import pytest

from crew_core import Crew, PluginError
from crew_core.plugin import Store, get_plugin_manager, hookimpl
from crew_core.plugin.registry import PluginLoadWarning
from crew_core.testing import jobs
from crew_local import LocalStore, SubprocessWorker


def crew_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crew_core", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_crew_plugins_lists_plugins_versions_and_registrations():
    out = crew_command("plugins")
    assert out.returncode == 0, out.stderr
    assert "local (crew-local 0.1.0)" in out.stdout
    assert "workers: executor, nested, subprocess" in out.stdout and "stores:  local" in out.stdout
    rows = json.loads(crew_command("plugins", "--json").stdout)
    [local] = [row for row in rows if row["name"] == "local"]
    assert local["hooks"] == ["crew_configure", "crew_register_stores", "crew_register_workers"]


def test_crew_version_names_the_protocol_and_the_plugins():
    from crew_core import __version__
    from crew_core.wire import protocol

    out = crew_command("--version")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"crew-core {__version__} (protocol {protocol.PROTOCOL})"
    assert "crew-local 0.1.0" in lines[1:]


@pytest.fixture
def broken_distribution(tmp_path, monkeypatch):
    """A real installed distribution whose ``crew`` entry point cannot be imported."""
    info = tmp_path / "crew_broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: crew-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[crew]\nbroken = crew_broken_missing_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_plugin_that_fails_to_import_is_reported_and_skipped(broken_distribution):
    with pytest.warns(PluginLoadWarning, match=r"'broken' from crew-broken 1.0 failed to load"):
        plugins = get_plugin_manager()
    assert "local" in plugins.stores  # the others still load
    [info] = [i for i in plugins.infos if i.name == "broken"]
    assert "ModuleNotFoundError" in info.error
    out = crew_command("plugins", env={"PYTHONPATH": str(broken_distribution)})
    assert out.returncode == 0 and "FAILED TO LOAD: ModuleNotFoundError" in out.stdout


def test_plugins_can_be_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("CREW_DISABLE_PLUGINS", "1")
    plugins = get_plugin_manager()
    assert plugins.stores.names() == [] and plugins.workers.names() == []
    with pytest.raises(PluginError, match="pip install crew-local"):
        Crew(plugins=plugins)
    monkeypatch.setenv("CREW_DISABLE_PLUGINS", "local")
    assert "local" not in get_plugin_manager().stores.names()
    for word, disabled in (("On", True), ("all", True), ("off", False), ("none", False)):  # a flag's words
        monkeypatch.setenv("CREW_DISABLE_PLUGINS", word)
        assert ("local" not in get_plugin_manager().stores.names()) is disabled


def test_a_name_registered_twice_is_an_error_naming_both_plugins():
    class Impostor(SubprocessWorker):
        worker_class = "subprocess"

    class Thief:
        @hookimpl
        def crew_register_workers(self, registry):
            registry.add("subprocess", Impostor)

    with pytest.raises(PluginError, match=r"'subprocess' is registered twice: by plugin 'local'"):
        get_plugin_manager([Thief()])


def test_a_registered_name_must_match_the_class():
    class Misnamed(SubprocessWorker):
        worker_class = "other"

    class Plugin:
        @hookimpl
        def crew_register_workers(self, registry):
            registry.add("mine", Misnamed)

    with pytest.raises(PluginError, match="registered as 'mine' but its worker_class attribute is 'other'"):
        get_plugin_manager([Plugin()])


def installed_plugin(folder, name, source):
    """Install a one-module distribution with a ``crew`` entry point into ``folder``."""
    info = folder / f"crew_{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: crew-{name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[crew]\n{name} = crew_{name}_plugin\n")
    (folder / f"crew_{name}_plugin.py").write_text(source)


def test_an_installed_plugin_whose_hook_fails_is_skipped(tmp_path, monkeypatch):
    installed_plugin(
        tmp_path,
        "raiser",
        "from crew_core.plugin import hookimpl\n"
        "@hookimpl\n"
        "def crew_register_workers(registry):\n"
        "    raise RuntimeError('missing optional dependency')\n",
    )
    installed_plugin(
        tmp_path,
        "typo",
        "from crew_core.plugin import hookimpl\n@hookimpl\ndef crew_register_worker(registry):\n    pass\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginLoadWarning) as caught:
        plugins = get_plugin_manager()
    messages = " ".join(str(w.message) for w in caught)
    assert "'raiser' from crew-raiser 1.0 failed in crew_register_workers" in messages
    assert "missing optional dependency" in messages
    assert "'typo' from crew-typo 1.0 failed to load" in messages and "crew_register_worker" in messages
    assert {"executor", "subprocess"} <= set(plugins.workers.names())  # healthy plugins are unharmed


def test_a_misspelt_hook_is_caught():
    class Typo:
        @hookimpl
        def crew_register_store(self, registry):  # missing "s"
            pass

    with pytest.raises(pluggy.PluginValidationError, match="crew_register_store"):
        get_plugin_manager([Typo()])


def test_configure_hook_sets_crew_and_worker_defaults(tmp_path):
    class Site:
        @hookimpl
        def crew_configure(self, config):
            config["crew"]["max_tries"] = 7
            config["subprocess"]["env"] = {"CREW_TEST_MARK": "from-config"}

    plugins = get_plugin_manager([Site()])
    with Crew(plugins=plugins) as crew:
        assert crew.max_tries == 7
        crew.recruit(workers=1)
        crew.send(jobs.getenv, args=("CREW_TEST_MARK",))
        assert crew.receive(timeout=60).value == "from-config"
    with Crew(plugins=plugins, max_tries=2) as crew:
        assert crew.max_tries == 2  # explicit arguments win over configured defaults


class MirrorStore(LocalStore):
    """A third party's store, registered in code: workers import it by its class path."""

    name = "mirror"
    schemes = ("mirror",)

    @classmethod
    def from_url(cls, url, **options):
        return cls(url.split("://", 1)[1], **options)


class LabeledWorker(SubprocessWorker):
    worker_class = "labeled"


class ThirdParty:
    @hookimpl
    def crew_register_stores(self, registry):
        registry.add("mirror", MirrorStore)

    @hookimpl
    def crew_register_workers(self, registry):
        registry.add("labeled", LabeledWorker)


def test_a_third_party_store_and_worker_plug_in_without_core_changes(tmp_path):
    plugins = get_plugin_manager([ThirdParty()])
    assert issubclass(plugins.store_class("mirror"), Store)
    with Crew(store=f"mirror://{tmp_path}", worker_classes=["labeled"], plugins=plugins) as crew:
        [worker] = crew.recruit(workers=1)
        assert worker.name == "labeled-1"
        crew.send(jobs.double, args=(4,))
        assert crew.receive(timeout=60).value == 8


def test_importing_crew_core_loads_no_plugin_or_cloud_sdk():
    code = (
        "import sys, crew_core\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('crew_local', 'boto3', 'google')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
