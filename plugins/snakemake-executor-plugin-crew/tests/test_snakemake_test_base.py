"""Snakemake's own executor-plugin test base (the one its official executor plugins run) on crew."""

from __future__ import annotations

from snakemake.common.tests import TestWorkflowsLocalStorageBase
from snakemake_executor_plugin_crew import ExecutorSettings


class TestWorkflowsOnSubprocessWorkers(TestWorkflowsLocalStorageBase):
    """The base's simple and group workflows, each job a crew job on local subprocess workers."""

    __test__ = True

    def get_executor(self) -> str:
        return "crew"

    def get_executor_settings(self) -> ExecutorSettings:
        return ExecutorSettings(worker_class="subprocess")
