"""Job functions the contract suites send; importable wherever crew-core is installed."""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections import Counter


def double(x: int) -> int:
    return 2 * x


def warn_and_return(message: str, value: object) -> object:
    warnings.warn(message)
    return value


def fail(message: str) -> None:
    raise ValueError(message)


def call_exit(code: int) -> None:
    sys.exit(code)


def unpicklable_value() -> object:
    return lambda_holder()


def lambda_holder() -> object:
    import threading

    return threading.Lock()  # locks cannot be pickled


def sleep_then(seconds: float, value: object = None) -> object:
    time.sleep(seconds)
    return value


def die(code: int = 13) -> None:
    """Kill the worker process outright, as a segfault or the OOM killer would."""
    os._exit(code)


def die_once(marker: str) -> str:
    """Kill the worker the first time (``marker`` does not exist yet), succeed when run again."""
    if not os.path.exists(marker):
        with open(marker, "w") as handle:
            handle.write(str(os.getpid()))
        os._exit(17)
    return "survived"


def pid() -> int:
    return os.getpid()


def getenv(name: str) -> str | None:
    """The worker's own environment variable (``os.environ.get`` would pickle the caller's)."""
    return os.environ.get(name)


def touch_then_sleep(path: str, seconds: float, value: object = None) -> object:
    """Create ``path`` holding the worker's pid (so a test knows the job has started), then sleep.

    Written whole (a temporary file renamed): a test that sees the file also sees the pid."""
    with open(f"{path}.{os.getpid()}.tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(handle.name, path)
    time.sleep(seconds)
    return value


def mark_then_sleep(folder: str, name: str, seconds: float) -> str:
    """Leave a file ``<name>.<unique>.<pid>`` in ``folder`` (one per run), then sleep."""
    _mark(folder, name)
    time.sleep(seconds)
    return name


def sleep_noting_stop(started: str, stopped: str, seconds: float) -> None:
    """Create ``started``, then sleep; if the worker stops the job first, write why to ``stopped``
    (``"cancelled"``, ``"timeout"``): proof that a stop reached it."""
    with open(started, "w"):
        pass
    try:
        time.sleep(seconds)
    except BaseException as exc:
        with open(stopped, "w") as handle:
            handle.write(str(getattr(exc, "reason", type(exc).__name__)))
        raise


def mark_then_die(folder: str, name: str, code: int = 13) -> None:
    """Leave a file as :func:`mark_then_sleep` does, then kill the worker: it crashes every time."""
    _mark(folder, name)
    os._exit(code)


def _mark(folder: str, name: str) -> None:
    import uuid

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.{uuid.uuid4().hex}.{os.getpid()}"), "w"):
        pass


def mark_once_open(gate: str, folder: str, name: str) -> str:
    """Wait (up to 10 minutes) until ``gate`` exists, then mark as :func:`mark_then_sleep` does: a job
    that cannot have run before the test opens the gate."""
    deadline = time.monotonic() + 600
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.01)
    return mark_then_sleep(folder, name, 0)


def started_then_mark_once_open(started: str, gate: str, folder: str, name: str) -> str:
    """Create ``started`` (whole), then :func:`mark_once_open`: a test knows the job began and holds it."""
    touch_then_sleep(started, 0)
    return mark_once_open(gate, folder, name)


def runs_of(folder: str | os.PathLike[str]) -> dict[str, int]:
    """How many times each name ran, from the files :func:`mark_then_sleep` and :func:`mark_then_die`
    left (none yet: {})."""
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return dict(Counter(name.split(".")[0] for name in names))


def length_and_byte(data: bytes | list[bytes], n: int) -> tuple[int, int]:
    """The length of ``data`` (or of the bytes in a one-item list) and ``n``: for ``crew.put``."""
    if isinstance(data, list):
        data = data[0]
    return len(data), n


def length_once_open(gate: str, data: bytes, n: int = 0) -> tuple[int, int]:
    """Wait (up to 10 minutes) until ``gate`` exists, then :func:`length_and_byte`: the job's large
    arguments are held by the crew until the test opens the gate."""
    deadline = time.monotonic() + 600
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.01)
    return length_and_byte(data, n)


def secret_exposure() -> tuple[str | None, str]:
    """What a job can see of its worker's secret: the environment variable, and the command line."""
    try:
        with open("/proc/self/cmdline", "rb") as handle:
            command = handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        command = " ".join(sys.argv)
    return os.environ.get("CREW_SECRET"), command


def print_and_run(out: str, err: str, command: list[str]) -> None:
    """Write to standard output and error, and run a program that writes to standard output."""
    import subprocess
    import sys

    print(out)
    print(err, file=sys.stderr)
    sys.stdout.flush()
    subprocess.run(command, check=True)


#: What :func:`initialize` set up in this worker process: what later jobs read.
_initialized: dict[str, object] = {}


def initialize(folder: str, value: object) -> None:
    """An initializer (``recruit(initializer=)``): leave a file ``init.<unique>.<pid>`` in ``folder``
    (one per run, as :func:`mark_then_sleep` does) and keep ``value`` for :func:`initialized`."""
    _mark(folder, "init")
    _initialized["value"] = value


def initialized() -> tuple[object, int]:
    """What :func:`initialize` kept in this process (None if it did not run here), and the pid."""
    return _initialized.get("value"), os.getpid()


def fail_to_initialize(message: str) -> None:
    """An initializer that fails."""
    raise RuntimeError(message)


def imported(module: str) -> bool:
    """Whether ``module`` is imported in the process that runs the job."""
    return module in sys.modules
