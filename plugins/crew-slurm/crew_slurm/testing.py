"""A real single-node Slurm cluster for tests: ``slurmctld`` and ``slurmd`` on this machine.

Needs Slurm's daemons installed (Debian: ``slurmctld slurmd slurm-client``) and root (or a user
the daemons may run as). All state lives in one folder; :meth:`SlurmCluster.stop` cancels every
job before it stops the daemons, since killing the daemons first orphans job processes.

    with SlurmCluster(folder) as cluster:
        os.environ.update(cluster.env)   # SLURM_CONF for sbatch, squeue, scancel
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd")


class SlurmUnavailable(RuntimeError):
    """Slurm's daemons are not installed here or would not start; the message says why."""


def _free_ports(count: int) -> list[int]:
    """Ports free on this machine now (held open together, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _conf(folder: Path, cpus: int, partitions: dict[str, str], ports: list[int]) -> str:
    user = getpass.getuser()
    node = socket.gethostname().split(".")[0]
    lines = [
        "ClusterName=crewtest",
        "SlurmctldHost=localhost",
        # Ports of its own: two clusters (two test processes, two checkouts) can run side by side.
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        f"SlurmUser={user}",
        f"SlurmdUser={user}",
        "AuthType=auth/none",
        "CredType=cred/none",
        f"StateSaveLocation={folder}/state",
        f"SlurmdSpoolDir={folder}/spool",
        f"SlurmctldPidFile={folder}/run/slurmctld.pid",
        f"SlurmdPidFile={folder}/run/slurmd.pid",
        f"SlurmctldLogFile={folder}/log/slurmctld.log",
        f"SlurmdLogFile={folder}/log/slurmd.log",
        "MailProg=/bin/true",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=batch_sched_delay=0",
        "MpiDefault=none",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "ReturnToService=2",
        "MinJobAge=300",
        "KillWait=2",
        "InactiveLimit=0",
        "SlurmdParameters=config_overrides",  # allow more CPUs than the machine has: workers mostly wait
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} Sockets=1 CoresPerSocket={cpus} ThreadsPerCore=1"
        " State=UNKNOWN",
    ]
    for name, options in partitions.items():
        lines.append(f"PartitionName={name} Nodes=ALL {options}".rstrip())
    return "\n".join(lines) + "\n"


class SlurmCluster:
    """Start and stop ``slurmctld`` + ``slurmd`` with all state under ``folder``."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        cpus: int | None = None,
        partitions: dict[str, str] | None = None,
    ) -> None:
        self.folder = Path(folder).absolute()
        self.cpus = cpus or 8
        self.partitions = partitions or {
            "debug": "Default=YES MaxTime=INFINITE State=UP",
            "short": "MaxTime=00:00:20 State=UP",
        }
        self.conf = self.folder / "etc" / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}
        self._processes: list[subprocess.Popen[bytes]] = []

    def _run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env={**os.environ, **self.env}, capture_output=True, text=True, check=check)

    def start(self, timeout: float = 60.0) -> SlurmCluster:
        missing = [d for d in (*DAEMONS, "sbatch", "squeue", "scancel", "scontrol") if not shutil.which(d)]
        if missing:
            raise SlurmUnavailable(f"Slurm is not installed here (missing {', '.join(missing)})")
        for sub in ("etc", "state", "spool", "run", "log"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(_conf(self.folder, self.cpus, self.partitions, _free_ports(2)))
        env = {**os.environ, **self.env}
        for daemon in DAEMONS:
            log = open(self.folder / "log" / f"{daemon}.out", "wb")  # noqa: SIM115 - the daemon owns it
            self._processes.append(
                subprocess.Popen([daemon, "-D", "-f", str(self.conf)], env=env, stdout=log, stderr=subprocess.STDOUT)
            )
            ready = self._wait_ready(daemon, timeout)
            if not ready:
                self.stop()
                log_text = (self.folder / "log" / f"{daemon}.out").read_text(errors="replace")[-2000:]
                raise SlurmUnavailable(f"{daemon} did not come up within {timeout} s:\n{log_text}")
        return self

    def _wait_ready(self, daemon: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._processes[-1].poll() is not None:
                return False
            if daemon == "slurmctld":
                if "UP" in self._run("scontrol", "ping").stdout:
                    return True
            else:
                states = self._run("sinfo", "-h", "-o", "%T").stdout.split()
                if states and all(s.rstrip("*") in ("idle", "mixed", "allocated") for s in states):
                    return True
            time.sleep(0.05)
        return False

    def cancel_all(self, timeout: float = 60.0) -> None:
        """Cancel every job and wait until the queue is empty."""
        self._run("scancel", "--full", "--user", getpass.getuser())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._run("squeue", "-h", "-o", "%i").stdout.strip():
                return
            time.sleep(0.1)

    def stop(self) -> None:
        """Cancel all jobs, then stop the daemons (slurmd first)."""
        if any(p.poll() is None for p in self._processes):
            self.cancel_all()
        for process in reversed(self._processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._processes.clear()

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
