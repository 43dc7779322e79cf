"""A Snakemake workflow of short jobs on a real single-node Slurm: --executor crew against Snakemake's
own Slurm executor (one sbatch per job) and against --cores 2 on this machine.

Run: ``python benchmarks/snakemake_slurm.py [--jobs 200] [--parallel 8] [--repeat 3]``. The workflow
has ``--jobs`` Slurm jobs in pairs (``first`` then ``second``, which reads it) and one local rule
that gathers them. Each run is timed from Snakemake's start to its end, in a fresh copy of the
workflow, the modes interleaved (each first in turn); ``sbatch`` calls are counted by a wrapper first on ``PATH``, and
each run prints the load average at its start. Needs Slurm's daemons (a cluster starts with
``crew_slurm.testing.SlurmCluster`` unless ``SLURM_CONF`` names one) and
``snakemake-executor-plugin-slurm``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampling import rotated

WORKFLOW = """
    PAIRS = {pairs}

    localrules: all

    rule all:
        input: expand("second/{{i}}.txt", i=range(PAIRS))
        output: "all.txt"
        shell: "cat {{input}} > {{output}}"

    rule first:
        output: "first/{{i}}.txt"
        shell: "echo {{wildcards.i}} > {{output}}"

    rule second:
        input: "first/{{i}}.txt"
        output: "second/{{i}}.txt"
        shell: "cat {{input}} > {{output}}"
"""

SBATCH_WRAPPER = """#!/bin/sh
echo "$$" >> {count}
exec {sbatch} "$@"
"""

# snakemake-executor-plugin-slurm's job step drops every SLURM_* variable before its srun (a real
# cluster's srun reads /etc/slurm/slurm.conf); this test cluster's srun needs SLURM_CONF back.
SRUN_WRAPPER = """#!/bin/sh
export SLURM_CONF={conf}
exec {srun} "$@"
"""


def modes(parallel: int, folder: Path) -> dict[str, list[str]]:
    """Snakemake's arguments for each way of running the workflow."""
    crew = ["--executor", "crew", "--jobs", str(parallel), "--crew-worker-class", "slurm",
            "--crew-recruit", f"workers={parallel},log_dir={folder / 'crew-slurm-logs'}"]  # fmt: skip
    # Its defaults wait 40 s before the first status check and 10 s between checks (kind to a busy
    # slurmctld); 1 s each here. sacct needs Slurm's accounting database, which this cluster lacks.
    slurm = ["--executor", "slurm", "--jobs", str(parallel), "--slurm-no-account", "--slurm-status-command", "squeue",
             "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1"]  # fmt: skip
    return {
        f"crew, {parallel} Slurm workers": crew,
        f"crew --crew-warm, {parallel} Slurm workers": [*crew, "--crew-warm"],
        "snakemake-executor-plugin-slurm": slurm,
        "--cores 2 (local, no Slurm)": ["--cores", "2"],
    }


def run(name: str, args: list[str], workflow: Path, folder: Path, env: dict[str, str]) -> tuple[float, int, str]:
    """One run in a fresh copy of ``workflow``: (seconds, sbatch calls, load average at its start)."""
    where = folder / "runs" / f"{name.split(',')[0].replace(' ', '-')}-{time.monotonic_ns()}"
    shutil.copytree(workflow, where)
    count = folder / "sbatch-calls"
    count.write_text("")
    load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    start = time.perf_counter()
    ran = subprocess.run([sys.executable, "-m", "snakemake", "--nocolor", "--quiet", "all", *args], cwd=where,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    seconds = time.perf_counter() - start
    if ran.returncode != 0 or not (where / "all.txt").exists():
        logs = sorted((where / ".snakemake" / "log").glob("*.log"))  # --quiet leaves the reason there
        told = logs[-1].read_text()[-4000:] if logs else ""
        sys.exit(f"{name} failed (exit {ran.returncode}):\n{ran.stdout[-4000:]}\n{told}")
    shutil.rmtree(where)
    return seconds, len(count.read_text().split()), load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200, help="Slurm jobs in the workflow (an even number)")
    parser.add_argument("--parallel", type=int, default=8, help="--jobs for the Slurm modes, and crew's workers")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="run only the modes whose names start with these words")
    ns = parser.parse_args()
    from crew_slurm.testing import SlurmCluster

    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # stop the cluster on the way out

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="snakemake-slurm-bench-")))
        if "SLURM_CONF" not in os.environ:
            cluster = stack.enter_context(SlurmCluster(folder / "slurm"))
            os.environ.update(cluster.env)
            subprocess.run(["srun", "true"], check=True)  # the first job after a start waits ~3 s
        real_sbatch = shutil.which("sbatch")
        if real_sbatch is None:
            sys.exit("sbatch is not on PATH")
        wrappers = folder / "bin"
        wrappers.mkdir()
        (wrappers / "sbatch").write_text(SBATCH_WRAPPER.format(count=folder / "sbatch-calls", sbatch=real_sbatch))
        (wrappers / "srun").write_text(SRUN_WRAPPER.format(conf=os.environ["SLURM_CONF"], srun=shutil.which("srun")))
        for wrapper in wrappers.iterdir():
            wrapper.chmod(0o755)
        env = {**os.environ, "PATH": f"{wrappers}{os.pathsep}{os.environ['PATH']}"}
        workflow = folder / "workflow"
        workflow.mkdir()
        (workflow / "Snakefile").write_text(textwrap.dedent(WORKFLOW.format(pairs=ns.jobs // 2)))
        chosen = {name: args for name, args in modes(ns.parallel, folder).items()
                  if not ns.only or any(name.startswith(word) for word in ns.only)}  # fmt: skip
        print(f"{ns.jobs} Slurm jobs (+1 local), --jobs {ns.parallel}, {ns.repeat} interleaved repeats,"
              f" {os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.2f}")  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in chosen}
        calls: dict[str, list[int]] = {name: [] for name in chosen}
        for repeat in range(ns.repeat):
            for name in rotated(list(chosen), repeat):  # each mode goes first in turn
                seconds, sbatch, load = run(name, chosen[name], workflow, folder, env)
                times[name].append(seconds)
                calls[name].append(sbatch)
                print(f"  run {repeat + 1}: {name}: {seconds:.1f} s, {sbatch} sbatch calls (load {load})", flush=True)
        print(f"\nmedians of {ns.repeat} (load average at end {os.getloadavg()[0]:.2f}):")
        width = max(map(len, chosen))
        for name in chosen:
            print(f"  {name:<{width}}  {statistics.median(times[name]):7.1f} s wall"
                  f" ({min(times[name]):.1f}-{max(times[name]):.1f})"
                  f"  {statistics.median(calls[name]):5.0f} sbatch calls")  # fmt: skip


if __name__ == "__main__":
    main()
