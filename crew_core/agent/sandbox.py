"""What a job may not leave behind on its worker, what it wrote, and how a running job is stopped.

Used by workers that own their process (started with ``crew worker``), around each job:

- :class:`OutputCapture` points file descriptors 1 and 2 at two files of the worker's, so what
  the job prints, and what programs and C libraries it runs print, comes back with its result
  (the last :data:`MAX_OUTPUT` bytes of each stream);
- :class:`Leftovers` restores what a job should not pass on to the next one (environment
  variables, working directory, recursion limit, resource limits, signal handlers, ``sys.path``,
  ``sys.stdout``/``sys.stderr``) and ends the processes it left running;
- :class:`Interrupter` stops a job past its timeout, or cancelled, by raising in the main thread.

Imported modules, caches and objects fetched with ``crew.put`` stay: that is what keeps a worker warm.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import contextlib
import ctypes
import math
import os
import resource
import signal
import sys
import tempfile
import threading
import time
from typing import Any

from crew_core.plugin.processes import descendants

#: Bytes of each stream a result carries: the last ones, after a note of how many were cut.
MAX_OUTPUT = 1 << 20

# Each limit once, by its first name in sorted order (RLIMIT_NOFILE before its alias RLIMIT_OFILE).
_RLIMITS = {value: name for name in sorted(dir(resource), reverse=True) if name.startswith("RLIMIT_")
            for value in [getattr(resource, name)]}  # fmt: skip
_SIGNALS = [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)]
_PR_SET_CHILD_SUBREAPER = 36
# The C function: the signal module's wrapper turns every answer into an enum, ten times the cost.
_getsignal = getattr(_signal, "getsignal", signal.getsignal)


class Interrupted(BaseException):
    """Raised in a job's frame by :class:`Interrupter`; ``reason`` is "timeout" or "cancelled"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Interrupter:
    """Stops the job running in the main thread: at its timeout (a timer), or when cancelled.

    A job deep in C code that holds the GIL cannot be stopped this way; the controller then kills
    its worker (see the supervisor). No locks: the handler runs in the main thread, between
    whatever it interrupted, so it must never wait.
    """

    def __init__(self, cancelled: set[int]) -> None:
        """``cancelled``: the ids of jobs cancelled so far (the task feed's, which fills it)."""
        self._main = threading.main_thread().ident
        self._job: int | None = None  # the job that may be interrupted now
        self._deadline = math.inf  # when its timeout runs out (monotonic)
        self._cancelled = cancelled
        self.in_job = False  # the job's function runs now (not crew's code around it)
        self.fired: str | None = None  # why the current job was interrupted, if it was
        signal.signal(signal.SIGALRM, self._fire)

    def start(self, job_id: int, timeout: float | None) -> None:
        self._deadline = math.inf if timeout is None else time.monotonic() + timeout
        self._job, self.fired = job_id, None
        if timeout is not None:
            signal.setitimer(signal.ITIMER_REAL, timeout)
        elif job_id in self._cancelled:  # cancelled just before it started: stop it at once
            signal.setitimer(signal.ITIMER_REAL, 0.001)

    def stop(self) -> None:
        """The job ended: no interruption from now on."""
        self._job, self.in_job = None, False
        if self._deadline != math.inf:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def cancel(self, job_id: int) -> bool:
        """Interrupt job ``job_id``, just cancelled, if it is the one running (from another thread)."""
        if self._job != job_id or self._main is None:
            return False
        signal.pthread_kill(self._main, signal.SIGALRM)
        return True

    def _fire(self, signum: int, frame: Any) -> None:
        job = self._job
        if job is None:
            return  # it ended in the same instant
        if job in self._cancelled:
            reason = "cancelled"
        elif time.monotonic() >= self._deadline:
            reason = "timeout"
        else:
            return  # a cancel meant for an earlier job
        if not self.in_job:
            signal.setitimer(signal.ITIMER_REAL, 0.001)  # in crew's code, before the job: soon again
            return
        self.fired = reason  # a job that swallows the exception still ends with this status
        if reason == "cancelled":
            self._job = None  # once; a timeout fires again if the job goes on (every second)
        else:
            signal.setitimer(signal.ITIMER_REAL, 1.0)
        raise Interrupted(reason)


class OutputCapture:
    """Sends file descriptors 1 and 2 to two files while a job runs; reads back what it wrote.

    A job that wrote nothing costs four ``dup2`` and two ``fstat`` calls: the files are emptied
    only after a job that wrote to them.
    """

    def __init__(self) -> None:
        self._files = [tempfile.TemporaryFile(prefix="crew-output-") for _ in range(2)]  # noqa: SIM115 - kept open
        self._original = [os.dup(1), os.dup(2)]
        self._written = [False, False]

    def __enter__(self) -> OutputCapture:
        _flush()
        for index, (fd, file) in enumerate(zip((1, 2), self._files, strict=True)):
            if self._written[index]:
                os.ftruncate(file.fileno(), 0)
                os.lseek(file.fileno(), 0, os.SEEK_SET)
                self._written[index] = False
            os.dup2(file.fileno(), fd)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _flush()
        for fd, original in zip((1, 2), self._original, strict=True):
            os.dup2(original, fd)

    def read(self) -> tuple[str, str]:
        """What the job wrote to standard output and standard error (decoded, the tail if long)."""
        texts = []
        for index, file in enumerate(self._files):
            size = os.fstat(file.fileno()).st_size
            self._written[index] = size > 0
            texts.append(_tail(file.fileno(), size) if size else "")
        return texts[0], texts[1]

    def close(self) -> None:
        for file in self._files:
            file.close()
        for fd in self._original:
            os.close(fd)


def _flush() -> None:
    streams = {id(s): s for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) if s is not None}
    for stream in streams.values():
        with contextlib.suppress(Exception):
            stream.flush()


def _tail(fd: int, size: int) -> str:
    start = max(0, size - MAX_OUTPUT)
    data = os.pread(fd, size - start, start)
    text = data.decode("utf-8", errors="replace")
    return f"[crew: the first {start} bytes were cut]\n{text}" if start else text


class Leftovers:
    """The worker's state before its first job, put back after each one.

    Taken once per worker, so that a job costs only the checks: a few microseconds.
    """

    def __init__(self) -> None:
        self.environ = dict(_environ_data())
        self.cwd = os.getcwd()
        self.recursion = sys.getrecursionlimit()
        self.path = list(sys.path)
        self.streams = (sys.stdout, sys.stderr)
        self.rlimits = [(limit, resource.getrlimit(limit)) for limit in _RLIMITS]
        self.handlers = [(signum, handler) for signum in _SIGNALS if (handler := _getsignal(signum)) is not None]

    def restore(self) -> list[str]:
        """Put everything back; return what could not be (a resource limit lowered for good, say)."""
        problems = []
        if _environ_data() != self.environ:
            os.environ.clear()
            os.environ.update({_decode(k): _decode(v) for k, v in self.environ.items()})
        try:
            moved = os.getcwd() != self.cwd
        except OSError:  # the job removed the folder it moved to
            moved = True
        if moved:
            try:
                os.chdir(self.cwd)
            except OSError as exc:
                problems.append(f"working directory {self.cwd!r}: {exc}")
        if sys.getrecursionlimit() != self.recursion:
            sys.setrecursionlimit(self.recursion)
        if sys.path != self.path:
            sys.path[:] = self.path
        sys.stdout, sys.stderr = self.streams
        for limit, value in self.rlimits if _limits_touched() else ():
            if resource.getrlimit(limit) != value:
                try:
                    resource.setrlimit(limit, value)
                except (ValueError, OSError) as exc:  # a hard limit only root may raise again
                    problems.append(f"{_RLIMITS[limit]} cannot be put back ({exc})")
        for signum, handler in self.handlers:
            if _getsignal(signum) != handler:
                with contextlib.suppress(OSError, ValueError, TypeError):
                    signal.signal(signum, handler)
        return problems


_touched = [False]


def _watch_limits() -> None:
    """Note when a job sets a resource limit (through ``resource``), so that the 16 limits are read
    back only then. Limits set another way (ctypes, a C extension) are not seen."""
    for name in ("setrlimit", "prlimit"):
        real = getattr(resource, name, None)
        if real is None or getattr(real, "_crew_watched", False):
            continue

        def watched(*args: Any, _real: Any = real) -> Any:
            _touched[0] = True
            return _real(*args)

        watched._crew_watched = True  # type: ignore[attr-defined]
        setattr(resource, name, watched)


def _limits_touched() -> bool:
    touched, _touched[0] = _touched[0], False
    return touched


def _environ_data() -> dict[Any, Any]:
    """The environment as ``os.environ`` keeps it (encoded): copied and compared in a microsecond."""
    data: dict[Any, Any] = getattr(os.environ, "_data", None) or dict(os.environ)
    return data


def _decode(value: Any) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else str(value)


def adopt_orphans() -> None:
    """Make this process the reaper of its descendants (Linux): a daemon a job starts stays ours."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)



def children() -> list[int]:
    """Process ids of this process's children, those of every thread (Linux ``/proc``)."""
    found: list[int] = []
    if not _has_children():
        return found
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            fd = os.open(f"/proc/self/task/{tid}/children", os.O_RDONLY)
        except OSError:
            continue  # the thread ended meanwhile
        try:
            found += [int(pid) for pid in os.read(fd, 65536).split()]
        finally:
            os.close(fd)
    return found


def _has_children() -> bool:
    """Whether any process, running or ended, is a child of this one (of any of its threads).

    One system call, where reading ``/proc`` costs about 9 µs a job: ``WNOWAIT`` leaves every
    child waitable by its owner, and only "no child at all" raises."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    except (AttributeError, OSError):  # no waitid here: let /proc tell
        return True
    return True


def helpers() -> set[int]:
    """Children that ``multiprocessing`` (or loky, joblib's) keeps for later jobs: pools' workers,
    the forkserver, resource trackers. They are the warm state a job may leave on purpose."""
    kept: set[int] = set()
    process = sys.modules.get("multiprocessing.process")
    if process is not None:
        kept |= {child.pid for child in list(getattr(process, "_children", ())) if child.pid}
    for module, holder in [
        ("multiprocessing.forkserver", "_forkserver"),
        ("multiprocessing.resource_tracker", "_resource_tracker"),
        ("joblib.externals.loky.backend.resource_tracker", "_resource_tracker"),
    ]:
        owner = getattr(sys.modules.get(module), holder, None)
        for attribute in ("_forkserver_pid", "_pid"):
            pid = getattr(owner, attribute, None)
            if isinstance(pid, int):
                kept.add(pid)
    return kept


def end_children(grace: float = 1.0, keep: frozenset[int] = frozenset()) -> int:
    """End the processes a job left behind (SIGTERM, then SIGKILL) and reap them; returns how many.

    ``multiprocessing``'s own helpers stay (see :func:`helpers`), and so do those in ``keep``
    (started by the launch's initializer); only processes ended here are waited for, so that
    their owners' ``waitpid`` calls still work.
    """
    pids = children()
    if not pids:
        return 0
    pids = [pid for pid in pids if pid not in helpers() and pid not in keep]
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    left = set(pids)
    while left and time.monotonic() < deadline:
        left = {pid for pid in left if not _reaped(pid)}
        if left:
            time.sleep(0.01)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)
    return len(pids)


def end_descendants() -> None:
    """At the worker's exit: every process below it ends too, helpers kept for later jobs included."""
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _reaped(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True  # not ours (any more)
    return done == pid


class JobGuard:
    """All of the above around each job of a worker that owns its process (``capture``: output too;
    ``cancelled``: the ids of jobs cancelled so far)."""

    def __init__(self, capture: bool, cancelled: set[int]) -> None:
        self.interrupter = Interrupter(cancelled)
        self.capture = OutputCapture() if capture else None
        self._before = Leftovers()
        self._kept: frozenset[int] = frozenset()  # processes the initializer started: they serve every job
        self.spoiled = False  # a job changed what cannot be put back
        adopt_orphans()
        _watch_limits()

    def initialized(self) -> None:
        """The launch's initializer ran: what it set (environment, ``sys.path``, processes) is
        what each job starts from and what is put back after it."""
        self._before = Leftovers()
        self._kept = frozenset(children())

    def begin(self, job_id: int, timeout: float | None) -> None:
        if self.capture is not None:
            self.capture.__enter__()
        self.interrupter.start(job_id, timeout)

    def end(self) -> tuple[str, str, list[str]]:
        """Stop interruptions, restore the process, end leftover children: (stdout, stderr, notes).

        What cannot be put back (a hard limit lowered) spoils the worker: it leaves after this job.
        """
        self.interrupter.stop()
        out = err = ""
        if self.capture is not None:
            self.capture.__exit__(None, None, None)
            out, err = self.capture.read()
        notes = self._before.restore()
        if notes:
            self.spoiled = True
            notes = [f"{note}: this worker leaves after the job, a fresh one serves next" for note in notes]
        ended = end_children(keep=self._kept)
        if ended:
            notes.append(f"{ended} process(es) the job left running were ended")
        return out, err, notes

    def close(self) -> None:
        """The worker leaves: what its jobs left running (pools kept for reuse too) ends with it."""
        end_descendants()
        if self.capture is not None:
            self.capture.close()
