"""``MetricCollector``: async gauges, read just before each ``/metrics`` scrape.

A gauge is an ``async def`` returning a number, registered with
``@MetricCollector.metric("queue_length")``. prometheus_client collects
synchronously, so ``zephyr serve`` awaits :meth:`MetricCollector.collect` (through
the ``zephyr.metrics`` entry-point group) before rendering ``/metrics``: every
gauge runs concurrently, each with a timeout; one that fails or times out is
reported as NaN for that scrape (and logged) instead of failing the others.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar, cast

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from zephyr_core import ConfigError

logger = logging.getLogger("zephyr_deploy.metrics")

Reading = Callable[[], Awaitable[float | int]]
F = TypeVar("F", bound=Reading)

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class MetricCollector:
    """Custom metrics for scaling decisions, exported on ``/metrics``.

    Example:
        >>> @MetricCollector.metric("queue_length")
        ... async def get_queue_length():
        ...     return await redis.llen("job_queue")
    """

    #: Seconds one gauge may take before it counts as failed for this scrape.
    timeout: ClassVar[float] = 2.0
    _readings: ClassVar[dict[str, tuple[Reading, Gauge]]] = {}

    @classmethod
    def metric(
        cls, name: str, description: str = "", *, registry: CollectorRegistry = REGISTRY
    ) -> Callable[[F], F]:
        """Register the decorated ``async def`` as the gauge ``name``.

        Raises:
            ConfigError: ``name`` is not a Prometheus metric name, is already
                registered, or the function is not an ``async def``.
        """
        if not _NAME.match(name):
            raise ConfigError(
                f"metric name {name!r}: expected letters, digits, '_' and ':' "
                "(not starting with a digit), like 'queue_length'",
                field="name",
            )
        if name in cls._readings:
            raise ConfigError(f"metric {name!r} is already registered", field="name")

        def register(function: F) -> F:
            if not inspect.iscoroutinefunction(cast(Any, function)):  # keeps F's type
                raise ConfigError(
                    f"@MetricCollector.metric({name!r}) decorates "
                    f"{getattr(function, '__qualname__', function)!r}: expected an async def",
                    field="name",
                )
            text = description or (function.__doc__ or name).strip().splitlines()[0]
            gauge = Gauge(name, text, registry=registry)
            cls._readings[name] = (function, gauge)
            return function

        return register

    @classmethod
    def names(cls) -> list[str]:
        """The registered gauges' names, sorted."""
        return sorted(cls._readings)

    @classmethod
    async def collect(cls) -> dict[str, float]:
        """Run every gauge once (concurrently) and set it; return the values read."""
        names = list(cls._readings)
        results = await asyncio.gather(
            *(asyncio.wait_for(cls._readings[name][0](), cls.timeout) for name in names),
            return_exceptions=True,
        )
        values: dict[str, float] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                logger.warning("metric %s failed: %s: %s", name, type(result).__name__, result)
                value = math.nan
            else:
                value = float(result)
            cls._readings[name][1].set(value)
            values[name] = value
        return values

    @classmethod
    def unregister(cls, name: str, *, registry: CollectorRegistry = REGISTRY) -> None:
        """Remove the gauge ``name`` (tests, reloads)."""
        _, gauge = cls._readings.pop(name)
        registry.unregister(gauge)


async def refresh() -> None:
    """The ``zephyr.metrics`` hook: ``zephyr serve`` awaits it before each scrape."""
    await MetricCollector.collect()
