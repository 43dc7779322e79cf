"""What every benchmark here shares, so each takes its samples the same way: fresh interpreters,
variants that take turns, medians with their range, the load average around each sample, and the
CPU of whole process trees (so no party's work goes uncounted).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Sequence


def load() -> str:
    """The 1, 5 and 15 minute load averages, as printed next to each sample."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def rotated(names: Sequence[str], round_: int) -> list[str]:
    """``names`` in the order of round ``round_``: who goes first moves on by one each round."""
    shift = round_ % len(names)
    return [*names[shift:], *names[:shift]]


def median_range(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """``median (min-max)``, or the value alone for one sample."""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def fresh_sample(args: list[str], timeout: float, what: str) -> dict[str, float] | None:
    """Run ``python args...`` in a fresh interpreter, whose last line of output is a JSON object of
    figures; None (and a line saying why) when it fails or takes more than ``timeout`` seconds."""
    with subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGINT)  # KeyboardInterrupt: the sample closes its crew and workers
            try:
                child.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
            print(f"  {what}: took more than {timeout:g} s, skipped", flush=True)
            return None
    if child.returncode != 0:
        print(f"  {what}: failed: {stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    return json.loads(stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ------------------------------------------------------------------ CPU of every process
def process_cpu(pid: int) -> float:
    """CPU seconds of every thread of ``pid``: Linux's ``/proc/<pid>/task/*/schedstat`` (nanoseconds)
    where there is one, else psutil's user + system (clock ticks: too coarse for a short window).
    Raises ``ProcessLookupError`` for a process that has ended."""
    try:
        return _schedstat(pid)
    except OSError:
        import psutil

        try:
            return sum(psutil.Process(pid).cpu_times()[:2])
        except psutil.NoSuchProcess as error:
            raise ProcessLookupError(pid) from error


def _schedstat(pid: int) -> float:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            pass
    return total / 1e9


def tree(root: int | None = None) -> dict[int, int]:
    """Every live process at and below ``root`` (this process by default), each with its depth
    (0 for ``root``, 1 for its children, ...)."""
    import psutil

    top = psutil.Process(root)
    depths = {top.pid: 0}
    for process in top.children(recursive=True):
        try:
            parent = process.ppid()
        except psutil.Error:  # ended meanwhile
            continue
        depths[process.pid] = depths.get(parent, 0) + 1  # children() lists parents before their children
    return depths


def tree_cpu(root: int | None = None) -> float:
    """CPU seconds of ``root`` (this process by default) and every process below it, all their threads."""
    total = 0.0
    for pid in tree(root):
        try:
            total += process_cpu(pid)
        except OSError:  # ended meanwhile
            pass
    return total


# ------------------------------------------------------------------ memory of every process
def process_pss_mb(pid: int) -> float:
    """``pid``'s proportional set size in MB (its own pages, plus its share of pages it shares with
    others, so the processes of a tree add up without counting a shared page twice): Linux's
    ``/proc/<pid>/smaps_rollup``, else its resident size by psutil. ``ProcessLookupError`` once it ended."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024  # kB
    except FileNotFoundError as error:
        if os.path.isdir("/proc/self"):
            raise ProcessLookupError(pid) from error
    import psutil

    try:
        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except psutil.NoSuchProcess as error:
        raise ProcessLookupError(pid) from error


class TreePeakMemory:
    """The peak, over a block, of the summed memory (PSS) of this process and every process below it,
    sampled every ``interval`` seconds by a thread: ``with TreePeakMemory() as memory: ...``, then
    ``memory.peak_mb``. A peak shorter than ``interval`` can be missed."""

    def __init__(self, interval: float = 0.02) -> None:
        import threading

        self.interval = interval
        self.peak_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tree-peak-memory", daemon=True)

    def sample(self) -> float:
        total = 0.0
        for pid in tree():
            try:
                total += process_pss_mb(pid)
            except OSError:  # ended meanwhile
                pass
        self.peak_mb = max(self.peak_mb, total)
        return total

    def _watch(self) -> None:
        while not self._done.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreePeakMemory:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()
        self.sample()
