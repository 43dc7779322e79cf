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


FORKED = textwrap.dedent(
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from crew_core import Crew
    from crew_core.testing import jobs
    with Crew(worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=1)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            assert pool.submit(jobs.double, 1).result() == 2  # its worker: a fork holding a copy of the crew
            crew.send(jobs.double, args=(2,))
            assert crew.receive(timeout=120).value == 4
        crew.send(jobs.double, args=(3,))  # after the pool's worker has exited
        assert crew.receive(timeout=120).value == 6
        print(crew.store.root.is_dir(), flush=True)
    """
)


def test_a_process_forked_from_the_controller_leaves_its_crews_alone_at_exit(tmp_path):
    """A forked process (here a ProcessPoolExecutor's worker) ran the crew's exit hook at its own exit
    and closed its copy of the crew: the temporary store's folder went from under the real one."""
    done = subprocess.run([sys.executable, "-c", FORKED], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"], done.stdout + done.stderr
    assert "gone" not in done.stderr, done.stderr


FORKED_EXECUTOR = textwrap.dedent(
    """
    import multiprocessing, time
    from concurrent.futures import ProcessPoolExecutor
    from crew_core import CrewExecutor
    from crew_core.testing import jobs
    with CrewExecutor(max_workers=1, worker_class="subprocess") as executor:
        slow = executor.submit(jobs.sleep_then, 20, "late")  # unfinished while the pool's worker exits
        start = time.monotonic()
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            assert pool.submit(jobs.double, 1).result() == 2
        print(round(time.monotonic() - start), flush=True)
    """
)


def test_a_process_forked_from_the_controller_does_not_wait_for_its_executors_calls(tmp_path):
    """The executor's exit hook in a forked process waited for its copies of the calls in flight,
    which nothing there would ever finish: the fork never exited, and the pool's shutdown hung."""
    done = subprocess.run([sys.executable, "-c", FORKED_EXECUTOR], cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[0]) < 15, done.stdout  # the pool's shutdown did not wait for the slow call
