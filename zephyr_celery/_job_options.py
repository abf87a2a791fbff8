"""The options of ``@job``, checked at decoration: each bad value names the option.

Pure functions, no I/O (Settings supply the defaults of ``retry`` and ``delay``).
"""

from __future__ import annotations

from typing import Any

from celery.utils.time import rate as parse_rate

from zephyr_core import ConfigError, get_settings

#: The longest retry delay ``backoff=True`` reaches unless ``max_delay`` says otherwise.
DEFAULT_MAX_DELAY = 3600.0


def check_priority(priority: Any) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise ConfigError(
            f"priority={priority!r}: expected an integer from 0 to 9", field="priority"
        )


def check_options(
    *,
    retry: int | None,
    delay: float | None,
    backoff: bool,
    max_delay: float | None,
    queue: str | None,
    priority: int | None,
    timeout: float | None,
    rate_limit: str | None,
    name: str | None,
) -> dict[str, Any]:
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
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        raise bad("delay", delay, "a number of seconds >= 0")
    if not isinstance(backoff, bool):
        raise bad("backoff", backoff, "True or False")
    if max_delay is None:
        max_delay = max(DEFAULT_MAX_DELAY, float(delay))
    elif isinstance(max_delay, bool) or not isinstance(max_delay, int | float) or max_delay < delay:
        raise bad("max_delay", max_delay, f"a number of seconds >= delay ({delay})")
    if queue is not None and (not isinstance(queue, str) or not queue.strip()):
        raise bad("queue", queue, "a non-empty queue name")
    if priority is not None:
        check_priority(priority)
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise bad("timeout", timeout, "a number of seconds > 0")
    if rate_limit is not None:
        try:
            if not isinstance(rate_limit, str):
                raise ValueError(rate_limit)
            parse_rate(rate_limit)
        except (ValueError, TypeError, KeyError):
            raise bad("rate_limit", rate_limit, "a rate like '10/s', '100/m' or '1000/h'") from None
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise bad("name", name, "a non-empty job name")
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
