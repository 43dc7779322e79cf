"""The Google API clients of the Cloud Run worker, and what their errors mean for a launch.

Every client speaks REST (no gRPC channel per process), is made once per endpoint in a process,
and is imported when first used, not when crew starts. An ``http://`` endpoint is a local
emulator (crew_gcp.testing's control plane): no Google credentials are looked for.
"""

from __future__ import annotations

import threading
from typing import Any

from crew_core.plugin import WorkerLaunchError

_clients: dict[tuple[str, str | None], Any] = {}
_clients_lock = threading.Lock()


def _settings(api_endpoint: str | None) -> dict[str, Any]:
    from google.api_core.client_options import ClientOptions

    settings: dict[str, Any] = {"client_options": ClientOptions(api_endpoint=api_endpoint) if api_endpoint else None,
                                "credentials": None, "transport": "rest"}  # fmt: skip
    if api_endpoint and api_endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        settings["credentials"] = AnonymousCredentials()
    return settings


def run_clients(api_endpoint: str | None) -> tuple[Any, Any]:
    """``(JobsClient, ExecutionsClient)`` of Cloud Run Admin v2 at ``api_endpoint`` (None: Google's)."""
    with _clients_lock:
        if ("run", api_endpoint) not in _clients:
            from google.cloud import run_v2

            settings = _settings(api_endpoint)
            _clients["run", api_endpoint] = (run_v2.JobsClient(**settings), run_v2.ExecutionsClient(**settings))
        return _clients["run", api_endpoint]  # type: ignore[no-any-return]


def secret_client(api_endpoint: str | None) -> Any:
    """A Secret Manager v1 ``SecretManagerServiceClient`` at ``api_endpoint`` (None: Google's)."""
    with _clients_lock:
        if ("secretmanager", api_endpoint) not in _clients:
            from google.cloud import secretmanager_v1

            client = secretmanager_v1.SecretManagerServiceClient(**_settings(api_endpoint))
            _clients["secretmanager", api_endpoint] = client
        return _clients["secretmanager", api_endpoint]


def launch_error(exc: BaseException, what: str, api: str = "Cloud Run") -> WorkerLaunchError:
    """A :class:`WorkerLaunchError` for ``exc``, raised by ``api`` while trying to ``what``,
    saying what to do next."""
    from google.api_core import exceptions as api_errors
    from google.auth import exceptions as auth

    if isinstance(exc, WorkerLaunchError):
        return exc
    if isinstance(exc, auth.DefaultCredentialsError):
        return WorkerLaunchError(
            f"cannot {what}: no Google credentials were found; run `gcloud auth application-default"
            " login` or set GOOGLE_APPLICATION_CREDENTIALS"
        )
    if isinstance(exc, api_errors.Forbidden | api_errors.Unauthorized):
        return WorkerLaunchError(f"cannot {what}: {api} denied permission ({exc.message}); see crew-gcp's IAM roles")
    if isinstance(exc, api_errors.GoogleAPICallError):
        return WorkerLaunchError(f"cannot {what}: {api} said: {exc.message}")
    return WorkerLaunchError(f"cannot {what}: {exc}")
