"""Troubleshooting: the errors crew raises, made on purpose, and what each message says."""

import tempfile
import threading
import time

from crew_core import (
    Crew,
    CrewError,
    NoWorkersError,
    PluginError,
    SerializationError,
    StoreError,
    UnknownTagError,
    WorkerLaunchError,
)

# --8<-- [start:setup]
try:
    Crew(worker_classes=["docker"])  # no installed plugin registers "docker"
except PluginError as error:
    print("PluginError:", error)

try:
    Crew(store=tempfile.mkstemp()[1])  # a file, not a folder
except StoreError as error:
    print("StoreError:", error)
# --8<-- [end:setup]

# --8<-- [start:sending]
with Crew(store="local", worker_classes=["subprocess"]) as crew:
    try:
        crew.send(print, args=("hello",))
    except NoWorkersError as error:
        print("NoWorkersError:", error)
    crew.recruit(workers=1, tags={"gpu"})
    try:
        crew.send(print, args=("hello",), tags="tpu")
    except UnknownTagError as error:
        print("UnknownTagError:", error)
    try:
        crew.send(print, args=(threading.Lock(),))
    except SerializationError as error:
        print("SerializationError:", error)
# --8<-- [end:sending]

# --8<-- [start:results]
class Unpicklable(Exception):
    def __init__(self):
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def raise_unpicklable():
    raise Unpicklable()


def returns_lock():
    return threading.Lock()


with Crew(store="local", worker_classes=["subprocess"]) as crew:
    crew.recruit(workers=1)
    for function in (raise_unpicklable, returns_lock):
        crew.send(function)
        result = crew.receive(timeout=30)
        print(result.status, f"{type(result.error).__name__}:", result.error)
# --8<-- [end:results]

# --8<-- [start:launch]
with Crew(store="local", worker_classes=["subprocess"], max_tries=2) as crew:
    crew.recruit(workers=1, python="/no/such/python")
    job = crew.send(print, args=("hello",))
    try:
        crew.receive(timeout=30)  # raises the first refusal
    except WorkerLaunchError as error:
        print("WorkerLaunchError:", error)
    result = crew.receive(timeout=30)  # the job, once its launches failed max_tries times
    print(result.status, type(result.error).__name__)
# --8<-- [end:launch]

# --8<-- [start:lost]
with Crew(store="local", worker_classes=["subprocess"]) as crew:
    crew.recruit(workers=1)
    crew.recruit(workers=1, tags={"gpu"})
    job = crew.send(time.sleep, args=(30,), tags="gpu")
    crew.dismiss(tags="gpu")  # the only worker that could run it
    result = crew.receive(timeout=30)
    print(result.status, f"{type(result.error).__name__}:", result.error)
# --8<-- [end:lost]

# --8<-- [start:closed]
crew = Crew(store="local", worker_classes=["subprocess"])
crew.close()
try:
    crew.recruit(workers=1)
except CrewError as error:
    print("CrewError:", error)
# --8<-- [end:closed]
