"""The options of ``@job``, checked at decoration: each bad value names the option.

:class:`JobOptions` is their one signature (``job()``, its overloads and
``scheduler.cron``/``every`` take ``**options: Unpack[JobOptions]``). Pure
functions, no I/O (Settings supply the defaults of ``retry`` and ``delay``).
"""

from __future__ import annotations

import inspect
import itertools
import math
import re
from typing import Any, TypedDict

from celery.utils.time import rate as parse_rate

from zephyr_core import ConfigError, get_settings

#: The longest retry delay ``backoff=True`` reaches unless ``max_delay`` says otherwise.
DEFAULT_MAX_DELAY = 3600.0

# Queue and job names: no whitespace or control characters (a queue named "mail "
# is another queue than "mail", and a worker's -Q list is split on commas).
_BAD_NAME = re.compile(r"[\s,\x00-\x1f\x7f]")


class JobOptions(TypedDict, total=False):
    """The options of :func:`zephyr_celery.job` (all optional).

    Attributes:
        retry: Retries after the first attempt when the job raises
            (default JOB_RETRY_ATTEMPTS). ``0`` never retries.
        delay: Seconds between attempts (default JOB_RETRY_DELAY).
        backoff: Double the delay after each attempt, with jitter, up to ``max_delay``.
        max_delay: The longest delay ``backoff`` reaches (default one hour).
        queue: The queue to send the job to (default: Celery's default queue).
        priority: Message priority, 0-9 (higher runs first on Redis).
        timeout: Seconds an attempt may run before it fails with a timeout.
        rate_limit: At most this many runs per worker, as Celery writes it:
            ``"10/s"``, ``"100/m"``, ``"1000/h"``.
        name: The job's (Celery task's) name; default ``module.qualname``. Required
            for a function made inside another function (a factory, a lambda).
    """

    retry: int | None
    delay: float | None
    backoff: bool
    max_delay: float | None
    queue: str | None
    priority: int | None
    timeout: float | None
    rate_limit: str | None
    name: str | None


def check_priority(priority: Any) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise ConfigError(
            f"priority={priority!r}: expected an integer from 0 to 9", field="priority"
        )


def _seconds(value: Any) -> bool:
    """A finite number of seconds (not a bool, NaN or infinity)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def check_options(
    *,
    retry: int | None = None,
    delay: float | None = None,
    backoff: bool = False,
    max_delay: float | None = None,
    queue: str | None = None,
    priority: int | None = None,
    timeout: float | None = None,
    rate_limit: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Each option checked and resolved (defaults from Settings); keyed as given.

    Raises:
        ConfigError: An option is out of range; the message names it, its value
            and what is accepted.
    """

    def bad(field: str, value: Any, accepted: str) -> ConfigError:
        return ConfigError(f"@job({field}={value!r}): expected {accepted}", field=field)

    settings = None
    if retry is None or delay is None:
        settings = get_settings()
    if retry is None:
        assert settings is not None
        retry = settings.JOB_RETRY_ATTEMPTS
    if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
        raise bad("retry", retry, "an integer >= 0 (retries after the first attempt)")
    if delay is None:
        assert settings is not None
        delay = settings.JOB_RETRY_DELAY
    if not _seconds(delay) or delay < 0:
        raise bad("delay", delay, "a finite number of seconds >= 0")
    if not isinstance(backoff, bool):
        raise bad("backoff", backoff, "True or False")
    if max_delay is None:
        max_delay = max(DEFAULT_MAX_DELAY, float(delay))
    elif not _seconds(max_delay) or max_delay < delay:
        raise bad("max_delay", max_delay, f"a finite number of seconds >= delay ({delay})")
    if queue is not None and (not isinstance(queue, str) or not queue or _BAD_NAME.search(queue)):
        raise bad("queue", queue, "a non-empty queue name without spaces or commas")
    if priority is not None:
        check_priority(priority)
    if timeout is not None and (not _seconds(timeout) or timeout <= 0):
        raise bad("timeout", timeout, "a finite number of seconds > 0")
    if rate_limit is not None:
        try:
            if not isinstance(rate_limit, str):
                raise ValueError(rate_limit)
            per_second = parse_rate(rate_limit)
            if not math.isfinite(per_second) or per_second < 0:
                raise ValueError(rate_limit)
        except (ValueError, TypeError, KeyError):
            raise bad(
                "rate_limit", rate_limit, "a rate >= 0 like '10/s', '100/m' or '1000/h'"
            ) from None
    if name is not None:
        if not isinstance(name, str) or not name or _BAD_NAME.search(name):
            raise bad("name", name, "a non-empty job name without spaces or commas")
        if name.startswith("celery."):
            raise bad("name", name, "a name outside Celery's own 'celery.' namespace")
    return {
        "retry": retry,
        "delay": float(delay),
        "backoff": backoff,
        "max_delay": float(max_delay),
        "queue": queue,
        "priority": priority,
        "timeout": None if timeout is None else float(timeout),
        "rate_limit": rate_limit,
        "name": name,
    }


def check_function(fn: Any) -> None:
    """Refuse what cannot be a job: a generator, a method, anything but a function.

    Raises:
        TypeError: ``fn`` is not callable.
        ConfigError: ``fn`` is a generator (its iterator cannot travel back), a
            bound method, or a function defined in a class body that takes
            ``self``/``cls`` (a worker has no instance to call it on).
    """
    if not callable(fn):
        raise TypeError(f"@job decorates a function, not {fn!r}")
    shown = getattr(fn, "__qualname__", repr(fn))
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise ConfigError(
            f"@job {shown}: a generator function cannot be a job (what it yields cannot "
            "travel back from the worker); return a list instead",
            field="fn",
        )
    if inspect.ismethod(fn) or _defined_as_method(fn):
        raise ConfigError(
            f"@job {shown}: a method cannot be a job (a worker has no instance or class to "
            "call it on); use a module-level function, or a @staticmethod taking what "
            "it needs as arguments",
            field="fn",
        )


def _defined_as_method(fn: Any) -> bool:
    """A function in a class body whose first parameter is ``self`` or ``cls``."""
    parts = str(getattr(fn, "__qualname__", "")).split(".")
    if len(parts) < 2 or parts[-2] == "<locals>":
        return False  # module level, or made inside a function
    try:
        first = next(iter(inspect.signature(fn).parameters), None)
    except (TypeError, ValueError):
        return False
    return first in ("self", "cls")


_local_numbers = itertools.count(1)


def default_name(fn: Any, *, number_local: bool = False) -> str:
    """``module.qualname``: a job's name unless ``name=`` says otherwise.

    With ``number_local`` (an in-process test worker runs, see
    :func:`zephyr_celery.testing.worker`), a function made inside another function
    gets ``module.qualname#N`` instead, ``N`` counting such jobs: the worker runs in
    this process and finds each by that name, so a job defined inside a test (the
    proposal's ``TestJobQueue``) needs no ``name=`` and two made by one factory stay
    apart.

    Raises:
        ConfigError: The function was made inside another function or is a lambda
            (two jobs made by one factory would share the name, and a worker would
            run the last one made for both), or has no qualified name.
    """
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(qualname, str):
        raise ConfigError(
            f"@job {fn!r}: it has no name of its own; pass @job(name=...)", field="name"
        )
    name = f"{fn.__module__}.{qualname}"
    if ("<locals>" in qualname or "<lambda>" in qualname) and number_local:
        return f"{name}#{next(_local_numbers)}"
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise ConfigError(
            f"@job {name}: a function made inside another function (or a lambda) needs "
            "a name of its own, or every job made there shares this one and a worker "
            "runs the last one made for all of them; pass @job(name=...) unique to each "
            "(a worker process must also define it under that name)",
            field="name",
        )
    return name
