"""crew-local: a store folder of yours, subprocess workers with options, executor workers."""

# --8<-- [start:local]
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

from crew_core import Crew


def describe(_):
    return os.environ.get("STAGE"), os.getcwd(), os.getpid()


folder = tempfile.mkdtemp()  # a folder of yours: on a shared disk, workers on other machines see it
work = tempfile.mkdtemp()
with ThreadPoolExecutor(max_workers=2) as threads, Crew(store=folder) as crew:
    crew.recruit(workers=2, worker_class="subprocess", tags={"sub"}, env={"STAGE": "test"}, cwd=work)
    crew.recruit(workers=1, worker_class="executor", tags={"pool"})  # in a process pool of its own
    crew.recruit(workers=1, worker_class="executor", tags={"threads"}, executor=threads)  # in your threads

    stage, cwd, pid = crew.map(describe, [0], tags="sub").values()[0]
    print(stage, cwd == work, pid != os.getpid())
    stage, cwd, pid = crew.map(describe, [0], tags="threads").values()[0]
    print(pid == os.getpid())  # a thread of this very process
# --8<-- [end:local]
