"""What a user sees when a rule fails, and when they stop the workflow with Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
from snakemake_crew_testing import (
    assert_crews_gone,
    crew_stores,
    live,
    run_snakemake,
    snakemake_command,
    snakemake_log,
    wait_until,
    write_workflow,
)

#: Each job's Snakemake as a fresh process (the default), or in a fork of its warm worker (--crew-warm).
MODES = pytest.mark.parametrize("mode", [[], ["--crew-warm"]], ids=["fresh", "warm"])


@MODES
def test_a_failing_rule_fails_the_workflow_with_its_stderr_in_snakemakes_log(tmp_path: Path, mode: list[str]) -> None:
    folder = write_workflow(tmp_path / "wf", """
        rule all:
            input: "fine.txt", "broken.txt"

        rule fine:
            output: "fine.txt"
            shell: "touch {output}"

        rule broken:
            output: "broken.txt"
            shell: "echo 'the reagent ran out' >&2; exit 3"
    """)  # fmt: skip
    ran = run_snakemake(folder, "--jobs", "2", "--crew-worker-class", "subprocess", *mode)
    assert ran.returncode != 0, ran.stdout
    log = snakemake_log(folder)
    assert "Error in rule broken" in log
    assert re.search(r"crew job \d+ on worker subprocess-\d+ failed: the command exited with status 1", log), log
    assert "the reagent ran out" in log  # the rule's own stderr, quoted in the error
    assert "exit status 3" in log  # what the job's Snakemake said about the shell command
    crew_logs = list((folder / ".snakemake" / "crew_logs" / "rule_broken").glob("*.log"))
    assert len(crew_logs) == 1 and str(crew_logs[0]) in log  # named in the error report
    job_log = crew_logs[0].read_text()
    assert "status success (the command exited with status 1)" in job_log
    assert "---- stderr ----" in job_log and "the reagent ran out" in job_log
    assert (folder / "fine.txt").exists() and not (folder / "broken.txt").exists()
    assert not (folder / ".snakemake" / "crew_logs" / "rule_fine").exists()  # successes keep no log


@MODES
def test_ctrl_c_cancels_the_crew_jobs_and_ends_the_workers(tmp_path: Path, mode: list[str]) -> None:
    folder = write_workflow(tmp_path / "wf", """
        rule all:
            input: expand("slept/{i}.txt", i=range(4))

        rule sleepy:
            output: "slept/{i}.txt"
            shell: "echo $$ > started.{wildcards.i}; sleep 600; touch {output}"
    """)  # fmt: skip
    command = snakemake_command("--jobs", "2", "--crew-worker-class", "subprocess", *mode)
    snakemake = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: len(list(folder.glob("started.*"))) == 2, 60, "two jobs to start")
        shells = [psutil.Process(int(path.read_text())) for path in folder.glob("started.*")]
        descendants = psutil.Process(snakemake.pid).children(recursive=True)
        workers = [p for p in psutil.Process(snakemake.pid).children() if "crew_core" in " ".join(p.cmdline())]
        assert len(workers) == 2
        snakemake.send_signal(signal.SIGINT)  # what Ctrl-C sends
        output, _ = snakemake.communicate(timeout=60)
    finally:
        if snakemake.poll() is None:
            snakemake.kill()
            snakemake.wait()
    assert snakemake.returncode != 0
    assert "Terminating processes on user request" in output
    wait_until(lambda: not live([*descendants, *shells]), 30, "the workers and the jobs' commands to end")
    assert crew_stores(folder)
    assert_crews_gone(folder)  # the crew closed: no worker names its store, and the store folder is gone
    assert not list(folder.glob("slept/*.txt"))


def test_a_job_that_kills_its_worker_fails_saying_how_the_worker_died(tmp_path: Path) -> None:
    folder = write_workflow(tmp_path / "wf", """
        rule deadly:
            output: "never.txt"
            shell: "python kill_my_worker.py"
    """)  # fmt: skip
    (folder / "kill_my_worker.py").write_text(
        "import psutil\n"
        "for process in psutil.Process().parents():\n"
        "    if 'crew_core' in process.cmdline():\n"
        "        process.kill()\n"
    )
    ran = run_snakemake(folder, "--jobs", "1", "--crew-worker-class", "subprocess", "--crew-max-tries", "1")
    assert ran.returncode != 0, ran.stdout
    log = snakemake_log(folder)
    assert re.search(
        r"crew job 1 on worker subprocess-1 failed: its worker died under it 1 time\(s\): .*SIGKILL", log
    ), log


def test_threads_and_crew_tags_choose_the_pool_and_a_job_no_pool_fits_fails_at_once(tmp_path: Path) -> None:
    folder = write_workflow(tmp_path / "wf", """
        rule all:
            input: "small.txt", "large.txt", "huge.txt"

        rule small:
            output: "small.txt"
            shell: "touch {output}"

        rule large:
            output: "large.txt"
            threads: 3
            resources: crew_tags="big"
            shell: "touch {output}"

        rule huge:
            output: "huge.txt"
            threads: 64
            shell: "touch {output}"
    """)  # fmt: skip
    ran = run_snakemake(folder, "--jobs", "3", "--keep-going", "--crew-keep-successful-logs",
                        "--crew-recruit", "workers=1,threads=1", "workers=1,threads=4,tags=big")  # fmt: skip
    assert ran.returncode != 0, ran.stdout  # huge failed
    assert (folder / "small.txt").exists() and (folder / "large.txt").exists()
    (large,) = (folder / ".snakemake" / "crew_logs" / "rule_large").glob("*.log")
    assert "worker: subprocess-2," in large.read_text()  # the pool tagged big, with 4 threads
    log = snakemake_log(folder)
    assert "Error in rule huge" in log and "no crew worker can run this job" in log
