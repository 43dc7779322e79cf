"""How a backend tells a crew's launches: the label every launch carries and its command line."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

#: The environment variable every worker gets with its crew's label (:func:`crew_label`).
LABEL_ENV = "CREW_LABEL"
#: The environment variable that carries the crew's signing key to a worker.
SECRET_ENV = "CREW_SECRET"


def crew_label(store_description: str, crew_id: str) -> str:
    """``<crew id>@<digest of the store's location and the id>``: what a launch is labelled with
    on its backend, so that a crew is found by its id *in its store* (the same name in two stores,
    or a crew id planted in another store, never reaches this crew's workers)."""
    digest = hashlib.sha256(f"{store_description}\0{crew_id}".encode()).hexdigest()[:12]
    return f"{crew_id}@{digest}"


@dataclass(frozen=True)
class LaunchSeen:
    """Which worker a command line runs, as a backend shows it (see :func:`launch_in`); whose
    crew it is, plugins tell by its label (``CREW_LABEL``), never by ``--crew`` alone."""

    worker: str
    incarnation: int
    forwards: bool  # a forwarder (``--inner``): the "nested" class's, not a plain worker


def launch_in(argv: Sequence[str]) -> LaunchSeen | None:
    """Read ``... crew_core worker --crew C --name W --incarnation N ...`` (a process's command line,
    or a container's arguments); None for anything else. Plugins find their workers by it."""
    argv = list(argv)
    for at in range(len(argv) - 1):
        if argv[at : at + 2] == ["crew_core", "worker"]:
            rest = argv[at + 2 :]
            flags = {flag: value for flag, value in zip(rest, [*rest[1:], ""], strict=True) if flag.startswith("--")}
            if not flags.get("--crew"):
                return None
            number = flags.get("--incarnation", "")
            return LaunchSeen(flags.get("--name", ""), int(number) if number.isdigit() else 0, "--inner" in flags)
    return None
