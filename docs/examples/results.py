"""What a job gives back: a value, an error with its traceback, a crash; result.get()."""

# --8<-- [start:results]
import os

from crew_core import Crew, WorkerCrashedError


def divide(a, b):
    print(f"dividing {a} by {b}")
    return a / b


def die():
    os._exit(3)  # the worker's process ends: the job is tried again, up to max_tries


with Crew(store="local", worker_classes=["subprocess"], max_tries=2) as crew:
    crew.recruit(workers=2)
    ok = crew.send(divide, args=(1, 4))
    bad = crew.send(divide, args=(1, 0))
    dead = crew.send(die)
    results = {result.id: result for result in crew.results(timeout=60)}

    print(results[ok].status, results[ok].value, results[ok].stdout.strip(), results[ok].tries)
    print(results[bad].status, repr(results[bad].error))
    print(results[bad].traceback.strip().splitlines()[-1])
    print(results[dead].status, results[dead].tries, results[dead].error)
    try:
        results[dead].get()  # the value, or the error raised, as Future.result() does
    except WorkerCrashedError as error:
        print("get() raised", type(error).__name__)
# --8<-- [end:results]
