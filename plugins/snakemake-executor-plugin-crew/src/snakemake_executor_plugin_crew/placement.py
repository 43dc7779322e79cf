"""Where a Snakemake job may run: its ``threads`` and ``resources`` as crew tags and a timeout.

crew runs a job on a worker that carries every tag the job names. A threads requirement is a
number, not a name, so each worker carries one tag per thread count it can serve: a pool with
``threads=4`` carries ``threads>=2``, ``threads>=3`` and ``threads>=4``, and a job with
``threads: 3`` names ``threads>=3``, which only workers with at least 3 CPUs carry.

- ``threads`` -> the tag ``threads>=N`` (nothing for 1 thread).
- ``resources: crew_tags="gpu+big"`` (or ``"gpu,big"``) -> the tags ``gpu`` and ``big``.
- ``resources: runtime=M`` (minutes, as Snakemake's cluster executors read it) -> a crew job
  timeout of ``M`` minutes: the job is stopped past it and fails with status ``timeout``.

Other resources (``mem_mb``, ``disk_mb``, ``gpu`` ...) do not select workers: a pool's
workers are sized when they are recruited (Slurm's ``memory=``, Batch's ``memory=``), and
``crew_tags`` routes jobs to the pool that fits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from snakemake_executor_plugin_crew.settings import split_tags

#: The resource whose value names the crew tags a job needs.
TAGS_RESOURCE = "crew_tags"


def threads_tag(threads: int) -> str:
    """The tag a job needing ``threads`` CPUs names."""
    return f"threads>={threads}"


def pool_tags(tags: frozenset[str], threads: int) -> frozenset[str]:
    """A pool's own tags plus one ``threads>=N`` tag per thread count its workers can serve."""
    return tags | {threads_tag(n) for n in range(2, threads + 1)}


@dataclass(frozen=True)
class Placement:
    """What ``crew.send`` gets for one Snakemake job."""

    tags: frozenset[str]
    timeout: float | None  # seconds; None: the crew's job_timeout


def placement(threads: int, resources: Mapping[str, Any]) -> Placement:
    """Tags and timeout for a job with ``threads`` and ``resources``."""
    tags = split_tags(resources.get(TAGS_RESOURCE))
    if threads > 1:
        tags |= {threads_tag(threads)}
    runtime = resources.get("runtime")
    timeout = None
    if isinstance(runtime, int | float) and not isinstance(runtime, bool) and runtime > 0:
        timeout = float(runtime) * 60
    return Placement(tags, timeout)
