"""Jobs waiting for a worker, grouped by their tags so matching a worker stays cheap."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crew_core.engine.ledger import Job


class Backlog:
    """Waiting jobs, oldest first; a worker takes only jobs whose tags it all carries."""

    def __init__(self) -> None:
        self._groups: dict[frozenset[str], deque[Job]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Job]:
        for queue in self._groups.values():
            yield from queue

    def push(self, job: Job) -> None:
        """Queue a new job behind the others."""
        queue = self._groups.get(job.tags)
        if queue is None:
            queue = self._groups[job.tags] = deque()
        queue.append(job)
        self._count += 1

    def push_front(self, jobs: Iterable[Job]) -> None:
        """Put jobs back at the front (they were taken before everything still waiting)."""
        for job in sorted(jobs, key=lambda j: j.id, reverse=True):
            queue = self._groups.get(job.tags)
            if queue is None:
                queue = self._groups[job.tags] = deque()
            queue.appendleft(job)
            self._count += 1

    def _head_for(self, tags: frozenset[str]) -> deque[Job] | None:
        best: deque[Job] | None = None
        for group, queue in self._groups.items():
            if queue and group <= tags and (best is None or queue[0].id < best[0].id):
                best = queue
        return best

    def peek(self, tags: frozenset[str]) -> Job | None:
        """The oldest job a worker with ``tags`` may run, left in place."""
        queue = self._head_for(tags)
        return queue[0] if queue else None

    def pop(self, tags: frozenset[str]) -> Job | None:
        """Take the oldest job a worker with ``tags`` may run."""
        queue = self._head_for(tags)
        if not queue:
            return None
        self._count -= 1
        return queue.popleft()

    def remove(self, job: Job) -> bool:
        """Take a given job out; False if it is not waiting."""
        queue = self._groups.get(job.tags)
        if not queue:
            return False
        if queue[0] is job:  # jobs are usually cancelled in the order they were sent: O(1)
            queue.popleft()
        elif queue[-1] is job:
            queue.pop()
        elif job in queue:
            queue.remove(job)
        else:
            return False
        self._count -= 1
        return True

    def tag_sets(self) -> list[frozenset[str]]:
        """The tags of the jobs waiting, one entry per distinct set."""
        return [tags for tags, queue in self._groups.items() if queue]

    def take_all(self, tags: frozenset[str]) -> list[Job]:
        """Remove and return every waiting job with exactly these tags, oldest first."""
        queue = self._groups.pop(tags, None)
        if not queue:
            return []
        self._count -= len(queue)
        return list(queue)

    def drain(self, keep: Callable[[Job], bool]) -> list[Job]:
        """Remove and return the jobs for which ``keep(job)`` is false."""
        dropped: list[Job] = []
        for group, queue in self._groups.items():
            kept = deque(job for job in queue if keep(job))
            dropped.extend(job for job in queue if not keep(job))
            self._groups[group] = kept
        self._count -= len(dropped)
        return dropped
