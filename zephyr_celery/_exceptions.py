"""Errors raised by jobs: one subclass of :class:`zephyr_core.ZephyrError` per case."""

from __future__ import annotations

from zephyr_core import ZephyrError


class JobError(ZephyrError):
    """Base class of the errors a job's caller handles."""

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message)
        #: The id of the job concerned.
        self.job_id = job_id


class JobFailed(JobError):
    """The job raised an exception (after its retries, if it had any).

    The exception itself stays on the worker: its class may not even exist in the
    caller's process. What crosses the wire is its type name, message and traceback.

    Attributes:
        job_id: The failed job's id.
        exc_type: Name of the exception class raised by the job (``"ValueError"``).
        exc_message: The exception's message (its arguments joined as text).
        remote_traceback: The traceback printed on the worker, when one was stored.
        state: Celery's final state (``"FAILURE"`` or ``"REVOKED"``).
    """

    def __init__(
        self,
        *,
        job_id: str,
        exc_type: str,
        exc_message: str,
        remote_traceback: str | None = None,
        state: str = "FAILURE",
    ) -> None:
        super().__init__(f"job {job_id} failed: {exc_type}: {exc_message}", job_id=job_id)
        self.exc_type = exc_type
        self.exc_message = exc_message
        self.remote_traceback = remote_traceback
        self.state = state


class JobTimeout(JobError, TimeoutError):
    """The job did not finish within the time the caller agreed to wait.

    The job itself is not cancelled: it may still run and its result can be waited
    for again with the same handle.
    """

    def __init__(self, *, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id} did not finish within {timeout:g}s", job_id=job_id)
        self.timeout = timeout
