"""CrewExecutor: a concurrent.futures Executor whose calls run on crew workers; asyncio too."""

# --8<-- [start:executor]
import asyncio

from crew_core import CrewExecutor

with CrewExecutor(max_workers=2, worker_class="subprocess") as executor:
    print(executor.submit(pow, 2, 8).result())
    print(list(executor.map(pow, range(5), range(5), chunksize=2)))

    async def powers():  # asyncio takes it as is
        loop = asyncio.get_running_loop()
        return await asyncio.gather(*(loop.run_in_executor(executor, pow, 3, n) for n in range(4)))

    print(asyncio.run(powers()))
# --8<-- [end:executor]
