"""dask runs its graphs on crew workers through CrewExecutor (needs dask)."""

# --8<-- [start:dask]
import dask

from crew_core import CrewExecutor


@dask.delayed
def square(n):
    return n * n


total = dask.delayed(sum)([square(n) for n in range(10)])
with CrewExecutor(max_workers=2, worker_class="subprocess") as executor:
    print(dask.compute(total, scheduler=executor))  # each task runs on a crew worker
# --8<-- [end:dask]
