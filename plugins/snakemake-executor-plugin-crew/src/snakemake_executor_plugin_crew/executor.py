"""The Snakemake executor: each Snakemake job is one crew job on workers that stay up between jobs.

    Snakemake's scheduler                      crew                          crew workers
    run_job(job) ── send(run_command, cmd) ──> backlog / idle worker ──────> sh -c "python -m snakemake
                                                                               --target-jobs ... --mode remote"
    check_active_jobs <── receive(timeout=0) <── results (status, exit code, stdout, stderr)
    cancel() ── cancel(tags=()) + close() ──> jobs stopped, workers ended

Snakemake bounds the jobs in flight (``--jobs``); crew starts a worker when a job waits for one
and keeps it for the next job. Status is not polled from a backend: results arrive in the crew,
and the status thread waits on ``receive`` between checks.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncGenerator
from pathlib import Path

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.logging import LoggerExecutorInterface
from snakemake_interface_executor_plugins.settings import SharedFSUsage
from snakemake_interface_executor_plugins.workflow import WorkflowExecutorInterface

from crew_core import Crew, CrewError, Result, StoreGoneError, UnknownTagError
from snakemake_executor_plugin_crew.command import run_command, run_warm
from snakemake_executor_plugin_crew.outcome import outcome
from snakemake_executor_plugin_crew.placement import placement, pool_tags
from snakemake_executor_plugin_crew.settings import ExecutorSettings, crew_settings, pools, worker_classes

#: Longest wait for a result between two status checks: it bounds how long shutdown and cancel wait.
WAIT_FOR_RESULT = 0.25
#: Where job logs go, under the workflow's folder (as Snakemake's Slurm executor keeps slurm_logs).
LOG_DIR = Path(".snakemake") / "crew_logs"


class Executor(RemoteExecutor):
    """Runs Snakemake jobs as crew jobs (see the module's docstring)."""

    def __init__(self, workflow: WorkflowExecutorInterface, logger: LoggerExecutorInterface) -> None:
        # RemoteExecutor.__init__ starts the status thread, which reads the crew: open it first.
        self.settings: ExecutorSettings = workflow.executor_settings or ExecutorSettings()
        self.log_dir = Path(os.getcwd(), LOG_DIR)
        self.results: dict[int, Result] = {}  # received, not yet reported (the status thread's alone)
        self.closed = False
        self.runner = run_warm if self.settings.warm else run_command
        self.crew = _open_crew(self.settings, _jobs_limit(workflow))
        try:
            super().__init__(workflow, logger)
        except BaseException:
            self.crew.close()
            raise
        logger.info(
            f"crew executor: store {self.crew.store.describe()}, crew {self.crew.id}, workers: {len(self.crew.workers)}"
        )

    # ------------------------------------------------------------------ submitting
    def run_job(self, job: JobExecutorInterface) -> None:
        """Send the job's command (``python -m snakemake --target-jobs ...``) as one crew job."""
        command = self.format_job_exec(job)
        where = placement(job.threads, job.resources)
        shared = SharedFSUsage.INPUT_OUTPUT in self.workflow.storage_settings.shared_fs_usage
        kwargs = {"cwd": os.getcwd() if shared else None, "env": dict(self.envvars())}
        limit = {} if where.timeout is None else {"job_timeout": where.timeout}  # none given: the crew's
        try:
            crew_job = self.crew.send(self.runner, args=(command,), kwargs=kwargs, tags=where.tags, **limit)
        except UnknownTagError as exc:
            self.report_job_error(SubmittedJobInfo(job), msg=(
                f"no crew worker can run this job ({exc}). Jobs with threads: N need a pool with at least N "
                "threads (--crew-recruit workers=2,threads=N, or cpus=N for Slurm workers); resources "
                "crew_tags need a pool with those tags.\n"
            ))  # fmt: skip
            return
        except CrewError as exc:
            self.report_job_error(SubmittedJobInfo(job), msg=f"crew could not take the job: {exc}\n")
            return
        self.logger.debug(f"crew job {crew_job} for {job}: tags {sorted(where.tags)}, command {command}")
        self.report_job_submission(SubmittedJobInfo(job, external_jobid=str(crew_job), aux={"crew_job": crew_job}))

    def get_envvar_declarations(self) -> str:
        """Nothing in the command: ``run_command`` gets the variables as its environment."""
        return ""

    # ------------------------------------------------------------------ status
    async def check_active_jobs(self, active_jobs: list[SubmittedJobInfo]) -> AsyncGenerator[SubmittedJobInfo, None]:
        """Report the jobs whose results arrived; yield those still in flight."""
        self._take_results(0)
        for job_info in active_jobs:
            result = self.results.pop(job_info.aux["crew_job"], None) if job_info.aux else None
            if result is None:
                yield job_info
            else:
                self._report(job_info, result)

    async def sleep(self) -> None:
        """Wait for the next result (at most ``WAIT_FOR_RESULT`` seconds) instead of a fixed pause."""
        await asyncio.to_thread(self._take_results, WAIT_FOR_RESULT)

    def _take_results(self, timeout: float) -> None:
        """Move results out of the crew into ``self.results``, waiting up to ``timeout`` for the first."""
        deadline = time.monotonic() + timeout
        took = 0
        try:
            result = self.crew.receive(timeout=timeout)
            while result is not None:
                self.results[result.id] = result
                took += 1
                result = self.crew.receive(timeout=0)
        except StoreGoneError as exc:
            raise WorkflowError(f"crew executor: the crew's store is gone: {exc}")
        except CrewError as exc:  # a worker that could not start: its jobs come back as errors in time
            self.logger.warning(f"crew executor: {exc}")
        if not took:  # nothing in flight makes receive return at once: do not spin
            time.sleep(max(0.0, deadline - time.monotonic()))

    def _report(self, job_info: SubmittedJobInfo, result: Result) -> None:
        told = outcome(result, str(job_info.job))
        log = self._log_file(job_info.job)
        if told.ok:
            if self.settings.keep_successful_logs:
                _write(log, told.log)
            self.report_job_success(job_info)
            return
        _write(log, told.log)
        self.report_job_error(job_info, msg=told.message, aux_logs=[str(log)])

    def _log_file(self, job: JobExecutorInterface) -> Path:
        kind = "group" if job.is_group() else "rule"
        name = re.sub(r"[^\w.-]", "_", str(job.name))
        return self.log_dir / f"{kind}_{name}" / f"{job.jobid}.log"

    # ------------------------------------------------------------------ the end
    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        """Cancel every crew job in flight (also those the status thread holds at this moment)."""
        if not self.closed:
            try:
                self.crew.cancel(tags=())
            except CrewError as exc:  # the store failing: closing the crew (next) still ends the workers
                self.logger.warning(f"crew executor: could not cancel the crew's jobs: {exc}")

    def shutdown(self) -> None:
        """Stop the status thread, then close the crew: its workers end, its store objects go."""
        super().shutdown()
        if not self.closed:
            self.closed = True
            self.crew.close()


def _open_crew(settings: ExecutorSettings, jobs: int | None) -> Crew:
    """The crew the settings describe, with its pools recruited (no worker starts yet)."""
    wanted = pools(settings, jobs)  # a spec that does not parse fails before any crew exists
    try:
        crew = Crew(settings.store, worker_classes(settings), **crew_settings(settings))
    except (CrewError, TypeError, ValueError) as exc:
        raise WorkflowError(f"crew executor: could not create the crew: {exc}")
    try:
        for pool in wanted:
            crew.recruit(pool.workers, pool.worker_class, tags=pool_tags(pool.tags, pool.threads), **pool.recruit)
    except BaseException as exc:
        crew.close()
        if isinstance(exc, CrewError | TypeError | ValueError):
            raise WorkflowError(f"crew executor: could not recruit workers (--crew-recruit): {exc}")
        raise
    return crew


def _jobs_limit(workflow: WorkflowExecutorInterface) -> int | None:
    """Snakemake's ``--jobs`` (None when unlimited)."""
    nodes = workflow.resource_settings.nodes
    if nodes is None or nodes >= 2**31:
        return None
    return int(nodes)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
