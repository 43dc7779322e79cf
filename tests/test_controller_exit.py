"""How a controller's process ends: a crew forgotten open closes at once and says so; workers leave with it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from crew_core.testing import process_gone, wait_for

SCRIPT = textwrap.dedent(
    """
    from crew_core import Crew
    from crew_core.testing import jobs
    crew = Crew(worker_classes=["subprocess"], stop_grace=3600)  # a close that waited for it would hang
    workers = crew.recruit(workers=2)
    crew.launch()
    crew.send(jobs.double, args=(2,))
    assert crew.receive(timeout=120).value == 4
    print(*[w.backend.pid for w in workers], flush=True)
    """
)


def test_a_crew_forgotten_open_closes_at_exit_with_a_resource_warning(tmp_path):
    done = subprocess.run([sys.executable, "-W", "default", "-c", SCRIPT], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ResourceWarning: crew" in done.stderr and "was never closed" in done.stderr
    for pid in map(int, done.stdout.split()):  # stopped, not left to the stop grace
        wait_for(lambda pid=pid: process_gone(pid), timeout=60, what=f"worker {pid} to end")


ORPHAN = textwrap.dedent(
    """
    import time
    from crew_core import Crew
    from crew_core.testing import jobs
    crew = Crew(store="./store", worker_classes=["subprocess"])  # in the test's folder: killed, it leaves it
    [worker] = crew.recruit(workers=1)
    crew.launch()
    crew.send(jobs.double, args=(2,))
    assert crew.receive(timeout=120).value == 4
    print(worker.backend.pid, flush=True)
    time.sleep(600)
    """
)


def test_a_worker_whose_log_pipe_is_gone_still_leaves_with_its_controller(tmp_path):
    """Found by the test above: the worker's log is its controller's stderr, here a pipe whose
    reader died with the controller; saying why it leaves raised BrokenPipeError in the thread
    that watches the controller, which then never left."""
    controller = subprocess.Popen([sys.executable, "-c", ORPHAN], cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        pid = int(controller.stdout.readline())
    finally:
        controller.stdout.close()
        controller.stderr.close()  # nobody reads the worker's log any more
        controller.kill()
        controller.wait()
    wait_for(lambda: process_gone(pid), timeout=60, what=f"worker {pid} to leave with its controller")
