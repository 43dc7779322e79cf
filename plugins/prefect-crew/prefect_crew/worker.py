"""What runs on a crew worker: one Prefect task run, through Prefect's own task engine.

The controller sends :func:`run_task` as a crew job with the task, its run id, its parameters
(upstream futures already replaced by their final states) and the flow's serialized context.
Prefect's engine does the rest on the worker, as on a dask worker: it reports the run's states
to the Prefect API, retries it, persists its result, and returns the final state, which comes
back as the job's value. This module must import on every worker, so it imports nothing from
the controller's side of the package.
"""

from __future__ import annotations

import asyncio
import uuid
from contextvars import ContextVar
from typing import Any

#: True while a crew job runs a task run: a task runner entered then (Prefect enters the flow's
#: task runner when it restores a flow's context) opens no crew until a task submits another.
on_crew_worker: ContextVar[bool] = ContextVar("prefect_crew_on_crew_worker", default=False)

#: The flow's settings as last received, and the settings made from them: a worker serves many
#: task runs of one flow, and building Prefect's settings from their serialized form costs tens
#: of milliseconds (most of a short task run's time on the worker).
_last_settings: tuple[dict[str, Any], Any] | None = None


def run_task(
    task: Any,
    task_run_id: uuid.UUID,
    parameters: dict[str, Any],
    wait_for: list[Any] | None,
    dependencies: dict[str, set[Any]] | None,
    context: dict[str, Any],
) -> Any:
    """Run one task run to its final state and return that state (a ``prefect.State``)."""
    from prefect.context import hydrated_context
    from prefect.events.worker import EventsWorker
    from prefect.task_engine import run_task_async, run_task_sync

    token = on_crew_worker.set(True)
    try:
        # The flow's settings (the API's address, result storage, ...), then the flow run, the tags.
        with _settings(context.get("settings_context")), hydrated_context({**context, "settings_context": {}}):
            arguments: dict[str, Any] = dict(
                task=task,
                task_run_id=task_run_id,
                parameters=parameters,
                wait_for=wait_for,
                dependencies=dependencies,
                return_type="state",
            )
            state = asyncio.run(run_task_async(**arguments)) if task.isasync else run_task_sync(**arguments)
            # The run's states reach the API as events, sent by a background thread: send them
            # before the job ends, so that a worker that stops next loses none.
            EventsWorker.instance().wait_until_empty()
            return state
    finally:
        on_crew_worker.reset(token)


def _settings(serialized: dict[str, Any] | None) -> Any:
    """A ``SettingsContext`` for the flow's serialized settings, built once while they stay the same."""
    global _last_settings
    import contextlib

    from prefect.context import SettingsContext

    if not serialized:
        return contextlib.nullcontext()
    if _last_settings is None or _last_settings[0] != serialized:
        made = SettingsContext(**serialized)
        _last_settings = (serialized, (made.profile, made.settings))
    profile, settings = _last_settings[1]
    return SettingsContext(profile=profile, settings=settings)
