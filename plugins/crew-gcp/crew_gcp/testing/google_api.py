"""What the local Google APIs of :mod:`crew_gcp.testing` share: errors in Google's JSON shape, timestamps."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class ApiError(Exception):
    """An error answer: ``{"error": {"code", "status", "message"}}`` with ``code`` as the HTTP status."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code, self.status = code, status


def timestamp(seconds: float | None = None) -> str:
    """RFC 3339 in UTC with a ``Z``, as Google's JSON APIs write times."""
    moment = datetime.fromtimestamp(seconds if seconds is not None else time.time(), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
