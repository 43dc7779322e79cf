"""Making a crew's workers: :meth:`Crew.recruit`'s new ones, and those a resumed named crew takes over.

Each new worker gets the next number of the crew, is written to a named crew's roster (so that a
next controller can make it again) and is given to the manager; where a class's workers run is
noted in the store, for ``crew stop``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from typing import Any

from crew_core.plugin.registry import Plugins
from crew_core.plugin.worker import Worker
from crew_core.runner.manager import Manager
from crew_core.wire import protocol


class Recruiter:
    """Makes the workers of crew ``crew_id`` for ``manager`` (``durable``: a named crew's, with a roster)."""

    def __init__(self, crew_id: str, manager: Manager, plugins: Plugins, *, durable: bool) -> None:
        self.crew_id = crew_id
        self.manager = manager
        self.plugins = plugins
        self.durable = durable
        self.next_number = 1  # of the next worker: its name is ``<class>-<number>``
        self._places: set[str] = set()  # keys of the places noted in the store (Worker.place)

    def recruit(
        self,
        cls: type[Worker],
        count: int,
        tags: frozenset[str],
        timeout: float | None,
        options: dict[str, Any],
        lifetime: tuple[int | None, float | None],
        initializer: str = "",
    ) -> Iterator[Worker]:
        """Make ``count`` workers of ``cls`` and give each to the manager before the next is made.

        ``timeout`` None is the class's default, ``math.inf`` none; ``options`` go on top of the
        defaults plugins set; ``lifetime`` is ``(tasks_max, seconds_wall)``; ``initializer`` the
        digest of the crew's data object (``Crew.put``) holding what each launch runs first.
        """
        if timeout is None:
            timeout = cls.default_timeout  # remote classes set one: an idle cloud worker still bills
        elif timeout == math.inf:
            timeout = None
        merged = {**self.plugins.config[cls.worker_class], **options}
        for made in range(count):
            name = f"{cls.worker_class or cls.__name__.lower()}-{self.next_number}"
            try:
                backend = cls(name, tags=tags, timeout=timeout, **merged)
            except TypeError as exc:
                raise TypeError(f"worker class {cls.worker_class!r} rejected its options: {exc}") from exc
            self.next_number += 1
            if not made:
                self.note_place(backend)
            if self.durable:  # a next controller must be able to make it again
                from crew_core.runner.resume import roster_entry  # loaded only for a named crew

                entry = roster_entry(cls, tags, timeout, options, lifetime, initializer)
                self.manager.sealed.put(protocol.roster_key(self.crew_id, name), protocol.encode_json(entry))
                self.manager.rosters[name] = entry
            self.manager.add_worker(backend, lifetime, initializer)
            yield backend

    def taken_over(self, workers: list[Worker]) -> list[Worker]:
        """Workers a resumed crew made again from its roster: new ones are numbered past them."""
        for backend in workers:
            self.note_place(backend)  # resumed elsewhere (another host, region): crew stop must look there too
            number = backend.name.rpartition("-")[2]
            if number.isdigit():
                self.next_number = max(self.next_number, int(number) + 1)
        return workers

    def note_place(self, backend: Worker) -> None:
        """Keep where this class's workers run in the store (once per place), before any of them
        launches: ``crew stop`` finds them there on their backend if this controller dies."""
        try:
            place = backend.place()
            if place is None:
                return
            key = protocol.place_key(self.crew_id, type(backend).worker_class, place)
            if key not in self._places:
                record = {"worker_class": type(backend).worker_class, "place": place}
                self.manager.sealed.put(key, json.dumps(record, separators=(",", ":")).encode())
                self._places.add(key)
        except Exception as exc:  # only crew stop needs it; the lease still ends these workers
            logging.getLogger("crew").warning(
                "crew %s: cannot note where %s workers run (crew stop will end them through the store only): %s",
                self.crew_id, type(backend).worker_class, exc,
            )  # fmt: skip
