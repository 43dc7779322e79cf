"""What a user installs: built wheels of all five distributions in a fresh venv, and a worker whose
crew-core speaks another protocol than its controller."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

from crew_core import Crew, WorkerLaunchError, __version__
from crew_core.wire import protocol

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = {
    "crew-core": ROOT,
    **{name: ROOT / "plugins" / name for name in ("crew-local", "crew-aws", "crew-gcp", "crew-slurm")},
}


def test_a_worker_of_another_protocol_refuses_to_start_naming_both():
    ran = subprocess.run(
        [sys.executable, "-m", "crew_core", "worker", "--store", "{}", "--crew", "c", "--name", "w",
         "--incarnation", "1", "--protocol", str(protocol.PROTOCOL + 1)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode != 0
    assert f"the controller speaks crew protocol {protocol.PROTOCOL + 1}" in ran.stderr
    assert f"crew-core {__version__} speaks protocol {protocol.PROTOCOL}" in ran.stderr


def test_a_crew_whose_workers_speak_another_protocol_says_so(monkeypatch, capfd):
    from crew_core.wire import records  # where the protocol's version is kept (protocol.py re-exports it)

    monkeypatch.setattr(records, "PROTOCOL", records.PROTOCOL + 1)  # as a newer controller would
    with Crew(worker_classes=["subprocess"], max_tries=1) as crew:
        crew.recruit(workers=1)
        crew.send(pow, args=(2, 3))
        result = crew.receive(timeout=60)
    assert result is not None and isinstance(result.error, WorkerLaunchError)
    assert "never ran" in str(result.error)
    assert "install the same crew-core version on both" in capfd.readouterr().err  # the worker's own words


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the five wheels built from this checkout (dependencies by the pins)."""
    where = tmp_path_factory.mktemp("wheels")
    wheels = where / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    *map(str, DISTRIBUTIONS.values())], check=True, timeout=600, env=_clean_env())  # fmt: skip
    home = where / "venv"
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    built = sorted(str(path) for path in wheels.glob("*.whl"))
    assert len(built) == 5, built
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c",
                    str(ROOT / "constraints.txt"), *built], check=True, timeout=900, env=_clean_env())  # fmt: skip
    return python


def _clean_env() -> dict[str, str]:
    """This process's environment without PYTHONPATH: the venv sees only what it installed."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def _in(python: Path, script: str, cwd: Path) -> str:
    ran = subprocess.run([python, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=300,
                         cwd=cwd, env=_clean_env())  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    return ran.stdout


@pytest.mark.slow
def test_wheels_install_into_a_fresh_venv_and_run_a_crew(fresh_venv, tmp_path):
    out = _in(fresh_venv, """
        import json
        from importlib import metadata
        import crew_core, crew_local, crew_aws, crew_gcp, crew_slurm
        from crew_core import Crew, CrewExecutor
        with Crew(store="local", worker_classes=["subprocess"]) as crew:
            crew.recruit(workers=2)
            values = crew.map(pow, [2, 3], [10, 2]).values()
        with CrewExecutor(max_workers=1, worker_class="subprocess") as executor:
            values.append(executor.submit(pow, 3, 3).result())
        facts = {"values": values, "modules": [m.__file__ for m in (crew_core, crew_local)]}
        for dist in ("crew-core", "crew-local", "crew-aws", "crew-gcp", "crew-slurm"):
            files = [str(f) for f in metadata.files(dist)]
            meta = metadata.metadata(dist)
            facts[dist] = {
                "typed": any(f.endswith("/py.typed") for f in files),
                "license": any(f.endswith("LICENSE") for f in files),
                "summary": meta["Summary"], "readme": (meta.get_payload() or "").splitlines()[:1],
                "requires": metadata.requires(dist),
            }
        print(json.dumps(facts))
        """, tmp_path)  # fmt: skip
    facts = json.loads(out)
    assert facts["values"] == [1024, 9, 27]
    assert all("site-packages" in path for path in facts["modules"])  # the wheels, not this checkout
    for dist in DISTRIBUTIONS:
        assert facts[dist]["typed"] and facts[dist]["license"], dist
        assert facts[dist]["readme"] == [f"# {dist}"], dist  # its own README, not the repo's
    for plugin in ("crew-local", "crew-aws", "crew-gcp", "crew-slurm"):
        assert any(r.startswith("crew-core") and "<0.2" in r for r in facts[plugin]["requires"]), plugin
    version = subprocess.run([fresh_venv.parent / "crew", "--version"], capture_output=True, text=True,
                             timeout=60, check=True).stdout  # fmt: skip
    assert version.startswith(f"crew-core {__version__} (protocol {protocol.PROTOCOL})")
    for plugin in ("crew-local", "crew-aws", "crew-gcp", "crew-slurm"):
        assert plugin in version
