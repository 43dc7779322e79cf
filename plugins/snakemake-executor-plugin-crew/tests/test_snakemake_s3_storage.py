"""Workers that share no file system with the workflow: inputs, outputs and the workflow's sources
travel through Snakemake's S3 storage plugin (on moto's S3), as they would to cloud workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from snakemake.common.tests import TestWorkflowsMinioPlayStorageBase
from snakemake_executor_plugin_crew import ExecutorSettings

pytest.importorskip("snakemake_storage_plugin_s3", reason="needs snakemake-storage-plugin-s3")
pytest.importorskip("moto", reason="needs moto[server]")


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from crew_aws.testing import moto_s3

    with moto_s3() as endpoint:
        yield endpoint


class TestWorkflowsWithoutSharedFileSystem(TestWorkflowsMinioPlayStorageBase):
    """Snakemake's own storage test base (made for MinIO) pointed at moto; jobs run in empty folders, on
    warm workers (each job's two Snakemake runs, --deploy-sources and the job, in forks of its worker)."""

    __test__ = True

    @pytest.fixture(autouse=True)
    def _endpoint(self, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self._moto = moto_endpoint
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    @property
    def endpoint_url(self) -> str:
        return self._moto

    @property
    def access_key(self) -> str:
        return "testing"

    @property
    def secret_key(self) -> str:
        return "testing"

    def get_executor(self) -> str:
        return "crew"

    def get_executor_settings(self) -> ExecutorSettings:
        return ExecutorSettings(worker_class="subprocess", warm=True)

    def get_assume_shared_fs(self) -> bool:
        return False
