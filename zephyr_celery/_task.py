"""What runs on the worker: a job's Celery task body, its retries and failure record."""

from __future__ import annotations

import inspect
import logging
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Task
from celery.exceptions import Ignore, Reject, Retry

from zephyr_celery._failures import FailureRecord, failure_store
from zephyr_celery._runner import run_coroutine, take_outcome

logger = logging.getLogger("zephyr_celery")


@dataclass(frozen=True)
class RetryPolicy:
    """How a job retries: ``retries`` more attempts after the first, ``delay`` apart."""

    retries: int
    delay: float
    backoff: bool
    max_delay: float

    def countdown(self, retries_done: int) -> float:
        """Seconds before retry number ``retries_done + 1``."""
        if _testing_delay is not None:
            return float(_testing_delay)
        if not self.backoff:
            return self.delay
        ceiling = min(self.delay * 2**retries_done, self.max_delay)
        # "Equal jitter": at least half the doubled delay, so it still grows, and a
        # random rest so jobs that failed together do not retry together.
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


# The testing switch (zephyr_celery.testing.set_testing): retry delays of this
# process's workers replaced by this many seconds.
_testing_delay: float | None = None


def set_testing_delay(delay: float | None) -> None:
    global _testing_delay
    _testing_delay = delay


class JobTask(Task):  # type: ignore[misc]
    """The Celery task class of every job."""

    # Arguments were checked against the signature when the job was enqueued by
    # @job; a plain Celery producer's that do not bind fail in task_body, unretried.
    typing = False


def task_body(
    fn: Callable[..., Any], is_async: bool, policy: RetryPolicy, timeout: float | None
) -> Callable[..., Any]:
    """The function Celery runs for a job: the job itself, then its failure handling."""

    def run(task: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            if is_async:
                outcome = take_outcome()  # already run by the async pool
                if outcome is not None:
                    return outcome.get()
                return run_coroutine(fn(*args, **kwargs), timeout)
            return fn(*args, **kwargs)
        except (Retry, Ignore, Reject):
            raise  # Celery's own control flow
        except Exception as exc:
            retries = int(task.request.retries or 0)
            mismatch = _arguments_mismatch(fn, exc, args, kwargs)
            if mismatch is not None:
                # Sent by a plain Celery client (`celery call`, send_task) with the
                # wrong arguments: every retry would fail the same way. Fail now.
                error = TypeError(
                    f"job {task.name} was sent arguments that do not match its "
                    f"signature: {mismatch} (not retried)"
                )
                _record_failure(task, error, args, kwargs, attempts=retries + 1)
                raise error from None
            if retries < policy.retries:
                countdown = policy.countdown(retries)
                raise task.retry(exc=exc, countdown=countdown, max_retries=policy.retries) from exc
            _record_failure(task, exc, args, kwargs, attempts=retries + 1)
            raise

    # Celery compiles a header function by this name: a lambda's "<lambda>" is no
    # identifier (SyntaxError at registration).
    run.__name__ = fn.__name__ if fn.__name__.isidentifier() else "job"
    run.__qualname__ = fn.__qualname__
    run.__doc__ = fn.__doc__
    run.__module__ = fn.__module__
    return run


def _arguments_mismatch(
    fn: Callable[..., Any], exc: Exception, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str | None:
    """Why ``fn`` cannot take these arguments, when that is what ``exc`` is about.

    Only a TypeError is checked (binding costs nothing on the usual path); one raised
    inside the job with arguments that bind is the job's own failure (retried).
    """
    if not isinstance(exc, TypeError):
        return None
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as mismatch:
        return str(mismatch)
    except ValueError:  # no signature to check against
        return None
    return None


def _record_failure(
    task: Any, exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any], attempts: int
) -> None:
    request = task.request
    delivery = request.delivery_info or {}
    try:
        message = str(exc)
    except Exception:
        message = f"<{type(exc).__name__} with an unprintable message>"
    record = FailureRecord(
        id=str(request.id),
        name=str(task.name),
        args=list(args),
        kwargs=dict(kwargs),
        exc_type=type(exc).__name__,
        message=message,
        traceback="".join(traceback.format_exception(exc)),
        attempts=attempts,
        failed_at=time.time(),
        queue=delivery.get("routing_key"),
    )
    # Failures are rare: a connection of its own each time, closed at once.
    store = failure_store(task.app)
    try:
        store.record(record)
    except Exception:  # the job's own failure is what Celery must store next
        logger.exception("could not record the failure of job %s (%s)", record.id, record.name)
    finally:
        store.close()
