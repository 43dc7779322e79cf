"""Getting started: a crew on the local default, plain and tagged workers, a few jobs."""

# --8<-- [start:recruit]
import time
import warnings

from crew_core import Crew


def slow_hello(seconds):
    time.sleep(seconds)
    warnings.warn("this job was slow on purpose")
    return f"hello after {seconds} s"


crew = Crew(store="local", worker_classes=["subprocess", "executor"])
crew.recruit(workers=2)  # subprocess workers
crew.recruit(workers=2, tags={"long_jobs_go_here"}, idle_timeout=60)  # tagged, 60 s idle timeout
print({name: worker.up() for name, worker in crew.workers.items()})  # none is up yet
# --8<-- [end:recruit]

# --8<-- [start:send]
job = crew.send(slow_hello, args=(0.5,), tags="long_jobs_go_here")
while not crew.receivable():
    time.sleep(0.05)  # other work goes here
result = crew.receive()
print(result.id == job, result.status, result.value, result.warnings)
print(f"ran {result.seconds:.2f} s on {result.worker}, tags {set(result.tags)}")
# --8<-- [end:send]

# --8<-- [start:workers]
for name, worker in crew.workers.items():
    print(name, "up" if worker.up() else "down", sorted(worker.tags))
# --8<-- [end:workers]

# --8<-- [start:more]
crew.send(slow_hello, args=(0.1,))
crew.send(slow_hello, args=(0.2,), tags="long_jobs_go_here")
for _ in range(2):
    result = crew.receive(timeout=30)
    print(result.value, "from", result.worker)
print(crew.receive())  # nothing in flight: None at once
# --8<-- [end:more]

# --8<-- [start:close]
crew.stop(idle_only=True)
deadline = time.monotonic() + 10
while any(worker.up() for worker in crew.workers.values()) and time.monotonic() < deadline:
    time.sleep(0.05)
print("up after shutdown:", [name for name, w in crew.workers.items() if w.up()])
crew.dismiss(tags="long_jobs_go_here")
print("left:", sorted(crew.workers))
crew.close()
# --8<-- [end:close]
