"""``@job``: a function that also runs as a Celery task, awaitable from async code."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, Unpack, cast, overload

from zephyr_celery import _app, _enqueue, _messages, _registry
from zephyr_celery._handle import JobHandle
from zephyr_celery._job_options import (
    JobOptions,
    check_function,
    check_options,
    check_priority,
    default_name,
)
from zephyr_celery._task import JobTask, RetryPolicy, task_body

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("zephyr_celery")

_SCALARS = _messages.SCALARS


class Job(Generic[P, T]):
    """A function decorated with :func:`job`: call it to run it here, ``delay`` it to queue it.

    Attributes:
        name: The job's name, which is its Celery task name.
        retry: Retries after the first attempt.
        delay: Seconds between attempts (the first delay with ``backoff``).
        backoff: Whether delays double (with jitter) up to ``max_delay``.
        queue: The queue it is sent to, ``None`` for Celery's default queue.
        priority: Its message priority, ``None`` for the default.
        timeout: Seconds an attempt may run, ``None`` for no limit.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        retry: int,
        delay: float,
        backoff: bool,
        max_delay: float,
        queue: str | None,
        priority: int | None,
        timeout: float | None,
        rate_limit: str | None,
    ) -> None:
        functools.update_wrapper(cast(Any, self), fn)
        self.fn = fn
        self.name = name
        self.is_async = inspect.iscoroutinefunction(fn)
        self.retry = retry
        self.delay_seconds = delay
        self.backoff = backoff
        self.max_delay = max_delay
        self.queue = queue
        self.priority = priority
        self.timeout = timeout
        self.rate_limit = rate_limit
        self._signature = inspect.signature(fn)
        self._positional = _positional_range(self._signature)
        self._policy = RetryPolicy(retry, delay, backoff, max_delay)
        self._body = task_body(fn, self.is_async, self._policy, timeout)

    def __repr__(self) -> str:
        return f"<job {self.name}>"

    # -- registration -------------------------------------------------------------

    def register(self, app: Any) -> Any:
        """Register this job as a Celery task of ``app`` (replacing a stale one)."""
        existing = app.tasks.get(self.name)
        if existing is not None:
            if getattr(existing, "zephyr_job", None) is self:
                return existing
            app.tasks.unregister(self.name)
        options: dict[str, Any] = {
            "name": self.name,
            "bind": True,
            "base": JobTask,
            "lazy": False,
            "shared": False,
            "max_retries": self.retry,
            "default_retry_delay": self.delay_seconds,
        }
        # queue and priority reach Celery through route_job (task_routes): its task
        # attributes for them are deprecated.
        if self.rate_limit is not None:
            options["rate_limit"] = self.rate_limit
        if self.timeout is not None and not self.is_async:
            # Sync jobs: Celery's limits (enforced by the prefork pool). Async jobs
            # time out on their event loop instead, in any pool.
            options["soft_time_limit"] = self.timeout
            options["time_limit"] = self.timeout + 5
        task = app.task(**options)(self._body)
        task.zephyr_job = self
        self._warn_visibility(app)
        for hook in list(_registry.registered_hooks):
            hook(app, task)
        return task

    def _warn_visibility(self, app: Any) -> None:
        if not str(app.conf.broker_url or "").startswith(("redis", "rediss", "unix")):
            return
        visibility = (app.conf.broker_transport_options or {}).get("visibility_timeout")
        longest = self.max_delay if self.backoff else self.delay_seconds
        if self.retry and visibility and longest >= visibility:
            logger.warning(
                "job %s: retry delay %ss is not shorter than the broker's visibility "
                "timeout %ss, so a retry can be delivered twice; raise "
                "JOB_VISIBILITY_TIMEOUT or shorten delay/max_delay",
                self.name,
                longest,
                visibility,
            )

    @property
    def task(self) -> Any:
        """The Celery task of this job on the process-wide app."""
        app = _app.get_app()
        task = app.tasks.get(self.name)
        if getattr(task, "zephyr_job", None) is not self:
            task = self.register(app)
        return task

    # -- enqueueing ---------------------------------------------------------------

    def _prepare(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[Any, str, Any, dict[str, Any]]:
        """Check the arguments and build the message with Celery (synchronous callers)."""
        app = self.task.app
        self._check_arguments(args, kwargs)
        _messages.check_json(app, self._signature, self.name, args, kwargs)
        options = {"queue": self.queue, "priority": self.priority}
        task_id, message, routed = _messages.build(app, self.name, args, kwargs, options=options)
        return app, task_id, message, routed

    async def delay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[T]:
        """Enqueue the job; return its handle once the broker has the message.

        Raises:
            TypeError: The function does not take these arguments, or one cannot
                travel as JSON unchanged (nothing is enqueued): the message names it.
            EnqueueError: The broker cannot be reached or refused the message.
        """
        app, sending = self._enqueue(args, kwargs)
        return JobHandle(await sending, app)

    def _enqueue(
        self,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        job_id: str | None = None,
    ) -> tuple[Any, Coroutine[Any, Any, str]]:
        """Check the arguments; return the app and what sends the job (to await)."""
        app = self.task.app
        self._check_arguments(args, kwargs)
        registered = _registry.lookup(self.name)
        return app, _enqueue.enqueue(
            app,
            self.name,
            self._signature,
            args,
            kwargs,
            queue=queue if queue is not None else self.queue,
            priority=priority if priority is not None else self.priority,
            # What route_job routes this name by (a template depends on it).
            route=None if registered is None else (registered.queue, registered.priority),
            job_id=job_id,
            countdown=countdown,
            eta=eta,
        )

    def _check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise TypeError unless the function accepts these arguments and JSON
        carries them unchanged (string dict keys, bounded nesting)."""
        for value in args:
            if type(value) not in _SCALARS:
                _messages.check_containers(self.name, self._signature, args, kwargs)
                break
        else:
            for value in kwargs.values():
                if type(value) not in _SCALARS:
                    _messages.check_containers(self.name, self._signature, args, kwargs)
                    break
        low, high = self._positional
        if not kwargs and low <= len(args) <= high:
            return  # positional arguments only, as many as it takes: no need to bind
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"job {self.name}: {exc}") from None

    def delay_sync(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[T]:
        """:meth:`delay` for synchronous code (blocks until the broker has it).

        Raises:
            TypeError: As :meth:`delay` (nothing is enqueued).
            EnqueueError: The broker cannot be reached or refused the message.
        """
        app, task_id, message, routed = self._prepare(args, kwargs)
        _enqueue.send_now(app, self.name, message, routed)
        return JobHandle(task_id, app)

    async def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        job_id: str | None = None,
    ) -> JobHandle[T]:
        """Enqueue with options, by Celery's names.

        Args:
            args: Positional arguments of the job.
            kwargs: Keyword arguments of the job.
            countdown: Run no sooner than this many seconds from now.
            eta: Run no sooner than this time (an aware datetime, preferably UTC).
            queue: Send to this queue instead of the job's own.
            priority: Message priority (0-9 on Redis; higher first).
            job_id: Use this id instead of a fresh one.

        Raises:
            TypeError: As :meth:`delay` (nothing is enqueued).
            ValueError: A negative ``countdown``.
            ConfigError: ``priority`` is not 0-9.
            EnqueueError: The broker cannot be reached or refused the message.
        """
        if priority is not None:
            check_priority(priority)
        app, sending = self._enqueue(
            list(args or ()),
            dict(kwargs or {}),
            countdown=countdown,
            eta=eta,
            queue=queue,
            priority=priority,
            job_id=job_id,
        )
        return JobHandle(await sending, app)


class AsyncJob(Job[P, T]):
    """A job made of an ``async def``: ``await job(...)`` runs it here."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T]:
        result: Coroutine[Any, Any, T] = self.fn(*args, **kwargs)
        return result


class SyncJob(Job[P, T]):
    """A job made of a plain ``def``: ``job(...)`` runs it here."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        result: T = self.fn(*args, **kwargs)
        return result


class JobDecorator(Protocol):
    """What ``@job(...)`` with options returns."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Coroutine[Any, Any, T]], /
    ) -> AsyncJob[P, T]: ...
    @overload
    def __call__(self, fn: Callable[P, T], /) -> SyncJob[P, T]: ...


@overload
def job(fn: Callable[P, Coroutine[Any, Any, T]], /) -> AsyncJob[P, T]: ...  # type: ignore[overload-overlap]
@overload
def job(fn: Callable[P, T], /) -> SyncJob[P, T]: ...
@overload
def job(**options: Unpack[JobOptions]) -> JobDecorator: ...
def job(fn: Callable[..., Any] | None = None, /, **options: Unpack[JobOptions]) -> Any:
    """Make a function a background job, run by Celery workers.

    Use bare (``@job``) or with options (``@job(retry=3, delay=60)``), on an
    ``async def`` or a plain ``def`` defined at module level (or a
    ``@staticmethod``). Each call of ``await fn.delay(...)`` sends one Celery task
    message; a worker runs it (async jobs on the worker process's own long-lived
    event loop) and stores its result for :meth:`JobHandle.wait`.

    Args:
        **options: See :class:`JobOptions`: ``retry``, ``delay``, ``backoff``,
            ``max_delay``, ``queue``, ``priority``, ``timeout``, ``rate_limit``,
            ``name``.

    Raises:
        ConfigError: An option is out of range (the message names it); ``name`` is
            another job's; the function is a generator or a method; or it was made
            inside a function or is a lambda and no ``name`` was given. Nothing is
            registered then.
        TypeError: An unknown option, or something that is not a function.
    """
    unknown = set(options) - set(JobOptions.__annotations__)
    if unknown:
        raise TypeError(
            f"job() got unexpected options {sorted(unknown)}; "
            f"accepted: {', '.join(JobOptions.__annotations__)}"
        )
    checked = check_options(**options)

    def decorate(fn: Callable[..., Any]) -> Job[Any, Any]:
        if isinstance(fn, staticmethod):  # @job above @staticmethod
            fn = fn.__func__
        check_function(fn)
        settings = dict(checked)
        job_name = settings.pop("name") or default_name(
            fn, number_local=bool(_registry.registered_hooks)
        )
        cls: type[Job[Any, Any]] = AsyncJob if inspect.iscoroutinefunction(fn) else SyncJob
        new = cls(fn, name=job_name, **settings)
        _registry.add(new)
        return new

    return decorate if fn is None else decorate(fn)


def _positional_range(signature: inspect.Signature) -> tuple[int, float]:
    """How many positional arguments alone make a valid call: (fewest, most).

    ``(1, 0)`` (no count) when a keyword-only parameter has no default: then every
    call is checked by binding.
    """
    kinds = inspect.Parameter
    low, high = 0, 0.0
    for parameter in signature.parameters.values():
        if parameter.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD):
            high += 1
            if parameter.default is kinds.empty:
                low = int(high)
        elif parameter.kind is kinds.VAR_POSITIONAL:
            high = float("inf")
        elif parameter.kind is kinds.KEYWORD_ONLY and parameter.default is kinds.empty:
            return 1, 0
    return low, high
