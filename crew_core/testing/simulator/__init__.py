"""A deterministic simulator of a crew: the real controller against simulated workers and faults.

``World(seed, Faults(...)).run()`` drives the controller (``crew_core.runner.manager.Manager``,
stepped in this thread with a simulated clock) against workers that read their tasks with the
real task feed, an in-memory store and backends that refuse, lag and die, and checks invariants
after every step: every job ends exactly once for the user, with its own value; no result comes
twice; tries are counted right (one per death of a worker given the job, never more); no job runs
more often than faults explain; the controller kills no worker that beats and stops its jobs in
time; the ledger agrees with itself; a worker never runs past ``tasks_max``; and once the faults
stop, every job comes back. A failure raises :class:`InvariantError` naming the seed that replays it.

``World(seed, Faults.everything_named(), named=True)`` runs a named crew whose controllers die
(between two steps, in a write, part way through a batch delete) and are resumed from the store
by the next, which adopts the live workers: a result may then come again only if it was handed
out after the last receipt was written. Bugs of the controller the simulator found that are not
fixed yet are listed in ``invariants.KNOWN_BUGS``: a run that meets one counts it and goes on.
"""

from crew_core.testing.simulator.invariants import KNOWN_BUGS, Tally
from crew_core.testing.simulator.world import Faults, InvariantError, World

__all__ = ["KNOWN_BUGS", "Faults", "InvariantError", "Tally", "World"]
