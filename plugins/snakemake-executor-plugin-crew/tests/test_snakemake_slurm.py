"""A workflow of 100 jobs with dependencies on a real single-node Slurm, through crew-slurm workers."""

from __future__ import annotations

import subprocess
from pathlib import Path

from crew_slurm.testing import SlurmCluster
from snakemake_crew_testing import run_snakemake, snakemake_log, wait_until, write_workflow

WORKFLOW = """
    N = 50

    localrules: all

    rule all:
        input: "total.txt"

    rule first:
        output: "first/{i}.txt"
        shell: "echo {wildcards.i} > {output}"

    rule second:
        input: "first/{i}.txt"
        output: "second/{i}.txt"
        shell: "cat {input} > {output}; echo \\"$SLURM_JOB_ID\\" >> {output}"

    rule total:
        input: expand("second/{i}.txt", i=range(N))
        output: "total.txt"
        shell: "cat {input} > {output}"
"""


def test_a_workflow_of_101_jobs_runs_on_four_warm_slurm_workers(slurm: SlurmCluster, tmp_path: Path) -> None:
    folder = write_workflow(tmp_path / "wf", WORKFLOW)
    logs = tmp_path / "slurm-logs"
    ran = run_snakemake(folder, "--jobs", "4", "--crew-worker-class", "slurm",
                        "--crew-warm", "--crew-recruit", f"workers=4,log_dir={logs}", timeout=600)  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-5000:]
    assert "101 of 102 steps" in snakemake_log(folder) or "102 of 102 steps (100%) done" in snakemake_log(folder)
    lines = (folder / "total.txt").read_text().split()
    assert sorted(int(i) for i in lines[0::2]) == list(range(50))  # every second job read its first job's output
    slurm_jobs = set(lines[1::2])
    assert 1 <= len(slurm_jobs) <= 4, slurm_jobs  # the jobs ran inside the 4 workers' Slurm jobs, not one sbatch each
    wait_until(lambda: not subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip(), 30,
               "the workers' Slurm jobs to end")  # fmt: skip
