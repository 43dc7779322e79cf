"""The --crew-... settings, and how a job's threads and resources become crew tags and a timeout."""

from __future__ import annotations

import math
import os
from dataclasses import fields
from pathlib import Path

import pytest
from snakemake_executor_plugin_crew import ExecutorSettings
from snakemake_executor_plugin_crew.command import snakemake_runs
from snakemake_executor_plugin_crew.outcome import outcome
from snakemake_executor_plugin_crew.placement import placement, pool_tags
from snakemake_executor_plugin_crew.settings import crew_settings, parse_spec, pools, worker_classes
from snakemake_interface_common.exceptions import WorkflowError

from crew_core import Result, WorkerCrashedError


def test_a_recruit_spec_is_key_value_pairs_or_json():
    assert parse_spec("workers=4,class=slurm,cpus=2,tags=big+gpu,timeout=inf,partition=short") == {
        "workers": 4, "class": "slurm", "cpus": 2, "tags": "big+gpu", "timeout": math.inf, "partition": "short",
    }  # fmt: skip
    assert parse_spec('{"workers": 2, "sbatch_args": ["--qos=low"]}') == {"workers": 2, "sbatch_args": ["--qos=low"]}
    with pytest.raises(WorkflowError, match="is not key=value"):
        parse_spec("workers")


def test_pools_default_to_one_of_as_many_workers_as_jobs():
    (pool,) = pools(ExecutorSettings(), jobs=6)
    assert (pool.workers, pool.worker_class, pool.tags, pool.threads) == (6, None, frozenset(), os.cpu_count())
    assert pools(ExecutorSettings(workers=2), jobs=6)[0].workers == 2
    assert pools(ExecutorSettings(), jobs=None)[0].workers == os.cpu_count()  # --jobs unlimited


def test_pools_from_specs_keep_the_worker_class_options_apart():
    small, big = pools(ExecutorSettings(recruit=["workers=3;workers=1,class=slurm,cpus=8,tags=big,timeout=60"]), 4)
    assert (small.workers, small.worker_class, small.recruit) == (3, None, {})
    assert (big.workers, big.worker_class, big.tags, big.threads) == (1, "slurm", frozenset({"big"}), 8)
    assert big.recruit == {"cpus": 8, "idle_timeout": 60}  # cpus goes to crew-slurm (sbatch --cpus-per-task) too
    assert pools(ExecutorSettings(recruit=["workers=1,threads=3"]), 4)[0].threads == 3
    with pytest.raises(WorkflowError, match="workers must be"):
        pools(ExecutorSettings(recruit=["workers=0"]), 4)


def test_crew_settings_and_worker_classes():
    settings = ExecutorSettings(max_tries=5, setting=["lease_timeout=600", "heartbeat_timeout=none"],
                                worker_class="slurm, subprocess")  # fmt: skip
    assert crew_settings(settings) == {"lease_timeout": 600, "heartbeat_timeout": None, "max_tries": 5}
    assert worker_classes(settings) == ["slurm", "subprocess"]
    assert worker_classes(ExecutorSettings()) is None
    with pytest.raises(WorkflowError, match="--crew-setting 'lease_timeout' is not key=value"):
        crew_settings(ExecutorSettings(setting=["lease_timeout"]))


def test_threads_become_a_tag_that_only_big_enough_workers_carry():
    assert pool_tags(frozenset({"gpu"}), 3) == {"gpu", "threads>=2", "threads>=3"}
    assert placement(1, {}).tags == frozenset()
    needs = placement(3, {"crew_tags": "gpu,big", "mem_mb": 1000})
    assert needs.tags == {"gpu", "big", "threads>=3"}
    assert needs.tags - {"big"} <= pool_tags(frozenset({"gpu"}), 4)
    assert not needs.tags - {"big"} <= pool_tags(frozenset({"gpu"}), 2)


def test_runtime_in_minutes_becomes_the_crew_job_timeout():
    assert placement(1, {"runtime": 90}).timeout == 5400
    assert placement(1, {}).timeout is None
    assert placement(1, {"runtime": "90"}).timeout is None  # Snakemake makes it a number; anything else: none


def test_outcomes_say_what_happened_and_quote_stderr():
    ok = outcome(Result(1, "success", value=0, worker="w1", stdout="out\n"), "rule a")
    assert ok.ok and "---- stdout ----\nout\n" in ok.log
    failed = outcome(Result(2, "success", value=1, worker="w1", stderr="line 1\nboom\n"), "rule a")
    assert not failed.ok
    assert failed.message.startswith("crew job 2 on worker w1 failed: the command exited with status 1.")
    assert "    boom" in failed.message and "---- stderr ----\nline 1\nboom\n" in failed.log
    killed = outcome(Result(3, "success", value=-9, worker="w1"), "rule a")
    assert "killed by SIGKILL" in killed.message
    crashed = outcome(Result(4, "crash", error=WorkerCrashedError("exit code -9 (out of memory)"), tries=3), "r")
    assert "its worker died under it 3 time(s): exit code -9 (out of memory)" in crashed.message


def test_warm_workers_fork_only_for_chains_of_snakemake_runs():
    chain = "python -m snakemake --deploy-sources s3://b/x.tar.xz 1f --default-storage-provider s3 && " \
            "/usr/bin/python3 -m snakemake --snakefile 'Snake file' --target-jobs 'a:i=1' --mode remote"  # fmt: skip
    assert snakemake_runs(chain) == [
        ["--deploy-sources", "s3://b/x.tar.xz", "1f", "--default-storage-provider", "s3"],
        ["--snakefile", "Snake file", "--target-jobs", "a:i=1", "--mode", "remote"],
    ]
    assert snakemake_runs("source activate env && python -m snakemake --mode remote") is None  # a precommand
    assert snakemake_runs("python -m snakemake --mode remote || true") is None


def test_the_readme_documents_every_setting():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for setting in fields(ExecutorSettings):
        flag = "--crew-" + setting.name.replace("_", "-")
        assert f"`{flag}" in readme, f"{flag} is not in the README's settings table"
        if setting.metadata.get("env_var"):
            assert f"`SNAKEMAKE_CREW_{setting.name.upper()}`" in readme, setting.name
