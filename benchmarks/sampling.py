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
