"""Exception classes raised by crew; every one derives from :class:`CrewError`."""

from __future__ import annotations


class CrewError(Exception):
    """Base class of every error crew raises on purpose."""


class PluginError(CrewError):
    """A store or worker class name is unknown, or registered twice."""


class UnknownTagError(CrewError, LookupError):
    """A job or request names a tag that no worker of the crew carries."""


class NoWorkersError(CrewError):
    """The crew has no worker that could run the job: recruit some first."""


class SerializationError(CrewError):
    """A function, argument or return value cannot be pickled or unpickled."""


class StoreError(CrewError):
    """A store operation failed: the backend is down, denied access or misbehaved."""


class StoreGoneError(StoreError):
    """The store itself no longer exists (its folder or bucket was deleted): not an outage.

    Nothing in flight can come back, so the crew is broken for good: every call that waits or asks
    raises this, futures end with it, and only :meth:`Crew.close` is left to do.
    """


class KeyNotFoundError(StoreError, KeyError):
    """The store holds no object under the requested key."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message.
        return str(self.args[0]) if self.args else "key not found"


class CorruptObjectError(StoreError):
    """An object in the store could not be decoded: it was truncated or overwritten."""


class WorkerLaunchError(CrewError):
    """A backend refused to start a worker (bad settings, missing credentials, quota)."""


class WorkerCrashedError(CrewError):
    """The job's worker died while running it, as many times as the crew allows."""


class WorkerLostError(CrewError):
    """The job was dismissed with its worker and no other worker can run it."""


class WorkerInitError(CrewError):
    """The workers that could run the job failed their initializer (``recruit(initializer=)``).

    Each such worker was retired: it runs no job and is not launched again. ``traceback`` is the
    initializer's traceback as the last of them printed it (also in the message).
    """

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.traceback = traceback

    def __reduce__(self) -> tuple[type[WorkerInitError], tuple[str, str]]:
        return type(self), (str(self), self.traceback)


class RemoteError(CrewError):
    """Stands in for an exception raised by a job that could not be pickled back."""


class TamperedObjectError(CorruptObjectError):
    """A store object is not signed with the crew's secret: forged, altered, or another crew's."""


class JobTimeoutError(CrewError, TimeoutError):
    """The job ran past its timeout and was stopped (status ``"timeout"``); it is not run again."""


class JobCancelledError(CrewError):
    """The job was cancelled with :meth:`Crew.cancel` (status ``"cancelled"``)."""


class CrewDeprecationWarning(DeprecationWarning):
    """An old name or keyword of crew's API was used: it still works for one minor release.

    The message names the new spelling (see ``docs/guide/api-design.md``).
    """
