"""Start processes and release them at the same instant, for tests of what happens at once.

Each command must print a line ``ready`` (flushed) when it has done its slow set-up (imports,
building a store), then read one line from its standard input before it does what is tested:
:func:`run_together` waits until every process is ready, then writes that line to all of them
within microseconds, which starts them closer together than any start time or poll could.
"""

from __future__ import annotations

import selectors
import subprocess
import time
from dataclasses import dataclass

#: What a Python child runs between its set-up and its test: ``exec(READY_SET_GO)``.
READY_SET_GO = "import sys; print('ready', flush=True); sys.stdin.readline()"


@dataclass(frozen=True)
class Finished:
    """How one process released by :func:`run_together` ended."""

    returncode: int
    stdout: str  # after the ``ready`` line
    stderr: str


def run_together(commands: list[list[str]], timeout: float = 120.0) -> list[Finished]:
    """Run ``commands`` as processes released together (see the module docstring); return how each ended.

    Fails the test (AssertionError) if one does not get ready or does not end within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    processes = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    try:
        with selectors.DefaultSelector() as waiting:
            for process in processes:
                assert process.stdout is not None
                waiting.register(process.stdout, selectors.EVENT_READ, process)
            while waiting.get_map():
                ready = waiting.select(max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise AssertionError(f"{len(waiting.get_map())} process(es) did not get ready in {timeout} s")
                for key, _ in ready:
                    process = key.data
                    line = process.stdout.readline()
                    if line.strip() != "ready":
                        _, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
                        raise AssertionError(f"a process ended before it was ready: {line!r}\n{err}")
                    waiting.unregister(process.stdout)
        for process in processes:  # go
            assert process.stdin is not None
            process.stdin.write("\n")
            process.stdin.flush()
        finished = []
        for process in processes:
            out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            finished.append(Finished(process.returncode, out, err))
        return finished
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
