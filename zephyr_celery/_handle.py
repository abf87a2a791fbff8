"""JobHandle: a job's id that can be awaited for the job's result."""

from __future__ import annotations

import contextlib
import weakref
from typing import Any, Generic, TypeVar, cast

from zephyr_celery._exceptions import JobFailed, JobTimeout, backend_error, map_backend_errors
from zephyr_celery._redis import waiter as _waiter
from zephyr_celery._redis.master import app_topology
from zephyr_core import ConfigError, mask_url
from zephyr_core._topology import RedisTopology

T = TypeVar("T")


class JobHandle(str, Generic[T]):
    """The id of an enqueued job, and the way to its result.

    A ``str`` subclass: it is the job id, so ``{"job_id": handle}`` serialises as
    JSON and ``JobHandle(job_id)`` rebuilt from a stored id works the same.

    Example:
        >>> handle = await send_email.delay("a@b.c", "hi", "...")
        >>> result = await handle.wait(timeout=30)
    """

    _app: Any

    def __new__(cls, job_id: str, app: Any = None) -> JobHandle[T]:
        handle = super().__new__(cls, job_id)
        handle._app = app
        return handle

    @property
    def id(self) -> str:
        """The job id, as a plain ``str``."""
        return str.__str__(self)

    def _resolve_app(self) -> Any:
        if self._app is not None:
            return self._app
        from zephyr_celery._app import get_app

        return get_app()

    async def wait(self, timeout: float | None = None) -> T:
        """Wait for the job to finish and return its result.

        Waiting subscribes to the job's result on the result backend's pub/sub: the
        event loop is free meanwhile and nothing polls.

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            What the job returned (as JSON carried it: tuples come back as lists).

        Raises:
            JobFailed: The job raised (after its retries), or was revoked.
            JobTimeout: ``timeout`` passed first; the job may still finish later.
            ResultBackendError: The result Redis cannot be reached: when ``timeout``
                passes while it is unreachable, or once it has been for a minute
                (a restart of a few seconds is ridden out). The job may still run.
        """
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout={timeout!r}: must be None or >= 0 seconds")
        app = self._resolve_app()
        backend, url, topology = _redis_backend(app)
        waiter = _waiter.waiter_for(url, backend.decode, topology)
        try:
            meta = await waiter.wait(backend.get_key_for_task(self.id), timeout)
        except TimeoutError:
            if waiter.down:  # not "did not finish": Redis cannot tell
                cause = waiter.down_cause or TimeoutError()
                raise backend_error(cause, job_id=self.id, result_url=url) from cause
            raise JobTimeout(job_id=self.id, timeout=timeout or 0.0) from None
        except _waiter.Unreachable as gone:
            raise backend_error(gone.cause, job_id=self.id, result_url=url) from gone.cause
        return cast(T, outcome(self.id, meta))

    async def status(self) -> str:
        """Celery's state of the job now: ``PENDING``, ``RETRY``, ``SUCCESS``, ``FAILURE``...

        ``PENDING`` also means "unknown": a job id nobody enqueued, or whose result
        has expired, reads the same.

        Raises:
            ResultBackendError: The result Redis cannot be reached (or refused the read).
        """
        app = self._resolve_app()
        backend, url, topology = _redis_backend(app)
        with map_backend_errors(self.id, url):
            raw = await _waiter.read(url, backend.get_key_for_task(self.id), topology)
        if raw is None:
            return "PENDING"
        return str(backend.decode(raw).get("status", "PENDING"))

    def __repr__(self) -> str:
        return f"JobHandle({str.__repr__(self)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (JobHandle, (self.id,))


def outcome(job_id: str, meta: dict[str, Any]) -> Any:
    """The result in ``meta`` (a stored Celery result), or the JobFailed it records."""
    status = meta.get("status")
    if status == "SUCCESS":
        return meta.get("result")
    raise failure_from_meta(job_id, meta)


def failure_from_meta(job_id: str, meta: dict[str, Any]) -> JobFailed:
    """JobFailed from a stored FAILURE/REVOKED result, without importing its class."""
    result = meta.get("result")
    if isinstance(result, dict):
        exc_type = str(result.get("exc_type") or "Exception")
        message = result.get("exc_message", "")
        if isinstance(message, list | tuple):
            message = ", ".join(str(part) for part in message)
    else:
        exc_type, message = "Exception", "" if result is None else str(result)
    return JobFailed(
        job_id=job_id,
        exc_type=exc_type,
        exc_message=str(message),
        remote_traceback=meta.get("traceback"),
        state=str(meta.get("status") or "FAILURE"),
    )


# The result URL of each backend and what it points at (app.conf lookups cost more
# than the rest of a wait).
_urls: weakref.WeakKeyDictionary[Any, tuple[str, RedisTopology | None]] = (
    weakref.WeakKeyDictionary()
)

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "sentinel://", "sentinels://")


def _redis_backend(app: Any) -> tuple[Any, str, RedisTopology | None]:
    """The app's result backend, its URL and topology, once checked to be Redis."""
    backend = app.backend
    try:
        return (backend, *_urls[backend])
    except (KeyError, TypeError):
        pass
    url = str(app.conf.result_backend)
    if not hasattr(backend, "get_key_for_task") or not url.startswith(_REDIS_SCHEMES):
        shown = mask_url(url)
        raise ConfigError(
            f"result_backend={shown!r}: waiting for jobs needs the Redis result backend "
            "(JOB_RESULT_URL=redis://... or sentinel://...)",
            field="JOB_RESULT_URL",
        )
    # On Sentinel the master's name may come from REDIS_SENTINEL_MASTER.
    topology = app_topology(app, url, app.conf.result_backend_transport_options)
    with contextlib.suppress(TypeError):  # a backend without weak references: no cache
        _urls[backend] = (url, topology)
    return backend, url, topology
