"""What a crew :class:`~crew_core.Result` means for Snakemake: success, or an error with a message and a log."""

from __future__ import annotations

import signal
from dataclasses import dataclass

from crew_core import Result

#: Lines of the job's standard error quoted in Snakemake's error message (all of it is in the log file).
STDERR_LINES = 20


@dataclass(frozen=True)
class Outcome:
    """A finished job as Snakemake hears of it."""

    ok: bool
    message: str  # one paragraph for Snakemake's error report ("" on success)
    log: str  # the whole story, for the job's log file


def outcome(result: Result, snakemake_job: str) -> Outcome:
    """Read ``result`` (the value of ``run_command``: an exit status) for the job ``snakemake_job``."""
    where = f"crew job {result.id} on worker {result.worker or '(none)'}"
    if result.status == "success" and result.value == 0:
        return Outcome(True, "", _log(result, snakemake_job, "exit status 0"))
    if result.status == "success":
        cause = f"the command exited with status {result.value}"
        if isinstance(result.value, int) and result.value < 0:
            cause = f"the command was killed by {_signal_name(-result.value)}"
    elif result.status == "crash":
        cause = f"its worker died under it {result.tries} time(s): {result.error}"
    elif result.status == "timeout":
        cause = f"it ran past its runtime and was stopped: {result.error}"
    elif result.status == "cancelled":
        cause = "it was cancelled"
    else:
        cause = f"{type(result.error).__name__}: {result.error}"
    message = f"{where} failed: {cause}."
    tail = _tail(result.stderr)
    if tail:
        message += f"\nLast lines of its standard error:\n{tail}"
    message += "\n"  # Snakemake appends its own sentence
    return Outcome(False, message, _log(result, snakemake_job, cause))


def _log(result: Result, snakemake_job: str, cause: str) -> str:
    lines = [
        f"snakemake job: {snakemake_job}",
        f"crew job: {result.id}, status {result.status} ({cause})",
        f"worker: {result.worker}, tries {result.tries}, {result.seconds:.2f} s, tags {sorted(result.tags)}",
    ]
    lines += [f"warning: {text}" for text in result.warnings]
    sections = [("\n".join(lines), ""), ("stdout", result.stdout), ("stderr", result.stderr)]
    if result.traceback:
        sections.append(("traceback", result.traceback))
    text = sections[0][0] + "\n"
    for title, body in sections[1:]:
        text += f"---- {title} ----\n{body}"
        if body and not body.endswith("\n"):
            text += "\n"
    return text


def _tail(text: str) -> str:
    lines = text.rstrip().splitlines()[-STDERR_LINES:]
    return "\n".join(f"    {line}" for line in lines)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
