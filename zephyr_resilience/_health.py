"""Endpoint health: active checks in one background task, passive ejection on errors.

Active (Envoy's health checker): every ``interval`` seconds, each endpoint's
``endpoint`` path is fetched; an answer below 400 within ``timeout`` is healthy, and
``retries`` failed tries in a row within one round mark it unhealthy, so a dead
endpoint leaves the rotation within one interval. A success also lifts a passive
ejection (Envoy's ``successful_active_health_check_uneject_host``).

Passive (Envoy's outlier detection): ``eject_after`` connection errors, timeouts or
5xx answers in a row eject an endpoint for ``ejection_time`` seconds times the number
of times it was ejected (up to ``max_ejection_time``); never more than
``max_ejection_percent`` of a service's endpoints are ejected at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from zephyr_core import ConfigError
from zephyr_resilience._endpoints import Endpoint
from zephyr_resilience._metrics import LB_EJECTIONS, LB_HEALTHY

logger = logging.getLogger("zephyr_resilience.balancer")


@dataclass(frozen=True)
class HealthCheck:
    """Active health checking of every endpoint a :class:`LoadBalancer` knows.

    Args:
        endpoint: The path fetched on each endpoint (``/health``; ``zephyr serve``
            answers ``/health/ready``).
        interval: Seconds between rounds.
        timeout: Seconds each try may take.
        retries: Failed tries in a row, within one round, that mark an endpoint
            unhealthy.
    """

    endpoint: str = "/health"
    interval: float = 30
    timeout: float = 5
    retries: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.endpoint, str) or not self.endpoint.startswith("/"):
            raise ConfigError(
                f"HealthCheck endpoint={self.endpoint!r}: expected a path starting with '/'",
                field="endpoint",
            )
        for field in ("interval", "timeout"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(
                    f"HealthCheck {field}={value!r}: expected a number of seconds > 0",
                    field=field,
                )
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 1:
            raise ConfigError(
                f"HealthCheck retries={self.retries!r}: expected an integer >= 1", field="retries"
            )


@dataclass(frozen=True)
class Ejection:
    """Passive ejection settings (Envoy's outlier detection)."""

    eject_after: int = 5
    ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: float = 50.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.eject_after, bool)
            or not isinstance(self.eject_after, int)
            or self.eject_after < 1
        ):
            raise ConfigError(f"eject_after={self.eject_after!r}: expected an integer >= 1")
        for field in ("ejection_time", "max_ejection_time"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{field}={value!r}: expected a number of seconds >= 0")
        pct = self.max_ejection_percent
        if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 <= pct <= 100:
            raise ConfigError(f"max_ejection_percent={pct!r}: expected a number from 0 to 100")

    def record(
        self, service: str, endpoint: Endpoint, peers: list[Endpoint], ok: bool, now: float
    ) -> bool:
        """Count one outcome; True when it ejected the endpoint."""
        if ok:
            endpoint.consecutive_failures = 0
            return False
        endpoint.failures += 1
        endpoint.consecutive_failures += 1
        if endpoint.consecutive_failures < self.eject_after or endpoint.ejected_until > now:
            return False
        ejected = sum(1 for peer in peers if peer.ejected_until > now)
        if (ejected + 1) * 100 > self.max_ejection_percent * len(peers):
            return False  # ejecting it would leave too few endpoints
        endpoint.ejections += 1
        endpoint.consecutive_failures = 0
        seconds = min(self.ejection_time * endpoint.ejections, self.max_ejection_time)
        endpoint.ejected_until = now + seconds
        LB_EJECTIONS.labels(service, endpoint.url).inc()
        LB_HEALTHY.labels(service, endpoint.url).set(0)
        logger.warning(
            "service %r: ejected %s for %.3gs (%s)",
            service,
            endpoint.url,
            seconds,
            endpoint.last_error or "errors",
        )
        return True


class ActiveChecker:
    """The background task that probes every endpoint each ``interval`` seconds."""

    def __init__(
        self,
        check: HealthCheck,
        endpoints: Callable[[], Iterable[tuple[str, Endpoint]]],
        clock: Callable[[], float],
    ) -> None:
        self.check = check
        self.endpoints = endpoints
        self.clock = clock
        self.rounds = 0
        self.round_done = asyncio.Event()
        self._client: httpx.AsyncClient | None = None

    async def run(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.check.timeout)
        try:
            while True:
                await self.round()
                await asyncio.sleep(self.check.interval)
        finally:
            await self._client.aclose()

    async def round(self) -> None:
        targets = list(self.endpoints())
        await asyncio.gather(*(self._probe(service, ep) for service, ep in targets))
        self.rounds += 1
        self.round_done.set()
        self.round_done = asyncio.Event()

    async def _probe(self, service: str, endpoint: Endpoint) -> None:
        assert self._client is not None
        url = endpoint.url + self.check.endpoint
        error: Any = None
        for _ in range(self.check.retries):
            try:
                response = await self._client.get(url)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            if response.status_code < 400:
                error = None
                break
            error = f"health check answered {response.status_code}"
        healthy = error is None
        now = self.clock()
        if healthy and endpoint.ejected_until > now:
            endpoint.ejected_until = 0.0
            logger.info(
                "service %r: %s passed its health check, re-admitted", service, endpoint.url
            )
        if healthy != endpoint.healthy:
            endpoint.healthy = healthy
            if healthy:
                logger.info("service %r: %s is healthy again", service, endpoint.url)
            else:
                endpoint.last_error = error
                logger.warning("service %r: %s is unhealthy (%s)", service, endpoint.url, error)
        LB_HEALTHY.labels(service, endpoint.url).set(1 if endpoint.available(now) else 0)
