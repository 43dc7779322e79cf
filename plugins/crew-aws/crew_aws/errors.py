"""Turning botocore's exceptions into crew's, with messages that say what to do next."""

from __future__ import annotations

from typing import Any

from crew_core.plugin import StoreError, StoreGoneError, WorkerLaunchError

_CREDENTIAL_CODES = {
    "ExpiredToken": "the AWS credentials have expired: renew them (aws sso login, a new session token)",
    "ExpiredTokenException": "the AWS credentials have expired: renew them (aws sso login, a new session token)",
    "RequestExpired": "the AWS credentials have expired: renew them",
    "InvalidAccessKeyId": "the AWS access key id is not valid: check AWS_ACCESS_KEY_ID or the profile",
    "SignatureDoesNotMatch": "the AWS secret key does not match the access key: check the credentials",
    "UnrecognizedClientException": "the AWS credentials are not valid: check AWS_ACCESS_KEY_ID or the profile",
    "InvalidClientTokenId": "the AWS credentials are not valid: check AWS_ACCESS_KEY_ID or the profile",
}


def error_code(exc: BaseException) -> str:
    response: Any = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def credential_problem(exc: BaseException) -> str | None:
    """A sentence about missing, invalid or expired credentials, or None."""
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials were found: set AWS_PROFILE or AWS_ACCESS_KEY_ID and"
            " AWS_SECRET_ACCESS_KEY, or run where an instance or task role provides them"
        )
    return _CREDENTIAL_CODES.get(error_code(exc))


def store_error(exc: BaseException, what: str, permission: str, where: str) -> StoreError:
    """A StoreError for a failed S3 call: ``what`` failed on ``where`` needing ``permission``."""
    from botocore.exceptions import EndpointConnectionError, NoRegionError

    code = error_code(exc)
    problem = credential_problem(exc)
    if problem:
        message = f"cannot {what} {where}: {problem}"
    elif code in ("NoSuchBucket",):  # deleted (or never made): no retry brings it back
        return StoreGoneError(f"the bucket of {where} does not exist: create it or fix the store URL")
    elif code in ("AccessDenied", "AllAccessDisabled", "403"):
        message = f"access denied to {where}: the credentials need the {permission} permission"
    elif code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301"):
        message = f"the bucket of {where} is in another region: pass region= (or set AWS_REGION)"
    elif isinstance(exc, EndpointConnectionError):
        message = f"cannot reach S3 to {what} {where}: {exc}"
    elif isinstance(exc, NoRegionError):
        message = f"no AWS region is set for {where}: pass region= or set AWS_REGION"
    else:
        message = f"S3 failed to {what} {where}: {exc}"
    return StoreError(message)


def launch_error(exc: BaseException, what: str, service: str = "AWS Batch") -> WorkerLaunchError:
    """A WorkerLaunchError for a failed call to ``service`` while trying to ``what``."""
    from botocore.exceptions import EndpointConnectionError, NoRegionError

    problem = credential_problem(exc)
    if problem:
        return WorkerLaunchError(f"cannot {what}: {problem}")
    if isinstance(exc, NoRegionError):
        return WorkerLaunchError(f"cannot {what}: no AWS region is set; pass region= or set AWS_REGION")
    if isinstance(exc, EndpointConnectionError):
        return WorkerLaunchError(f"cannot {what}: {service} is unreachable ({exc})")
    message = getattr(exc, "response", {}).get("Error", {}).get("Message") or str(exc)
    if error_code(exc) in ("AccessDeniedException", "AccessDenied"):
        return WorkerLaunchError(f"cannot {what}: access denied by {service} ({message}); see crew-aws's IAM policy")
    return WorkerLaunchError(f"cannot {what}: {service} said: {message}")
