"""crew.map: one Result per input, in input order."""

from crew_core import Crew

# --8<-- [start:map]
with Crew(store="local", worker_classes=["subprocess"]) as crew:
    crew.recruit(workers=2)
    results = crew.map(pow, [2, 3, 4], [2, 2, 2])
    print(results.values(), [result.worker for result in results])

    checked = crew.map(int, ["1", "two", "3"])  # one error does not hide the other results
    print(checked.ok, ", ".join(result.status for result in checked))  # each a Status, a str
# --8<-- [end:map]
