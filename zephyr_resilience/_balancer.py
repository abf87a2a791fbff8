"""LoadBalancer: client-side balancing as an ``httpx.AsyncBaseTransport``.

``lb.client("user_service")`` is a real ``httpx.AsyncClient`` whose transport is
:class:`~zephyr_resilience._transport.ServiceTransport`. For each request it picks an endpoint
(:mod:`~zephyr_resilience._strategies`), points the request at it and hands it to
that endpoint's own pooled ``httpx.AsyncHTTPTransport``, so connections are reused
as with a plain client. Around that: in-flight counts (until the body is closed), a
latency EWMA, passive ejection and active checks (:mod:`~zephyr_resilience._health`),
safe retries within a budget (:mod:`~zephyr_resilience._budget`), and an optional
circuit breaker per service.

Retries go to an endpoint this request has not tried. Any request is retried when no
byte of it was sent (the connection failed, timed out, or no pooled connection came
free); an idempotent one (GET, HEAD, OPTIONS, PUT, DELETE, TRACE, or one sent with
``extensions={"idempotent": True}``) also when the connection was reset or the answer
timed out. A POST is never retried once its bytes were sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from zephyr_core import ConfigError, get_settings
from zephyr_resilience._breaker import CircuitBreaker
from zephyr_resilience._budget import RetryBudget
from zephyr_resilience._discovery import Discovery
from zephyr_resilience._endpoints import Endpoint, EndpointSpec, make_endpoint, parse_services
from zephyr_resilience._exceptions import NoHealthyEndpoint
from zephyr_resilience._health import ActiveChecker, Ejection, HealthCheck
from zephyr_resilience._metrics import LB_REQUESTS, LB_RETRIES
from zephyr_resilience._strategies import Strategy, make_strategy
from zephyr_resilience._transport import PLACEHOLDER_HOST, ServiceTransport, TrackedStream

logger = logging.getLogger("zephyr_resilience.balancer")

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Nothing of the request reached the server: safe to send elsewhere whatever the method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The request may have reached it: safe only when repeating it changes nothing.
_MAYBE_SENT = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadTimeout)

_FROM_SETTINGS: Any = object()


class _Service:
    def __init__(
        self, name: str, strategy: Strategy, budget: RetryBudget, breaker: CircuitBreaker | None
    ) -> None:
        self.name = name
        self.endpoints: list[Endpoint] = []
        self.strategy = strategy
        self.budget = budget
        self.breaker = breaker


class LoadBalancer:
    """Client-side load balancing over the endpoints of named services.

    Args:
        services: ``{"name": ["http://a:8000", {"url": "http://b:8000", "weight": 3}]}``.
            Default: the ``SERVICE_REGISTRY`` setting.
        strategy: ``round_robin``, ``least_connections``, ``weighted`` or ``p2c``.
            Default: the ``LOAD_BALANCER_STRATEGY`` setting.
        health_check: Active checks, or None for none. Default: ``/health`` every
            ``LOAD_BALANCER_HEALTH_INTERVAL`` seconds when ``LOAD_BALANCER_HEALTH_CHECK``
            is on.
        retries: Extra attempts a failed request may make on other endpoints.
        timeout: Seconds for each attempt (httpx's timeout of ``lb.client()``).
        eject_after: Consecutive errors or 5xx answers that eject an endpoint.
        ejection_time: Seconds of the first ejection; each later one lasts longer.
        max_ejection_time: The longest ejection, in seconds.
        max_ejection_percent: Never eject more than this share of a service's endpoints.
        retry_budget: Limits retries to a share of recent requests (default: 20% over
            10 s, plus 10 a second).
        breaker: A :class:`CircuitBreaker` used as a template (each service gets its
            own with the same settings, named ``<name>.<service>``), or a mapping of
            service name to breaker. An open breaker fails fast, before any connection.
        discovery: Sources that keep services' endpoint lists current
            (:class:`DnsDiscovery`, :class:`RedisDiscovery`, :class:`KubernetesDiscovery`);
            their services start empty and fill once discovered.
        clock: Monotonic seconds (ejections, EWMA ageing); injected in tests.
        rng: Random source of ``p2c``; injected in tests.

    Example:
        >>> lb = LoadBalancer(services={"user_service": ["http://a:8000", "http://b:8000"]},
        ...                   strategy="p2c", health_check=HealthCheck(endpoint="/health"))
        >>> async with lb.client("user_service") as client:
        ...     response = await client.get("/users/1")
    """

    def __init__(
        self,
        services: Mapping[str, Any] | None = None,
        strategy: str | None = None,
        health_check: HealthCheck | None = _FROM_SETTINGS,
        retries: int = 1,
        timeout: float = 5.0,
        *,
        eject_after: int = 5,
        ejection_time: float = 30.0,
        max_ejection_time: float = 300.0,
        max_ejection_percent: float = 50.0,
        retry_budget: RetryBudget | None = None,
        breaker: CircuitBreaker | Mapping[str, CircuitBreaker] | None = None,
        discovery: Iterable[Discovery] = (),
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        settings = None
        if services is None or strategy is None or health_check is _FROM_SETTINGS:
            settings = get_settings()
        if services is None:
            assert settings is not None
            services = settings.SERVICE_REGISTRY
        if strategy is None:
            assert settings is not None
            strategy = settings.LOAD_BALANCER_STRATEGY
        if health_check is _FROM_SETTINGS:
            assert settings is not None
            health_check = (
                HealthCheck(endpoint="/health", interval=settings.LOAD_BALANCER_HEALTH_INTERVAL)
                if settings.LOAD_BALANCER_HEALTH_CHECK
                else None
            )
        if health_check is not None and not isinstance(health_check, HealthCheck):
            raise ConfigError(
                f"health_check={health_check!r}: expected a HealthCheck or None",
                field="health_check",
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"retries={retries!r}: expected an integer >= 0", field="retries")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(
                f"timeout={timeout!r}: expected a number of seconds > 0", field="timeout"
            )
        parsed = parse_services(services)
        make_strategy(strategy)  # a bad name fails here, before any service exists
        self.strategy = strategy
        self.health_check = health_check
        self.retries = retries
        self.timeout = float(timeout)
        self.ejection = Ejection(
            eject_after, ejection_time, max_ejection_time, max_ejection_percent
        )
        self._budget_template = retry_budget
        self._breakers = breaker
        if breaker is not None and not isinstance(breaker, CircuitBreaker | Mapping):
            raise ConfigError(
                f"breaker={breaker!r}: expected a CircuitBreaker or a mapping of them",
                field="breaker",
            )
        self._clock = clock
        self._rng = rng
        self._services: dict[str, _Service] = {}
        self._retired: list[httpx.AsyncBaseTransport] = []
        self._checker: ActiveChecker | None = None
        self._checker_task: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []  # discovery watchers
        self._started = False
        for name, specs in parsed.items():
            self._set_endpoints(name, specs)
        self._discovery = list(discovery)
        for source in self._discovery:
            if not callable(getattr(source, "watch", None)) or not isinstance(
                getattr(source, "service", None), str
            ):
                raise ConfigError(
                    f"discovery entry {source!r}: expected a discovery source "
                    "(DnsDiscovery, RedisDiscovery, KubernetesDiscovery)",
                    field="discovery",
                )
            self._service(source.service)

    # -- services and endpoints ----------------------------------------------------

    def _service(self, name: str) -> _Service:
        service = self._services.get(name)
        if service is None:
            template = self._budget_template
            budget = template.copy() if template is not None else RetryBudget(clock=self._clock)
            service = _Service(name, make_strategy(self.strategy, self._rng), budget, None)
            service.breaker = self._breaker_for(name)
            self._services[name] = service
        return service

    def _breaker_for(self, service: str) -> CircuitBreaker | None:
        template = self._breakers
        if template is None:
            return None
        if isinstance(template, CircuitBreaker):
            return CircuitBreaker(
                failure_threshold=template.failure_threshold,
                recovery_timeout=template.recovery_timeout,
                success_threshold=template.success_threshold,
                half_open_max_calls=template.half_open_max_calls,
                name=f"{template.name}.{service}",
                clock=template._clock,
            )
        found = template.get(service)
        if found is not None and not isinstance(found, CircuitBreaker):
            raise ConfigError(f"breaker[{service!r}]={found!r}: expected a CircuitBreaker")
        return found

    def _set_endpoints(self, name: str, specs: Iterable[EndpointSpec]) -> None:
        """Make the service's endpoint list ``specs``, keeping the state of those kept."""
        service = self._service(name)
        current = {endpoint.url: endpoint for endpoint in service.endpoints}
        fresh: list[Endpoint] = []
        for spec in specs:
            endpoint = current.pop(spec.url, None)
            if endpoint is None:
                endpoint = make_endpoint(spec, httpx.AsyncHTTPTransport())
                logger.info("service %r: added %s", name, spec.url)
            endpoint.weight = spec.weight
            fresh.append(endpoint)
        for gone in current.values():
            logger.info("service %r: removed %s", name, gone.url)
            self._retired.append(gone.transport)  # closed with the balancer: may be in use
        service.endpoints = fresh

    def register(self, service: str, url: str, weight: int = 1) -> None:
        """Add an endpoint to ``service`` (made if new) at run time."""
        spec = parse_services({service: [{"url": url, "weight": weight}]})[service][0]
        known = self._services[service].endpoints if service in self._services else []
        specs = [EndpointSpec(e.url, e.weight) for e in known if e.url != spec.url]
        self._set_endpoints(service, [*specs, spec])

    def deregister(self, service: str, url: str) -> None:
        """Remove an endpoint from ``service``; in-flight requests to it finish."""
        self._require(service)
        spec = parse_services({service: [url]})[service][0]
        known = self._services[service].endpoints
        if not any(e.url == spec.url for e in known):
            raise ConfigError(f"service {service!r} has no endpoint {url!r}")
        self._set_endpoints(
            service, [EndpointSpec(e.url, e.weight) for e in known if e.url != spec.url]
        )

    def _require(self, service: str) -> _Service:
        found = self._services.get(service)
        if found is None:
            known = ", ".join(sorted(self._services)) or "none"
            raise ConfigError(
                f"unknown service {service!r}: known services are {known}", field="service"
            )
        return found

    @property
    def services(self) -> list[str]:
        """The names of the services this balancer knows."""
        return sorted(self._services)

    # -- clients -------------------------------------------------------------------

    def client(self, service: str, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` whose relative paths go to ``service``'s endpoints.

        Use it as ``async with lb.client("user_service") as client:``. Closing it
        leaves the balancer's connection pools open for the next client. ``kwargs``
        go to ``httpx.AsyncClient`` (``headers``, ``timeout``, ...).

        Raises:
            ConfigError: ``service`` is not known (the message lists those that are).
        """
        found = self._require(service)
        for reserved in ("transport", "base_url", "mounts"):
            if reserved in kwargs:
                raise ConfigError(f"lb.client({service!r}): {reserved}= is set by the balancer")
        kwargs.setdefault("timeout", self.timeout)
        return httpx.AsyncClient(
            transport=ServiceTransport(self, found), base_url=f"http://{PLACEHOLDER_HOST}", **kwargs
        )

    def transport(self, service: str) -> ServiceTransport:
        """The transport alone, for an ``httpx.AsyncClient`` you build yourself."""
        return ServiceTransport(self, self._require(service))

    # -- one request -------------------------------------------------------------

    async def _send(self, service: _Service, request: httpx.Request) -> httpx.Response:
        idempotent = request.method in IDEMPOTENT or bool(request.extensions.get("idempotent"))
        raw_path = request.url.raw_path
        service.budget.deposit()
        tried: list[Endpoint] = []
        retries_left = self.retries
        while True:
            now = self._clock()
            candidates = [e for e in service.endpoints if e not in tried and e.available(now)]
            if not candidates:
                raise NoHealthyEndpoint(service.name, self._why(service, tried), request=request)
            endpoint = service.strategy.pick(candidates, now)
            tried.append(endpoint)
            try:
                return await self._attempt(service, endpoint, request, raw_path)
            except httpx.TransportError as exc:
                retryable = isinstance(exc, _NOT_SENT) or (
                    idempotent and isinstance(exc, _MAYBE_SENT)
                )
                if not retryable or retries_left <= 0:
                    raise
                if not service.budget.try_withdraw():
                    LB_RETRIES.labels(service.name, "budget_exhausted").inc()
                    raise
                LB_RETRIES.labels(service.name, "sent").inc()
                retries_left -= 1

    @staticmethod
    def _why(service: _Service, tried: list[Endpoint]) -> str:
        if not service.endpoints:
            return "it has no endpoints"
        if tried:
            return f"tried {', '.join(e.url for e in tried)}; the others are unhealthy or ejected"
        return f"all {len(service.endpoints)} endpoints are unhealthy or ejected"

    async def _attempt(
        self, service: _Service, endpoint: Endpoint, request: httpx.Request, raw_path: bytes
    ) -> httpx.Response:
        request.url = request.url.copy_with(
            scheme=endpoint.scheme,
            host=endpoint.host,
            port=endpoint.port,
            raw_path=endpoint.prefix.encode() + raw_path if endpoint.prefix else raw_path,
        )
        request.headers["Host"] = endpoint.host_header
        endpoint.in_flight += 1
        endpoint.requests += 1
        started = time.perf_counter()
        try:
            response = await endpoint.transport.handle_async_request(request)
        except BaseException as exc:
            endpoint.in_flight -= 1
            if isinstance(exc, httpx.TransportError):
                _counter(service.name, endpoint, "error").inc()
                now = self._clock()
                endpoint.observe(time.perf_counter() - started, now)
                endpoint.last_error = (
                    f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                )
                self.ejection.record(service.name, endpoint, service.endpoints, False, now)
            raise
        now = self._clock()
        endpoint.observe(time.perf_counter() - started, now)
        if response.status_code >= 500:
            _counter(service.name, endpoint, "5xx").inc()
            endpoint.last_error = f"answered {response.status_code}"
            self.ejection.record(service.name, endpoint, service.endpoints, False, now)
        else:
            _counter(service.name, endpoint, "ok").inc()
            endpoint.consecutive_failures = 0
        response.stream = TrackedStream(response.stream, endpoint)
        return response

    # -- health and lifecycle --------------------------------------------------------

    def _all_endpoints(self) -> Iterable[tuple[str, Endpoint]]:
        for name, service in self._services.items():
            for endpoint in service.endpoints:
                yield name, endpoint

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        for source in self._discovery:
            self._background.append(
                loop.create_task(
                    source.watch(functools.partial(self._set_endpoints, source.service)),
                    name=f"zephyr-lb-discovery:{source.service}",
                )
            )
        if self.health_check is not None:
            self._checker = ActiveChecker(self.health_check, self._all_endpoints, self._clock)
            self._checker_task = loop.create_task(self._checker.run(), name="zephyr-lb-health")

    async def start(self) -> None:
        """Start health checks and discovery now (otherwise the first request does)."""
        self._start()

    async def wait_health_round(self, timeout: float = 30.0) -> None:
        """Wait until the next round of active checks finished (tests, start-up)."""
        self._start()
        if self._checker is None:
            return
        await asyncio.wait_for(self._checker.round_done.wait(), timeout)

    def status(self) -> dict[str, list[dict[str, Any]]]:
        """Each service's endpoints: health, ejections, load and latency."""
        now = self._clock()
        report: dict[str, list[dict[str, Any]]] = {}
        for name, service in sorted(self._services.items()):
            report[name] = [
                {
                    "url": e.url,
                    "weight": e.weight,
                    "available": e.available(now),
                    "healthy": e.healthy,
                    "ejected": e.ejected_until > now,
                    "ejected_for": round(max(0.0, e.ejected_until - now), 3),
                    "ejections": e.ejections,
                    "in_flight": e.in_flight,
                    "requests": e.requests,
                    "failures": e.failures,
                    "latency_ms": round(e.latency(now) * 1000, 3),
                    "last_error": e.last_error,
                }
                for e in service.endpoints
            ]
            if service.breaker is not None:
                for entry in report[name]:
                    entry["breaker"] = service.breaker.state
        return report

    async def aclose(self) -> None:
        """Stop health checks and discovery, close every connection pool."""
        task, self._checker_task = self._checker_task, None
        self._started = False
        for running in [task, *self._background]:
            if running is None:
                continue
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        self._background.clear()
        for service in self._services.values():
            for endpoint in service.endpoints:
                await endpoint.transport.aclose()
            if service.breaker is not None:
                await service.breaker.aclose()
        for transport in self._retired:
            await transport.aclose()
        self._retired.clear()

    async def __aenter__(self) -> LoadBalancer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _counter(service: str, endpoint: Endpoint, outcome: str) -> Any:
    # Bound once per endpoint and outcome: labels() costs a lookup and a lock.
    key = ("requests", outcome)
    child = endpoint.extra.get(key)
    if child is None:
        child = endpoint.extra[key] = LB_REQUESTS.labels(service, endpoint.url, outcome)
    return child
