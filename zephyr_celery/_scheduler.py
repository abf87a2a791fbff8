"""``@scheduler.cron(...)`` and ``@scheduler.every(...)``: jobs that Celery beat sends.

Decorating checks the schedule at once (a bad cron field, an unknown time zone or a
job that needs arguments raises there) and adds an entry to the app's
``beat_schedule`` named after the job. ``zephyr jobs scheduler`` then runs beat on a
Redis-backed schedule (see ``_beat``); the worker runs the job like any other.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from typing import Any, ParamSpec, Protocol, TypeVar, Unpack, overload

from celery.schedules import crontab, schedule

from zephyr_celery import _app
from zephyr_celery._beat import ZonedCrontab
from zephyr_celery._cron import parse_cron, parse_interval, parse_timezone
from zephyr_celery._job import AsyncJob, Job, SyncJob, job
from zephyr_celery._job_options import JobOptions, check_options

P = ParamSpec("P")
T = TypeVar("T")


class ScheduleDecorator(Protocol):
    """What ``scheduler.cron(...)`` and ``scheduler.every(...)`` return.

    An existing job (an ``AsyncJob``/``SyncJob``) matches these as the function it wraps.
    """

    @overload
    def __call__(  # type: ignore[overload-overlap]  # a coroutine function is a callable
        self, fn: Callable[P, Coroutine[Any, Any, T]], /
    ) -> AsyncJob[P, T]: ...
    @overload
    def __call__(self, fn: Callable[P, T], /) -> SyncJob[P, T]: ...


@dataclass(frozen=True)
class ScheduledJob:
    """One periodic job: which job, when (a Celery schedule) and how it was written."""

    job: Job[Any, Any]
    schedule: Any
    description: str


class Scheduler:
    """Registers periodic jobs on Celery beat; use the module-level ``scheduler``.

    Example:
        >>> @scheduler.cron("0 9 * * *")  # every day at 09:00 UTC
        ... async def daily_report() -> None: ...
        >>> @scheduler.every(seconds=30)
        ... async def heartbeat() -> None: ...
    """

    def __init__(self) -> None:
        self._entries: dict[str, ScheduledJob] = {}
        self._lock = threading.Lock()

    @property
    def entries(self) -> dict[str, ScheduledJob]:
        """Every scheduled job of this process, by job name."""
        return dict(self._entries)

    def cron(
        self,
        expression: str,
        *,
        tz: str | tzinfo | None = None,
        **options: Unpack[JobOptions],
    ) -> ScheduleDecorator:
        """Run the decorated job on a cron schedule.

        Args:
            expression: Five fields, ``"minute hour day-of-month month day-of-week"``
                (``"0 9 * * 1-5"``: 09:00 on weekdays), or ``@hourly``, ``@daily``,
                ``@weekly``, ``@monthly``, ``@yearly``.
            tz: IANA time zone the expression is read in (``"Europe/Paris"``);
                ``None`` for the app's ``timezone`` (UTC by default).
            **options: The job's options, as :func:`zephyr_celery.job` takes them
                (for a plain function; a ``@job`` already has its own).

        Raises:
            ValueError: The expression names a bad field (the message says which
                field, its value and what it accepts), or ``tz`` is unknown.
            ConfigError: A job option is out of range (see :func:`zephyr_celery.job`).
        """
        check_options(**options)  # at once, before a function is decorated
        spec = parse_cron(expression)
        zone = parse_timezone(tz)
        when: crontab
        if zone is None:
            when = crontab(**spec.crontab_kwargs())
        else:
            when = ZonedCrontab(**spec.crontab_kwargs(), tz=zone)
        shown = f"cron {expression!r}" + (f" ({zone.key})" if zone else "")
        return self._decorator(when, shown, options)

    def every(
        self,
        interval: timedelta | float | None = None,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        **options: Unpack[JobOptions],
    ) -> ScheduleDecorator:
        """Run the decorated job at a fixed interval (the first run one interval after beat starts).

        Args:
            interval: A :class:`~datetime.timedelta` or a number of seconds.
            seconds: Or the interval by units (added up).
            minutes: See ``seconds``.
            hours: See ``seconds``.
            **options: The job's options, as for :meth:`cron`.

        Raises:
            ValueError: No interval, both forms at once, or not a positive one.
            ConfigError: A job option is out of range.
        """
        check_options(**options)
        delta = parse_interval(interval, seconds=seconds, minutes=minutes, hours=hours)
        return self._decorator(
            schedule(run_every=delta), f"every {delta.total_seconds():g}s", options
        )

    def _decorator(self, when: Any, description: str, options: JobOptions) -> ScheduleDecorator:
        def decorate(fn: Any) -> Any:
            if isinstance(fn, Job) and options:
                raise TypeError(
                    f"{fn.name} is already a job: give its options to its @job "
                    f"({', '.join(options)}), not to the schedule"
                )
            _check_no_arguments(fn.fn if isinstance(fn, Job) else fn, description)
            scheduled = fn if isinstance(fn, Job) else job(**options)(fn)
            self._add(ScheduledJob(scheduled, when, description))
            return scheduled

        return decorate

    def _add(self, entry: ScheduledJob) -> None:
        name = entry.job.name
        with self._lock:
            old = self._entries.get(name)
            # The same job object twice is two schedules for one job (their beat
            # entries would share a name); a new object is its module imported again.
            if old is not None and old.job is entry.job:
                raise ValueError(
                    f"job {name!r} is already scheduled ({old.description}); "
                    f"define a second job to run it also {entry.description}"
                )
            self._entries[name] = entry
        _app.on_app(lambda app: _install(app, entry))


def _check_no_arguments(fn: Callable[..., Any], description: str) -> None:
    signature = inspect.signature(fn)
    try:
        signature.bind()
    except TypeError:
        required = [
            p.name
            for p in signature.parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        raise TypeError(
            f"{fn.__qualname__} would run {description} with no arguments, but it "
            f"requires {', '.join(required)}; give them defaults"
        ) from None


def _install(app: Any, entry: ScheduledJob) -> None:
    options: dict[str, Any] = {}
    if entry.job.queue is not None:
        options["queue"] = entry.job.queue
    if entry.job.priority is not None:
        options["priority"] = entry.job.priority
    name = entry.job.name
    app.add_periodic_task(entry.schedule, app.signature(name), name=name, **options)


#: The process-wide scheduler: ``from zephyr_celery import scheduler``.
scheduler = Scheduler()
