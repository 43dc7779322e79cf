"""A worker that is one local Python process running ``python -m crew_core worker``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from typing import IO, Any

from crew_core.plugin import (
    LABEL_ENV,
    BackendJob,
    CrewError,
    Launch,
    Worker,
    WorkerLaunchError,
    environment_variable,
    kill_tree,
    launch_in,
    own_processes,
    process_alive,
)


class SubprocessWorker(Worker):
    """One child process per worker, on this machine.

    Options: ``env`` (extra environment variables), ``cwd`` (working directory, default the
    controller's), ``stdout``/``stderr`` (file objects or ``subprocess.DEVNULL``; by default the
    worker writes where the controller does, as ``ProcessPoolExecutor`` workers do), ``python``
    (the interpreter; default the controller's own), ``detached`` (True: the worker does not end
    with the controller's process but once the crew's lease stands still, so that a named crew
    resumed by a new controller adopts it).
    """

    worker_class = "subprocess"
    beside_controller = True  # a process of the controller's user on its machine
    status_interval = 0.05  # poll() is a system call: checking often costs nothing

    def __init__(
        self,
        name: str,
        *,
        tags: Iterable[str] | str | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        stdout: IO[Any] | int | None = None,
        stderr: IO[Any] | int | None = None,
        python: str | None = None,
        detached: bool = False,
    ) -> None:
        super().__init__(name, tags=tags, timeout=timeout)
        self.env = dict(env or {})
        self.cwd = cwd
        self.stdout = stdout
        self.stderr = stderr
        self.python = python or sys.executable  # type: ignore[misc]
        if not isinstance(detached, bool):
            raise TypeError(f"detached must be True or False, not {detached!r}")
        self.detached = detached
        self._process: subprocess.Popen[bytes] | None = None
        self._killed = False  # by kill(): not a crash of its own
        self._ooms = 0  # out-of-memory kills in this cgroup when it started

    @property
    def ends_with_controller(self) -> bool:
        """True unless ``detached``: the worker leaves once the controller's process has ended."""
        return not self.detached

    def start(self, launch: Launch) -> None:
        env = dict(os.environ)
        # The worker imports what the controller can: functions pickled by reference resolve.
        env["PYTHONPATH"] = os.pathsep.join(p for p in [*sys.path, env.get("PYTHONPATH", "")] if p)
        env.update(self.env)
        env.update(launch.environment)
        env.update(launch.secrets)  # readable by this user only (/proc/<pid>/environ); never on the command line
        command = launch.command(self.python)
        if not self.detached:
            command += ["--parent-pid", str(os.getpid())]
        self._killed, self._ooms = False, _oom_kills()
        try:
            self._process = subprocess.Popen(
                command, env=env, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=self.stdout, stderr=self.stderr,
                start_new_session=self.detached,  # Ctrl-C in the controller's terminal leaves it be
            )  # fmt: skip
        except OSError as exc:
            raise WorkerLaunchError(f"cannot start worker {self.name!r} with {self.python!r}: {exc}") from exc

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            self._killed = True
            kill_tree(process.pid)  # what its job started would outlive it, reparented
            process.wait()

    def exit_cause(self) -> str | None:
        code = self.returncode
        if code is None:
            return None
        if code >= 0:
            return f"its process ended with exit code {code}"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code != signal.SIGKILL or self._killed:
            return f"its process was killed by {name}" + (" (by crew)" if self._killed else "")
        if _oom_kills() > self._ooms:
            return "its process was killed by SIGKILL: out of memory (the kernel's OOM killer counted a kill)"
        return "its process was killed by SIGKILL (likely out of memory: the kernel's OOM killer sends SIGKILL)"

    # ------------------------------------------------------------------ finding workers by crew
    def place(self) -> dict[str, Any] | None:
        return {"host": socket.gethostname()}

    @classmethod
    def find(cls, label: str, place: Mapping[str, Any], via: Worker | None = None) -> list[BackendJob]:
        """This user's worker processes on this machine whose environment carries the crew's label
        (its command line says which worker and launch each is)."""
        _check_host(place)
        found = []
        for pid, argv in own_processes().items():
            launch = launch_in(argv)
            if launch is None or launch.forwards != cls.nested:
                continue
            if environment_variable(pid, LABEL_ENV) == label:
                found.append(BackendJob(cls.worker_class, label, str(pid), "RUNNING", launch.worker,
                                        launch.incarnation, dict(place)))  # fmt: skip
        return found

    @classmethod
    def end(cls, jobs: list[BackendJob], via: Worker | None = None) -> None:
        """SIGKILL each process and what its job started, if it still is the crew's worker."""
        for job in jobs:
            _check_host(job.place)
        for job in jobs:
            pid = int(job.id)
            # Looked at again just before the kill: it may have ended, and its pid gone to another process.
            if environment_variable(pid, LABEL_ENV) != job.label or not process_alive(pid):
                continue
            kill_tree(pid)

    @property
    def pid(self) -> int | None:
        """Process id of the current incarnation, if one was started."""
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last incarnation (negative: killed by that signal)."""
        return self._process.poll() if self._process is not None else None


def _oom_kills() -> int:
    """Processes the kernel's OOM killer has killed in this process's cgroup (v2); 0 if unknown."""
    try:
        with open("/proc/self/cgroup") as handle:
            path = next(line.split(":", 2)[2].strip() for line in handle if line.startswith("0::"))
        with open(f"/sys/fs/cgroup{path}/memory.events") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("oom_kill "))
    except (OSError, StopIteration, ValueError, IndexError):
        return 0


def _check_host(place: Mapping[str, Any]) -> None:
    host = place.get("host")
    if host != socket.gethostname():
        raise CrewError(f"these workers run on host {host!r}: run crew stop there to end them")
