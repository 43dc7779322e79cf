"""What ``import crew_core`` costs: the public names load on first use, so what needs none of them
(a worker process, ``crew --version``, a plugin's import) pays for no controller."""

from __future__ import annotations

import json
import subprocess
import sys

#: Modules ``import crew_core`` must not import: each costs milliseconds a worker or a CLI call
#: that does not use it would pay.
HEAVY = ("boto3", "botocore", "google", "cloudpickle", "asyncio", "argparse", "concurrent.futures.process",
         "cryptography", "pluggy", "blake3",
         "crew_core.api.crew", "crew_core.runner.manager", "crew_core.engine")  # fmt: skip


def _imported(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return set(json.loads(out))


def test_import_crew_core_imports_nothing_heavy():
    imported = _imported("import crew_core")
    assert not {name for name in HEAVY if name in imported}


def test_every_public_name_still_imports_from_crew_core():
    import crew_core

    for name in crew_core.__all__:
        assert getattr(crew_core, name) is not None, name
    assert "Crew" in dir(crew_core)
    assert "crew_core.api.crew" in _imported("from crew_core import Crew")  # loaded when asked for
