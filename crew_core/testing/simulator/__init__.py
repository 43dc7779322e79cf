"""A deterministic simulator of a crew: the real controller against simulated workers and faults.

``World(seed, Faults(...)).run()`` drives the controller (``crew_core.runner.manager.Manager``,
stepped in this thread with a simulated clock) against workers that read their tasks with the
real task feed, an in-memory store and backends that refuse, lag and die, and checks invariants
after every step: every job ends exactly once for the user, with its own value; no result comes
twice; tries are counted right; the ledger agrees with itself; a worker never runs past
``tasks_max``; and once the faults stop, every job comes back. A failure raises
:class:`InvariantError` naming the seed that replays it.
"""

from crew_core.testing.simulator.world import Faults, InvariantError, Tally, World

__all__ = ["Faults", "InvariantError", "Tally", "World"]
