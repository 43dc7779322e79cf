"""Snakemake executor plugin ``crew``: ``snakemake --executor crew`` runs each job on crew workers.

Snakemake finds the plugin by its module name and reads three names from it: ``common_settings``
(how Snakemake treats the executor), ``ExecutorSettings`` (the ``--crew-...`` flags) and
``Executor``.
"""

from snakemake_interface_executor_plugins.settings import CommonSettings

from snakemake_executor_plugin_crew.executor import Executor
from snakemake_executor_plugin_crew.settings import ExecutorSettings

__version__ = "0.1.0"

common_settings = CommonSettings(
    non_local_exec=True,  # jobs run elsewhere (crew workers); Snakemake bounds them with --jobs
    implies_no_shared_fs=False,  # local and Slurm workers share the workflow's folder
    job_deploy_sources=True,  # without a shared file system, jobs fetch the sources from storage
    pass_default_storage_provider_args=True,
    pass_default_resources_args=True,
    pass_envvar_declarations_to_cmd=False,  # run_command gets them as its environment instead
    auto_deploy_default_storage_provider=False,  # workers have the storage plugin installed: no pip per job
    init_seconds_before_status_checks=0,  # results are pushed to the crew: check at once
)

__all__ = ["Executor", "ExecutorSettings", "common_settings"]
