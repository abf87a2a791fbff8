"""Single flight: concurrent misses of one key on one event loop wait for one computation.

Used by ``@cached`` functions and ``Cache.get_or_set``. Across processes there is no
single flight (``lock=True`` on ``@cached`` adds a lock in Redis for that).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def single_flight(
    flights: dict[str, asyncio.Future[Any]], key: str, compute: Callable[[], Awaitable[T]]
) -> T:
    """``await compute()``, unless a call for ``key`` is already computing on this loop:
    then wait for its result (or its exception).

    A waiter whose leader was cancelled computes itself; a waiter that is cancelled
    does not cancel the leader.
    """
    loop = asyncio.get_running_loop()
    flight = flights.get(key)
    if flight is not None and flight.get_loop() is loop:
        try:
            return await asyncio.shield(flight)
        except asyncio.CancelledError:
            if not flight.cancelled():
                raise
            # the computing caller was cancelled: compute ourselves
    flight = loop.create_future()
    flights[key] = flight
    try:
        value = await compute()
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError):
            flight.cancel()
        else:
            flight.set_exception(exc)
            flight.exception()  # retrieved: no "never retrieved" log without waiters
        raise
    else:
        flight.set_result(value)
    finally:
        if flights.get(key) is flight:
            del flights[key]
    return value
