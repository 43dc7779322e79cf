"""An object many jobs use crosses the store once: crew.put."""

from crew_core import Crew

# --8<-- [start:put]
table = {i: i * i for i in range(100_000)}
with Crew(store="local", worker_classes=["subprocess"]) as crew:
    crew.recruit(workers=2)
    ref = crew.put(table)  # uploaded once; equal objects are not uploaded again
    ids = [crew.send(dict.get, args=(ref, n)) for n in range(100)]  # each job gets the table
    print(sorted(result.value for result in crew.results())[:3])
# --8<-- [end:put]
