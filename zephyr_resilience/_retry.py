"""retry(): stamina's retries (exponential backoff with jitter, on tenacity), our names.

stamina does the retrying; we map the proposal's vocabulary onto it and check the
arguments when the decorator is made, naming the bad one. Its testing switch is ours
too: :func:`zephyr_resilience.testing.set_testing` turns every delay off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import stamina

from zephyr_core import ConfigError

P = ParamSpec("P")
T = TypeVar("T")

#: What to retry on: an exception class, a tuple of them, or a predicate.
RetryOn = type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool]


def _positive(field: str, value: Any, *, minimum: float = 0, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        accepted = f"a number >= {minimum:g}" + (" or None" if allow_none else "")
        raise ConfigError(f"{field}={value!r}: expected {accepted}", field=field)


def retry(
    *,
    on: RetryOn,
    attempts: int = 3,
    backoff: float = 0.1,
    max_delay: float = 5.0,
    jitter: float = 1.0,
    timeout: float | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Retry an ``async def`` or plain function when it raises what ``on`` names.

    Delays grow exponentially from ``backoff`` (``backoff * 2**(n-1)``) up to
    ``max_delay``, plus a random jitter of up to ``jitter`` seconds. In tests,
    :func:`zephyr_resilience.testing.set_testing` removes the delays.

    Args:
        on: An exception class, a tuple of them, or a predicate taking the exception
            and returning whether to retry.
        attempts: Tries in all, the first included (>= 1).
        backoff: The first delay, in seconds.
        max_delay: The longest delay, in seconds.
        jitter: The most random seconds added to each delay.
        timeout: Give up once this many seconds have passed overall (None: no limit).

    Example:
        >>> @retry(on=httpx.TransportError, attempts=3, backoff=0.2)
        ... async def fetch(): ...
    """
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ConfigError(f"attempts={attempts!r}: expected an integer >= 1", field="attempts")
    _positive("backoff", backoff)
    _positive("max_delay", max_delay)
    _positive("jitter", jitter)
    _positive("timeout", timeout, allow_none=True)
    valid_on = (
        (isinstance(on, type) and issubclass(on, BaseException))
        or (
            isinstance(on, tuple)
            and bool(on)
            and all(isinstance(kind, type) and issubclass(kind, BaseException) for kind in on)
        )
        or (callable(on) and not isinstance(on, type))
    )
    if not valid_on:
        raise ConfigError(
            f"on={on!r}: expected an exception class, a tuple of them, or a predicate",
            field="on",
        )
    return stamina.retry(
        on=on,
        attempts=attempts,
        timeout=timeout,
        wait_initial=backoff,
        wait_max=max_delay,
        wait_jitter=jitter,
    )
