"""Tags: which worker may run which job; a crash sends the next try to bigger workers."""

# --8<-- [start:tags]
import os

from crew_core import Crew, UnknownTagError


def where():
    return os.environ["MACHINE"]


def needs_memory():
    if os.environ["MACHINE"] != "big":
        os._exit(137)  # as if the kernel's OOM killer ended the worker
    return "done on the big one"


with Crew(store="local", worker_classes=["subprocess"]) as crew:
    crew.recruit(workers=2, env={"MACHINE": "small"})  # no tags: runs jobs without tags only
    crew.recruit(workers=1, tags={"gpu"}, env={"MACHINE": "gpu"})
    crew.recruit(workers=1, tags={"big"}, env={"MACHINE": "big"})

    on_gpu = crew.send(where, tags="gpu")  # only a worker carrying "gpu"
    print(crew.receive(timeout=30).value)
    try:
        crew.send(where, tags={"gpu", "big"})  # no single worker carries both
    except UnknownTagError as error:
        print("refused:", error)

    job = crew.send(needs_memory, crash_tags=["big"])  # first try anywhere; after a crash, on "big"
    result = crew.receive(timeout=60)
    print(result.value, "after", result.tries, "tries, on", result.worker)
# --8<-- [end:tags]
