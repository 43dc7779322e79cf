"""A nested crew on one machine: forwarders that each run an inner crew of local workers."""

# --8<-- [start:nested]
import tempfile

from crew_core import Crew

inner_store = tempfile.mkdtemp()  # in real use "s3://bucket/run" and cloud workers
with Crew(worker_classes=["subprocess"]) as outer:
    outer.recruit(workers=2, worker_class="nested",
                  inner=dict(store=inner_store, recruit=[dict(workers=3, worker_class="subprocess")]))
    squares = outer.map(pow, range(6), [2] * 6)
    print("nested:", squares.values(), sorted({r.worker.split("/")[0] for r in squares}))
# --8<-- [end:nested]
