"""Worker initializers: set up once in each worker launch what every job there uses."""

# --8<-- [start:initializer]
from mymodel import load, predict  # a module of yours, importable on the workers too

from crew_core import Crew

with Crew(store="local", worker_classes=["subprocess"]) as crew:
    crew.recruit(workers=2, initializer=load, initargs=(10,))
    print(crew.map(predict, range(4)).values())  # each worker loaded the model once
# --8<-- [end:initializer]

# --8<-- [start:failing]
from crew_core import WorkerInitError


def needs_a_gpu():
    raise RuntimeError("no GPU on this machine")


with Crew(store="local", worker_classes=["subprocess"]) as crew:
    crew.recruit(workers=1, tags={"gpu"}, initializer=needs_a_gpu)
    crew.recruit(workers=1)  # no initializer; carries no tag
    crew.send(predict, args=(1,), tags="gpu")
    result = crew.receive(timeout=60)
    print(result.status, type(result.error).__name__, isinstance(result.error, WorkerInitError))
    print(result.error.traceback.strip().splitlines()[-1])
    print([row["state"] for row in crew.summary()])
# --8<-- [end:failing]
