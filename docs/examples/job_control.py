"""Job control: timeouts, output, cancel, and launches that leave after N jobs."""

# --8<-- [start:control]
import subprocess
import sys
import time

from crew_core import Crew


def noisy(seconds):
    print("starting")
    subprocess.run(["echo", "a program's output is captured too"])
    print("to stderr", file=sys.stderr)
    time.sleep(seconds)
    return seconds


with Crew(store="local", worker_classes=["subprocess"], job_timeout=60) as crew:
    crew.recruit(workers=2, tasks_max=100)  # each launch leaves after 100 jobs; another comes when needed
    done = crew.send(noisy, args=(0.1,))
    late = crew.send(noisy, args=(30,), job_timeout=0.5)  # stopped after 0.5 s: status "timeout"
    results = {result.id: result for result in crew.results(timeout=60)}  # both, in the order they end
    print(results[done].status, results[done].stdout.splitlines(), results[done].stderr.strip())
    print(results[late].status)
    waiting = crew.send(noisy, args=(30,))
    print(crew.cancel(waiting), crew.receive(timeout=30).status)
# --8<-- [end:control]
