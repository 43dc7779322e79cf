"""How a worker finds the processes a job left: every thread's children, none taken from its owner."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from crew_core.agent.sandbox import children
from crew_core.testing import wait_for


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_a_child_of_another_thread_is_found_running_and_ended_and_its_status_stays_its_owners() -> None:
    started: list[subprocess.Popen[bytes]] = []
    release = threading.Event()

    def start() -> None:
        started.append(subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read(); sys.exit(3)"],
                                        stdin=subprocess.PIPE))  # fmt: skip
        release.wait()

    thread = threading.Thread(target=start)
    thread.start()
    wait_for(lambda: started or None, what="the thread to start its child")
    child = started[0]
    assert child.pid in children(), "a running child of another thread"
    assert child.stdin is not None
    child.stdin.close()
    wait_for(lambda: _state(child.pid) == "Z" or None, what="the child to end (unreaped)")
    assert child.pid in children(), "an ended child not yet waited for"
    assert child.wait(timeout=30) == 3, "looking reaped the child: its owner lost its exit status"
    assert child.pid not in children()
    release.set()
    thread.join()
