"""prefect-crew: a Prefect 3 task runner whose task runs are jobs on crew workers.

>>> from prefect import flow, task
>>> from prefect_crew import CrewTaskRunner
>>> @flow(task_runner=CrewTaskRunner(recruit=[dict(workers=2, worker_class="subprocess")]))
... def squares(n):
...     return [f.result() for f in square.map(range(n))]
"""

from prefect_crew.futures import PrefectCrewFuture
from prefect_crew.task_runners import CrewTaskRunner

__version__ = "0.1.0"

__all__ = ["CrewTaskRunner", "PrefectCrewFuture"]
