"""What runs on a crew worker for each Snakemake job: its shell command, in a process group of its own.

The worker stays up between jobs; only the command (``python -m snakemake ... --mode remote``,
which runs the rule) starts per job. Its output goes to the worker's standard output and error,
which crew captures into the job's result; its exit status is the job's value.

:func:`run_warm` saves the command's start-up (importing Snakemake: about a second of CPU): the
worker imports Snakemake once, and each job's Snakemake runs in a fork of the worker.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator

#: Seconds the command gets to end after SIGTERM (Snakemake removes incomplete outputs) before SIGKILL.
TERM_GRACE = 3.0


def run_command(command: str, cwd: str | None = None, env: dict[str, str] | None = None) -> int:
    """Run ``command`` with ``/bin/sh`` in ``cwd`` and return its exit status (-N: killed by signal N).

    ``cwd`` None runs it in a fresh temporary folder, removed afterwards (workers that do not
    share the workflow's file system). ``env`` is added to the worker's environment, and the
    folder of the worker's Python comes first on ``PATH``, so that ``python`` is the interpreter
    that has crew (and Snakemake). When the crew job is stopped (cancelled, timed out), the
    whole process group gets SIGTERM, then SIGKILL.
    """
    with _place(cwd) as folder:
        process = subprocess.Popen(command, shell=True, cwd=folder, env=_environment(env), stdin=subprocess.DEVNULL,
                                   start_new_session=True)  # fmt: skip
        try:
            return process.wait()
        except BaseException:
            _end(process.pid, lambda timeout: process.wait(timeout=timeout))
            raise


def run_warm(command: str, cwd: str | None = None, env: dict[str, str] | None = None) -> int:
    """:func:`run_command` for ``<python> -m snakemake ARGS [&& <python> -m snakemake ARGS ...]``, each
    Snakemake run in a fork of this worker (a chain: ``--deploy-sources`` first, without a shared
    file system).

    The fork has Snakemake and its plugins imported already (this worker imports them once, at
    its first job) and calls Snakemake's command-line entry point with ``ARGS``; it is a session
    of its own, with Python's default signal handlers. A command of any other shape (a
    ``--precommand`` of the user's) runs as :func:`run_command` runs it.
    """
    runs = snakemake_runs(command)
    if runs is None:
        return run_command(command, cwd, env)
    main = _warm_snakemake()
    with _place(cwd) as folder:
        environment = _environment(env)
        for args in runs:
            code = _fork_snakemake(main, args, folder, environment)
            if code != 0:
                return code
        return 0


#: Modules each Snakemake run would import after its argument parser; imported once per worker.
WARM_MODULES = ("snakemake.api", "snakemake.workflow", "snakemake.dag", "snakemake.jobs", "snakemake.persistence",
                "snakemake.scheduling.job_scheduler", "smart_open")  # fmt: skip


@functools.cache
def _warm_snakemake() -> Callable[[], object]:
    """Snakemake's entry point, in a worker that did once what each run would do first: import
    Snakemake and every installed Snakemake plugin (building the argument parser scans ``sys.path``
    for them). A forked run then costs about 60 ms of CPU on a small workflow, not 1.2 s."""
    import snakemake.cli

    snakemake.cli.get_argument_parser()
    for name in WARM_MODULES:
        with contextlib.suppress(ImportError):  # another Snakemake version may lay its modules out otherwise
            importlib.import_module(name)
    return snakemake.cli.main


def snakemake_runs(command: str) -> list[list[str]] | None:
    """The arguments of each ``<python> -m snakemake ...`` joined by ``&&`` in ``command``; None when
    ``command`` holds anything else."""
    words = shlex.split(command)
    if set(words) & {"||", ";", "|", "&", ">", "<"}:
        return None
    runs: list[list[str]] = [[]]
    for word in words:
        if word == "&&":
            runs.append([])
        else:
            runs[-1].append(word)
    if any(len(run) < 3 or run[1:3] != ["-m", "snakemake"] for run in runs):
        return None
    return [run[3:] for run in runs]


def _fork_snakemake(main: Callable[[], object], args: list[str], cwd: str, env: dict[str, str]) -> int:
    """Run Snakemake's ``main`` with ``args`` in a forked child; its exit status."""
    sys.stdout.flush()
    sys.stderr.flush()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads may deadlock the child: the
        # child here touches nothing crew's threads hold (it runs Snakemake, then _exit).
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns
        _run_snakemake_in_child(main, args, cwd, env)
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException:
        _end(pid, lambda timeout: _wait_pid(pid, timeout))
        raise
    return os.waitstatus_to_exitcode(status)


def _run_snakemake_in_child(main: Callable[[], object], args: list[str], cwd: str, env: dict[str, str]) -> None:
    code = 1
    try:
        os.setsid()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
            signal.signal(signum, signal.SIG_DFL)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["snakemake", *args]
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


@contextlib.contextmanager
def _place(cwd: str | None) -> Iterator[str]:
    """``cwd``, or a temporary folder removed afterwards."""
    if cwd is not None:
        yield cwd
        return
    with tempfile.TemporaryDirectory(prefix="snakemake-crew-") as folder:
        yield folder


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    environment = {**os.environ, **(env or {})}
    environment["PATH"] = os.pathsep.join(filter(None, [os.path.dirname(sys.executable), environment.get("PATH")]))
    return environment


def _wait_pid(pid: int, timeout: float | None) -> None:
    """``waitpid`` with a timeout (:class:`subprocess.TimeoutExpired` when it passes)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done, _ = os.waitpid(pid, 0 if deadline is None else os.WNOHANG)
        if done:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(str(pid), timeout or 0)
        time.sleep(0.02)


def _end(pid: int, wait: Callable[[float | None], object]) -> None:
    """SIGTERM to process group ``pid``, SIGKILL after ``TERM_GRACE`` seconds; ``wait`` reaps the leader."""
    for sig, grace in ((signal.SIGTERM, TERM_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:  # a fork stopped before its setsid() has no group yet
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        try:
            wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue
