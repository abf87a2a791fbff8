"""Background jobs on Celery: ``@job`` functions, awaitable results, a safe app.

Example:
    >>> from zephyr_celery import job
    >>> @job(retry=3, delay=60)
    ... async def send_email(to: str, subject: str, body: str) -> dict[str, str]:
    ...     ...
    >>> handle = await send_email.delay("a@b.c", "Hello", "...")
    >>> result = await handle.wait(timeout=30)
"""

from typing import Any as _Any

from zephyr_celery._app import create_app, get_app, set_app
from zephyr_celery._exceptions import (
    EnqueueError,
    JobError,
    JobFailed,
    JobTimeout,
    ResultBackendError,
)
from zephyr_celery._failures import FailureRecord, FailureStore, failure_store
from zephyr_celery._handle import JobHandle
from zephyr_celery._job import AsyncJob, Job, SyncJob, job
from zephyr_celery._pool import AsyncPool
from zephyr_celery._redis.replicas import NotReplicatedError
from zephyr_celery._scheduler import scheduler

__all__ = [
    "AsyncJob",
    "AsyncPool",
    "EnqueueError",
    "FailureRecord",
    "FailureStore",
    "Job",
    "JobError",
    "JobFailed",
    "JobHandle",
    "JobTimeout",
    "NotReplicatedError",
    "ResultBackendError",
    "SyncJob",
    "create_app",
    "failure_store",
    "get_app",
    "job",
    "scheduler",
    "set_app",
]


def __getattr__(name: str) -> _Any:
    # `celery -A zephyr_celery ...` looks for the module's `app`: the process-wide app,
    # made on first use (Celery's CLI never calls a factory such as get_app).
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
