"""Errors raised by jobs: one subclass of :class:`zephyr_core.ZephyrError` per case.

What the broker's and the result backend's clients raise (redis-py, kombu, py-amqp,
sockets) is translated here, in one place, as httpx's ``map_httpcore_exceptions``
does: :func:`enqueue_error` and :func:`backend_error` build ours, and every send
path and every read of a result raises them ``from`` the library's error.

- :class:`EnqueueError`: ``delay``/``apply_async``/``delay_sync``: the broker cannot
  be reached, or refused the message (out of memory, read-only replica, access refused);
- :class:`ResultBackendError`: ``wait``/``status``: the result Redis cannot be reached
  (or refused the read);
- :class:`JobFailed`: ``wait``: the job raised (after its retries), or was revoked;
- :class:`JobTimeout`: ``wait``: its ``timeout`` passed while Redis was reachable.

Both translated errors are also ``ConnectionError``: ``except ConnectionError`` code
written for the libraries' errors keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import amqp.exceptions  # type: ignore[import-untyped]
import kombu.exceptions
import redis.exceptions

from zephyr_core import ZephyrError, mask_url

#: What a broker client raises when the broker is unreachable or refuses a command.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.RedisError,  # ConnectionError, TimeoutError, OutOfMemoryError...
    kombu.exceptions.OperationalError,  # Celery's path: kombu's wrapper of the above
    amqp.exceptions.AMQPError,  # RabbitMQ
    OSError,  # sockets (ConnectionRefusedError, TimeoutError)
)

#: What the result backend's client (redis-py, our wire protocol) raises.
BACKEND_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)


class JobError(ZephyrError):
    """Base class of the errors a job's caller handles."""

    def __init__(self, message: str, *, job_id: str | None) -> None:
        super().__init__(message)
        #: The id of the job concerned (``None`` when it never got one).
        self.job_id = job_id


class EnqueueError(JobError, ConnectionError):
    """The job was not enqueued: the broker cannot be reached or refused the message.

    The broker's own error is the ``__cause__``. When a send failed after the
    broker may have received it, the job can still run: an id that was already
    known is in ``job_id``.

    Attributes:
        job_name: The job that was being sent.
        broker_url: The broker's URL, password masked.
    """

    def __init__(
        self, message: str, *, job_name: str, broker_url: str, job_id: str | None = None
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.job_name = job_name
        self.broker_url = broker_url


class ResultBackendError(JobError, ConnectionError):
    """The result backend (Redis) cannot be reached, so the job's state is unknown.

    The job itself may be running or done: wait again once Redis is back.

    Attributes:
        result_url: The result backend's URL, password masked.
    """

    def __init__(self, message: str, *, job_id: str, result_url: str) -> None:
        super().__init__(message, job_id=job_id)
        self.result_url = result_url


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


def _why(exc: BaseException) -> str:
    # kombu wraps the client's error (OperationalError from it): judge by the root.
    seen = 0
    while seen < 5 and isinstance(exc, kombu.exceptions.OperationalError):
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc, seen = inner, seen + 1
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or "maxmemory" in str(exc):
        return "is out of memory (maxmemory reached with the noeviction policy)"
    if isinstance(exc, redis.exceptions.ReadOnlyError):
        return "is a read-only replica"
    if isinstance(exc, redis.exceptions.ResponseError | amqp.exceptions.ChannelError):
        return "refused the command"
    return "cannot be reached"


def enqueue_error(
    exc: BaseException, *, job_name: str, broker_url: str, job_id: str | None = None
) -> EnqueueError:
    """Ours for a broker client's error (raise it ``from exc``)."""
    shown = mask_url(broker_url)
    return EnqueueError(
        f"job {job_name} was not enqueued: the broker {shown} {_why(exc)} "
        f"({type(exc).__name__}: {exc})",
        job_name=job_name,
        broker_url=shown,
        job_id=job_id,
    )


def backend_error(exc: BaseException, *, job_id: str, result_url: str) -> ResultBackendError:
    """Ours for a result backend client's error (raise it ``from exc``)."""
    shown = mask_url(result_url)
    return ResultBackendError(
        f"job {job_id}: the result backend {shown} {_why(exc)} ({type(exc).__name__}: "
        f"{exc}); the job may still run: wait again once Redis is back",
        job_id=job_id,
        result_url=shown,
    )


@contextmanager
def map_broker_errors(job_name: str, broker_url: str) -> Iterator[None]:
    """Raise :class:`EnqueueError` for what a broker client raises in the block."""
    try:
        yield
    except JobError:
        raise  # already ours (and a ConnectionError, so an OSError)
    except BROKER_ERRORS as exc:
        raise enqueue_error(exc, job_name=job_name, broker_url=broker_url) from exc


@contextmanager
def map_backend_errors(job_id: str, result_url: str) -> Iterator[None]:
    """Raise :class:`ResultBackendError` for what the result client raises in the block."""
    try:
        yield
    except JobError:
        raise
    except BACKEND_ERRORS as exc:
        raise backend_error(exc, job_id=job_id, result_url=result_url) from exc
