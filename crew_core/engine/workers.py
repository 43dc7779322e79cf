"""A worker's life: the states it passes through, the moves between them, and its record.

Each worker's ``Life`` changes only through :meth:`WorkerRecord.move`, checked against ``LIFE`` (the
table ``docs/architecture.md`` shows; ``tests/test_docs.py`` fails if the two differ). The
supervisor (``crew_core.engine.supervisor``) decides the moves; the dispatcher and the runner read
records.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from crew_core.backoff import Backoff
from crew_core.engine.summary import WorkerStats
from crew_core.plugin.worker import Worker
from crew_core.wire.protocol import ExitNote


class Phase(enum.Enum):
    """The coarse view of :class:`Life` that most readers need."""

    DOWN = "down"  # not running: may be launched
    STARTING = "starting"  # the backend is starting it
    UP = "up"  # started (it may still be queued in the backend)


class Life(enum.Enum):
    """Where one worker is in its life; it moves only by :meth:`WorkerRecord.move` (see ``LIFE``)."""

    DOWN = "down"  # not running: may be launched (unless retired)
    STARTING = "starting"  # its backend is starting it
    UP = "up"  # started (maybe still queued on its backend): takes work
    STOPPING = "stopping"  # asked to stop: finishes what it runs, takes nothing new
    LEAVING = "leaving"  # its exit note was seen: it is on its way out
    KILLING = "killing"  # a kill is under way
    ENDED = "ended"  # its backend says it ended (or it was killed): settled after one more inbox poll

    @property
    def phase(self) -> Phase:
        return Phase.DOWN if self is Life.DOWN else Phase.STARTING if self is Life.STARTING else Phase.UP


#: Every move a worker's life may make; any other raises (as dask's worker state machine does).
LIFE: dict[Life, frozenset[Life]] = {
    Life.DOWN: frozenset({Life.STARTING, Life.UP}),  # launched; or adopted from an earlier controller
    Life.STARTING: frozenset({Life.UP, Life.DOWN}),  # started, or refused
    Life.UP: frozenset({Life.STOPPING, Life.LEAVING, Life.KILLING, Life.ENDED, Life.DOWN}),
    Life.STOPPING: frozenset({Life.LEAVING, Life.KILLING, Life.ENDED, Life.DOWN}),
    Life.LEAVING: frozenset({Life.KILLING, Life.ENDED, Life.DOWN}),
    Life.KILLING: frozenset({Life.ENDED, Life.DOWN}),
    Life.ENDED: frozenset({Life.ENDED, Life.DOWN}),  # found ended again: settle after a later poll
}


class IllegalTransition(RuntimeError):
    """A worker's life was asked to make a move ``LIFE`` does not allow: a bug in the engine."""


@dataclass(eq=False)
class WorkerRecord:
    """What the controller knows about one worker and its current incarnation."""

    backend: Worker
    life: Life = Life.DOWN
    incarnation: int = 0
    prefix: str = ""
    channel: str = ""
    stop_requested: float | None = None  # when a Stop was written or a kill decided on purpose: its jobs go back
    exit: ExitNote | None = None  # the current incarnation's exit note, once seen
    retired: bool = False  # being dismissed: never launched or given work again
    launched: int = 0  # the highest launch number an earlier controller of a named crew used for it
    down_poll: int = 0  # the manager's poll count when it was found ended
    beat: int = 0
    beat_seen: bool = False
    first_beat: float = 0.0  # when the current incarnation's first beat was seen
    lifetime: tuple[int | None, float | None] = (None, None)  # tasks_max, seconds_wall
    initializer: str = ""  # digest of its initializer's data object, run by each launch ("": none)
    init_error: str | None = None  # its initializer's traceback, once a launch's failed: it is retired
    given: int = 0  # jobs assigned to the current incarnation (batches stay within tasks_max)
    quiet_since: float = 0.0  # since the last beat, or since it was given work
    idle_since: float = 0.0  # since it last held no task
    launch_failures: int = 0  # failed launches in a row
    launch_error: BaseException | None = None  # why the last one failed
    retry_at: float = 0.0  # no automatic launch before this time
    retry: Backoff = field(default_factory=lambda: Backoff(0.5, 30.0))
    adopted: bool = False  # launched by an earlier controller of a named crew: known by its beats only
    inner: tuple[dict[str, Any], ...] = ()  # a forwarder's inner crew summary, as it last sent it
    stats: WorkerStats = field(default_factory=WorkerStats)  # what crew.summary() shows
    # Kept with ``life`` by move(): read several times a step, where a property's call shows.
    phase: Phase = field(init=False, repr=False)
    down_pending: bool = field(init=False, repr=False)  # its backend says it ended: settled after a poll

    def __post_init__(self) -> None:
        self.phase, self.down_pending = self.life.phase, self.life is Life.ENDED

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def tags(self) -> frozenset[str]:
        return self.backend.tags

    def move(self, to: Life) -> None:
        """The one way a worker's life changes; a move ``LIFE`` does not allow raises."""
        if to not in LIFE[self.life]:
            raise IllegalTransition(f"worker {self.name!r} (launch {self.incarnation}) cannot go from {self.life.value}"
                                    f" to {to.value}")  # fmt: skip
        self.life = to
        self.phase, self.down_pending = to.phase, to is Life.ENDED

    @property
    def up(self) -> bool:
        return self.life is not Life.DOWN

    @property
    def killing(self) -> bool:
        return self.life is Life.KILLING

    @property
    def accepting(self) -> bool:
        """Up and willing to take new tasks."""
        return self.life is Life.UP and self.stop_requested is None and not self.retired
