"""``crew.summary()``: what each worker has done, as plain data and as an aligned table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The columns of a summary, in order; every row (and ``Summary.totals``) has these keys.
COLUMNS = ("worker", "class", "tags", "state", "launches", "refused", "jobs", "errors", "timeouts", "crashes",
           "busy_s")


@dataclass
class WorkerStats:
    """Counters the controller keeps for one worker, across its launches."""

    launches: int = 0  # launches the backend accepted
    refused: int = 0  # launches the backend refused, or that died before their first beat
    jobs: int = 0  # results the worker sent back (successes and errors)
    errors: int = 0  # of those, the ones whose function raised
    timeouts: int = 0  # of those, the ones stopped at their timeout (or that cost the worker)
    crashes: int = 0  # times it died running a job
    busy: float = 0.0  # seconds its jobs ran


class Summary(list[dict[str, Any]]):
    """One dict per worker (keys: :data:`COLUMNS`); ``totals`` sums them; ``str()`` is a table.

    A forwarder's inner workers follow it as rows named ``forwarder/inner`` with ``"inner": True``;
    ``totals`` counts the crew's own workers only (the forwarder's row already counts their jobs).
    """

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__(rows)
        own = [row for row in rows if not row.get("inner")]
        self.totals: dict[str, Any] = {
            "worker": "total",
            "class": "",
            "tags": "",
            "state": f"{sum(row['state'] == 'up' for row in own)} up",
            **{key: sum(row[key] for row in own) for key in COLUMNS[4:]},
        }

    def __str__(self) -> str:
        def cell(value: Any) -> str:
            return f"{value:.1f}" if isinstance(value, float) else str(value)

        table = [list(COLUMNS)] + [[cell(row[key]) for key in COLUMNS] for row in [*self, self.totals]]
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        numeric = {i for i, key in enumerate(COLUMNS) if i >= 4}

        def line(cells: list[str]) -> str:
            pairs = enumerate(zip(cells, widths, strict=True))
            return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in pairs)

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(table[0]), rule, *(line(row) for row in table[1:-1]), rule, line(table[-1])]).rstrip()
